"""Lifecycle conformance of every implementation of every interface.

connect/close are idempotent, ``async with`` works, a closed instrument raises
ConnectionLost (naming itself) and reconnects, snapshot is plain JSON, health is a Health.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from labctl.interfaces import (
    ConnectionLost,
    Health,
    Instrument,
    Laser,
    OpticalSwitch,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
    Transmitter,
)
from tests.conformance.conformance_checks import assert_json_plain, assert_names

PROTOCOLS = (
    Laser,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
    OpticalSwitch,
    Transmitter,
)


async def _probe(instrument: Any) -> Any:
    """One cheap read through the interface the instrument implements."""
    if isinstance(instrument, Laser):
        return await instrument.get_output()
    if isinstance(instrument, PolarizationController):
        return await instrument.get_voltages_mv()
    if isinstance(instrument, SinglePhotonDetector):
        return await instrument.get_enabled(0)
    if isinstance(instrument, TimeTagger):
        return await instrument.get_channel_delay_ps(0)
    if isinstance(instrument, OpticalSwitch):
        return await instrument.get_port()
    if isinstance(instrument, Transmitter):
        return await instrument.is_running()
    raise AssertionError(f"{instrument!r} implements none of the six interfaces")


def test_implements_exactly_one_interface(any_instrument: Any) -> None:
    assert isinstance(any_instrument, Instrument)
    assert isinstance(any_instrument.name, str) and any_instrument.name
    matching = [p.__name__ for p in PROTOCOLS if isinstance(any_instrument, p)]
    assert len(matching) >= 1, "must implement one of the six interfaces"


async def test_connect_is_idempotent(any_instrument: Any) -> None:
    before = await _probe(any_instrument)
    await any_instrument.connect()
    await any_instrument.connect()
    assert await _probe(any_instrument) == before


async def test_use_after_close_raises_connection_lost(any_instrument: Any) -> None:
    await any_instrument.close()
    await any_instrument.close()  # idempotent
    with pytest.raises(ConnectionLost) as caught:
        await _probe(any_instrument)
    assert_names(any_instrument, caught.value)
    with pytest.raises(ConnectionLost):
        await any_instrument.snapshot()


async def test_reconnect_after_close_keeps_settings(any_instrument: Any) -> None:
    before = await any_instrument.snapshot()
    await any_instrument.close()
    await any_instrument.connect()
    assert await _probe(any_instrument) is not None
    after = await any_instrument.snapshot()
    assert json.dumps(after, sort_keys=True) == json.dumps(before, sort_keys=True)


async def test_async_with_connects_and_closes(any_instrument: Any) -> None:
    await any_instrument.close()
    async with any_instrument as entered:
        assert entered is any_instrument
        await _probe(any_instrument)
    with pytest.raises(ConnectionLost):
        await _probe(any_instrument)


async def test_snapshot_is_plain_json(any_instrument: Any) -> None:
    assert_json_plain(await any_instrument.snapshot())


async def test_health_is_a_health(any_instrument: Any) -> None:
    health = await any_instrument.health()
    assert isinstance(health, Health)
    assert health.ok is True, health.detail
    json.dumps(health.readings, allow_nan=False)


async def test_safe_state_is_repeatable_and_keeps_it_usable(any_instrument: Any) -> None:
    await any_instrument.safe_state()
    await any_instrument.safe_state()
    assert isinstance(await any_instrument.health(), Health)
    assert_json_plain(await any_instrument.snapshot())

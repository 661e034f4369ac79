"""Transmitter conformance: period and divider round trip, patterns load/start/stop, chunks
append only on STREAMED devices, refusals name instrument and command, safe state is dark."""

from __future__ import annotations

from typing import Any

import numpy as np

from labctl.interfaces.pattern import PatternMode, PulsePattern, seeded_pattern
from tests.conformance.conformance_checks import assert_json_plain, contains_number, expect_refusal

DESIGN = ([0.7, 0.2, 0.1], 0.5)


def pattern(n: int, seed: int) -> PulsePattern:
    return seeded_pattern(n, *DESIGN, seed=seed)


async def test_mode_and_memory_are_declared(transmitter: Any) -> None:
    assert transmitter.pattern_mode in (PatternMode.STREAMED, PatternMode.REPEATING)
    assert isinstance(transmitter.memory_pulses, int) and transmitter.memory_pulses >= 1000
    assert isinstance(transmitter.upload_pulses, int)
    assert 1 <= transmitter.upload_pulses <= transmitter.memory_pulses


async def test_period_and_divider_round_trip(transmitter: Any) -> None:
    period_ps = await transmitter.get_period_ps()
    divider = await transmitter.get_marker_divider()
    assert period_ps > 0 and divider >= 1
    await transmitter.set_period_ps(period_ps)
    await transmitter.set_marker_divider(divider)
    assert await transmitter.get_period_ps() == period_ps
    assert await transmitter.get_marker_divider() == divider


async def test_load_start_stop(transmitter: Any) -> None:
    await transmitter.load_pattern(pattern(4000, 1), repeat=True)
    assert not await transmitter.is_running()
    await transmitter.start()
    assert await transmitter.is_running()
    await transmitter.stop()
    assert not await transmitter.is_running()


async def test_append_follows_the_mode(transmitter: Any) -> None:
    await transmitter.load_pattern(pattern(2000, 2), repeat=False)
    if transmitter.pattern_mode is PatternMode.STREAMED:
        await transmitter.append_pattern(pattern(2000, 3))
    else:
        await expect_refusal(transmitter, transmitter.append_pattern(pattern(2000, 3)))


async def test_bad_patterns_are_refused(transmitter: Any) -> None:
    await expect_refusal(transmitter, transmitter.load_pattern(PulsePattern.empty(), repeat=True))
    if transmitter.memory_pulses <= 1 << 22:  # only where such a pattern is cheap to build
        n = transmitter.memory_pulses + 1
        too_long = PulsePattern(*(np.zeros(n, np.uint8) for _ in range(3)))
        error = await expect_refusal(transmitter, transmitter.load_pattern(too_long, repeat=True))
        assert str(n) in str(error) and str(transmitter.memory_pulses) in str(error)
    await expect_refusal(transmitter, transmitter.set_marker_divider(0))


async def test_safe_state_is_dark(transmitter: Any) -> None:
    await transmitter.load_pattern(pattern(1000, 4), repeat=True)
    await transmitter.start()
    await transmitter.safe_state()
    assert not await transmitter.is_running()


async def test_snapshot_holds_settings_not_states(transmitter: Any) -> None:
    await transmitter.load_pattern(pattern(1000, 5), repeat=True)
    snapshot = await transmitter.snapshot()
    assert_json_plain(snapshot)
    assert contains_number(snapshot, await transmitter.get_period_ps(), 0.5)
    assert contains_number(snapshot, float(transmitter.memory_pulses), 0.5)
    assert len(repr(snapshot)) < 2000  # settings only: never the pattern

"""SinglePhotonDetector conformance: per-channel arm, bias, level, rates, latch, safe state."""

from __future__ import annotations

import math
from typing import Any

from tests.conformance.conformance_checks import contains_number, expect_refusal


async def test_enable_round_trip(detector: Any) -> None:
    assert detector.n_channels >= 1
    for channel in range(detector.n_channels):
        await detector.set_enabled(channel, False)
        assert await detector.get_enabled(channel) is False
        await detector.set_enabled(channel, True)
        assert await detector.get_enabled(channel) is True


async def test_bias_and_trigger_level_round_trip(detector: Any) -> None:
    last = detector.n_channels - 1
    await detector.set_bias_ua(last, 9.5)
    await detector.set_trigger_level_mv(last, 120.0)
    # SNSPD drivers set bias to 0.1 uA and levels to 1 mV at best.
    assert math.isclose(await detector.get_bias_ua(last), 9.5, abs_tol=0.1)
    assert math.isclose(await detector.get_trigger_level_mv(last), 120.0, abs_tol=1.0)
    snapshot = await detector.snapshot()
    assert contains_number(snapshot, 9.5, 0.1)
    assert contains_number(snapshot, 120.0, 1.0)


async def test_bad_channel_is_refused(detector: Any) -> None:
    n = detector.n_channels
    await expect_refusal(detector, detector.set_enabled(n, True))
    await expect_refusal(detector, detector.get_bias_ua(n))
    await expect_refusal(detector, detector.is_latched(-1))


async def test_out_of_range_values_are_refused(detector: Any) -> None:
    await expect_refusal(detector, detector.set_bias_ua(0, 1.0e6))
    await expect_refusal(detector, detector.set_trigger_level_mv(0, 1.0e6))
    await expect_refusal(detector, detector.get_count_rates_hz(-1.0))


async def test_count_rates_are_per_channel_and_non_negative(detector: Any) -> None:
    rates = await detector.get_count_rates_hz(0.01)
    assert len(rates) == detector.n_channels
    assert all(isinstance(r, float) and r >= 0.0 and math.isfinite(r) for r in rates)


async def test_latch_state_is_a_bool_and_reset_is_accepted(detector: Any) -> None:
    for channel in range(detector.n_channels):
        assert await detector.is_latched(channel) is False
    await detector.reset_latch(0)
    assert await detector.is_latched(0) is False


async def test_safe_state_disarms_every_channel(detector: Any) -> None:
    for channel in range(detector.n_channels):
        await detector.set_enabled(channel, True)
    await detector.safe_state()
    for channel in range(detector.n_channels):
        assert await detector.get_enabled(channel) is False

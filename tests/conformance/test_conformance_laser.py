"""Laser conformance: output, power and wavelength round trips; refusals; safe state."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.conformance.conformance_checks import contains_number, expect_refusal


async def test_output_round_trip(laser: Any) -> None:
    await laser.set_output(True)
    assert await laser.get_output() is True
    await laser.set_output(False)
    assert await laser.get_output() is False


@pytest.mark.parametrize("power_mw", [0.5, 1.5, 10.0])
async def test_power_round_trip_in_mw(laser: Any, power_mw: float) -> None:
    await laser.set_power_mw(power_mw)
    # Real lasers set power to 0.01 dB; 0.5 % covers that and nothing coarser.
    assert math.isclose(await laser.get_power_mw(), power_mw, rel_tol=5e-3)


async def test_wavelength_round_trip_in_nm(laser: Any) -> None:
    await laser.set_wavelength_nm(1550.125)
    assert math.isclose(await laser.get_wavelength_nm(), 1550.125, abs_tol=1e-3)


async def test_snapshot_reflects_settings(laser: Any) -> None:
    await laser.set_power_mw(2.5)
    await laser.set_wavelength_nm(1549.5)
    snapshot = await laser.snapshot()
    assert contains_number(snapshot, 2.5, 0.02)
    assert contains_number(snapshot, 1549.5, 1e-3)


@pytest.mark.parametrize("power_mw", [-1.0, 1.0e6, math.nan])
async def test_power_out_of_range_is_refused(laser: Any, power_mw: float) -> None:
    await laser.set_power_mw(1.0)
    await expect_refusal(laser, laser.set_power_mw(power_mw))
    assert math.isclose(await laser.get_power_mw(), 1.0, rel_tol=5e-3)


@pytest.mark.parametrize("wavelength_nm", [10.0, 1.0e5])
async def test_wavelength_out_of_range_is_refused(laser: Any, wavelength_nm: float) -> None:
    await expect_refusal(laser, laser.set_wavelength_nm(wavelength_nm))


async def test_safe_state_turns_the_output_off(laser: Any) -> None:
    await laser.set_output(True)
    await laser.safe_state()
    assert await laser.get_output() is False

"""PolarizationController conformance: per-axis voltages in mV, range checks, safe state."""

from __future__ import annotations

from typing import Any

from tests.conformance.conformance_checks import contains_number, expect_refusal

# Controllers set voltages in whole millivolts (EPC-400); 1 mV is the resolution we allow.
TOLERANCE_MV = 1.0


def _inside(pc: Any, fraction: float) -> float:
    low, high = pc.voltage_range_mv
    return round(low + (high - low) * fraction)


async def test_axes_and_range(polarization_controller: Any) -> None:
    pc = polarization_controller
    assert pc.n_axes >= 1
    low, high = pc.voltage_range_mv
    assert low < high
    assert len(await pc.get_voltages_mv()) == pc.n_axes


async def test_set_all_round_trip(polarization_controller: Any) -> None:
    pc = polarization_controller
    wanted = [_inside(pc, (i + 1) / (pc.n_axes + 2)) for i in range(pc.n_axes)]
    await pc.set_voltages_mv(wanted)
    got = await pc.get_voltages_mv()
    assert all(abs(g - w) <= TOLERANCE_MV for g, w in zip(got, wanted, strict=True))


async def test_set_one_axis_leaves_the_others(polarization_controller: Any) -> None:
    pc = polarization_controller
    await pc.set_voltages_mv([0.0] * pc.n_axes)
    target = _inside(pc, 0.8)
    await pc.set_voltage_mv(pc.n_axes - 1, target)
    got = await pc.get_voltages_mv()
    assert abs(got[-1] - target) <= TOLERANCE_MV
    assert all(abs(v) <= TOLERANCE_MV for v in got[:-1])


async def test_snapshot_reflects_voltages(polarization_controller: Any) -> None:
    pc = polarization_controller
    target = _inside(pc, 0.65)
    await pc.set_voltage_mv(0, target)
    assert contains_number(await pc.snapshot(), target, TOLERANCE_MV)


async def test_voltage_beyond_range_is_refused(polarization_controller: Any) -> None:
    pc = polarization_controller
    low, high = pc.voltage_range_mv
    await pc.set_voltages_mv([0.0] * pc.n_axes)
    await expect_refusal(pc, pc.set_voltage_mv(0, high + 1000.0))
    await expect_refusal(pc, pc.set_voltage_mv(0, low - 1000.0))
    await expect_refusal(pc, pc.set_voltages_mv([high + 1000.0] * pc.n_axes))
    assert all(abs(v) <= TOLERANCE_MV for v in await pc.get_voltages_mv())


async def test_bad_axis_and_wrong_length_are_refused(polarization_controller: Any) -> None:
    pc = polarization_controller
    await expect_refusal(pc, pc.set_voltage_mv(pc.n_axes, 0.0))
    await expect_refusal(pc, pc.set_voltage_mv(-1, 0.0))
    await expect_refusal(pc, pc.set_voltages_mv([0.0] * (pc.n_axes + 1)))


async def test_safe_state_zeroes_every_axis(polarization_controller: Any) -> None:
    pc = polarization_controller
    await pc.set_voltages_mv([_inside(pc, 0.7)] * pc.n_axes)
    await pc.safe_state()
    assert all(abs(v) <= TOLERANCE_MV for v in await pc.get_voltages_mv())

"""Polarization compensation: drive Bob's controller until both bases show the QBER floor.

The QBER of each basis is linear in the entries of the total rotation (controller x fiber),
and each squeezer rotates about a fixed axis by a retardance linear in its voltage, so with
the other squeezers fixed the QBER is exactly A + B cos(d) + C sin(d) in that squeezer's
retardance d. Three evaluations (the current one and +-120 degrees) give the exact minimum
along that axis (sequential minimal optimisation, "Rotosolve"); sweeping the four squeezers
a few times converges in well under 60 evaluations from any start.
"""

from __future__ import annotations

import math
from typing import Any

from experiments.calibration.common import CalibrationFailed, RoutineResult, Session
from experiments.calibration.qber import QberSample, measure_qber
from labctl.interfaces.units import ps_to_seconds


def wrap_voltage(voltage_mv: float, v_pi_mv: float, low: float, high: float) -> float:
    """The voltage of the same retardance (mod 2 pi) nearest 0 mV inside [low, high]."""
    period = 2.0 * v_pi_mv
    options = [voltage_mv + k * period for k in range(-8, 9)]
    inside = [v for v in options if low <= v <= high]
    if not inside:
        raise CalibrationFailed(
            f"controller range {low:g}..{high:g} mV is narrower than 2 V_pi ({period:g} mV)"
        )
    return min(inside, key=abs)


class _Search:
    """Counts evaluations and logs each one to the dataset."""

    def __init__(self, session: Session, dataset: Any, seconds: float, limit: int) -> None:
        self.session = session
        self.dataset = dataset
        self.seconds = seconds
        self.limit = limit
        self.count = 0
        self.pc = session.get("pc")
        self.history: list[dict[str, float]] = []

    async def evaluate(self, voltages: list[float]) -> QberSample:
        if self.count >= self.limit:
            raise RuntimeError("evaluation budget exhausted")
        await self.pc.set_voltages_mv(voltages)
        sample = await measure_qber(self.session, self.seconds)
        self.count += 1
        row = {f"v{i}_mv": v for i, v in enumerate(voltages)}
        row.update(evaluation=self.count, qber_z=sample.qber_z, qber_x=sample.qber_x)
        self.dataset.add(**row)
        self.history.append(row)
        return sample


async def calibrate_polarization(session: Session) -> RoutineResult:
    """Minimise the QBER of both bases with Bob's polarization controller."""
    await session.require("laser", "detectors", "tagger", "switch", "pc")
    cfg = session.settings.section("polarization")
    run = session.run
    pc = session.get("pc")
    low, high = pc.voltage_range_mv
    v_pi = float(cfg["v_pi_mv"])
    step_mv = 2.0 * v_pi / 3.0  # 120 degrees of retardance
    limit = int(cfg["max_evaluations"])
    await session.light_on()
    await session.synchronize()
    columns = [f"v{i}_mv" for i in range(pc.n_axes)] + ["qber_z", "qber_x"]
    dataset = run.dataset("cal_polarization", setpoints=["evaluation"], measured=columns)
    search = _Search(session, dataset, float(cfg["evaluation_s"]), limit)
    voltages = [float(v) for v in await pc.get_voltages_mv()]
    start = list(voltages)
    with run.progress.task("polarization", total=limit) as bar:
        current = await search.evaluate(voltages)
        start_qber = current.qber
        cost = current.qber
        bar.advance()
        while search.count + 2 * pc.n_axes + 1 <= limit:
            before = cost
            for axis in range(pc.n_axes):
                plus, minus = list(voltages), list(voltages)
                plus[axis] = wrap_voltage(voltages[axis] + step_mv, v_pi, low, high)
                minus[axis] = wrap_voltage(voltages[axis] - step_mv, v_pi, low, high)
                c_plus = (await search.evaluate(plus)).qber
                c_minus = (await search.evaluate(minus)).qber
                bar.advance(2)
                a = (cost + c_plus + c_minus) / 3.0
                b = (2.0 * cost - c_plus - c_minus) / 3.0
                c = (c_plus - c_minus) / math.sqrt(3.0)
                theta = math.atan2(-c, -b)
                voltages[axis] = wrap_voltage(
                    voltages[axis] + theta * v_pi / math.pi, v_pi, low, high
                )
                cost = a - math.hypot(b, c)
            current = await search.evaluate(voltages)
            cost = current.qber
            bar.advance()
            if before - cost < 5e-4:
                break
    floor = _floor(session, cfg, current)
    limit_qber = float(cfg["max_qber"])
    passed = current.qber <= limit_qber and (floor is None or current.qber <= floor + 0.005)
    target = f"limit {limit_qber:.2%}" + ("" if floor is None else f", floor {floor:.2%} + 0.5 pp")
    reason = (
        f"QBER {current.qber:.2%} (Z {current.qber_z:.2%}, X {current.qber_x:.2%}) after "
        f"{search.count} evaluations from {start_qber:.2%}; {target}"
    )
    values = {
        "voltages_mv": voltages,
        "start_voltages_mv": start,
        "qber": current.qber,
        "qber_z": current.qber_z,
        "qber_x": current.qber_x,
        "start_qber": start_qber,
        "evaluations": search.count,
        "floor_estimate": floor,
    }
    return RoutineResult(
        "polarization", session.name_of("pc"), passed, reason, values, "cal_polarization"
    )


def _floor(session: Session, cfg: dict[str, Any], sample: QberSample) -> float | None:
    """Misalignment error plus the background share (half of background clicks are errors)."""
    misalignment = cfg["misalignment"]
    if misalignment is None:
        return None
    share = sample.background_share
    if share is None:
        dark_per_pulse = sum(session.dark_rates_hz.values()) * ps_to_seconds(
            session.alice.period_ps
        )
        share = dark_per_pulse / max(sample.clicks_per_pulse, 1e-12)
    share = min(max(share, 0.0), 1.0)
    return float(misalignment) * (1.0 - share) + 0.5 * share

"""Resuming the main job: reuse the run's calibration while it is valid and still checks out.

A resumed run (``labctl resume RUN``) does not recalibrate when the calibration store holds
this run's calibration of every routine, none has expired (its age: run-clock time spent
up to the last checkpoint plus the wall time since), and a check passes: the settings the
calibration found (tagger channel delays, polarization voltages) are put back on the
instruments, the light path is set up as calibration leaves it, and a short capture's QBER
must be within the polarization limit. Anything else (no entry, an entry of another run,
expiry, a failed check, an instrument error) recalibrates. Synchronization is always done
again: the clock offset is physics and a restarted tagger has a new one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from experiments.calibration.common import CalibrationFailed, Session
from experiments.calibration.qber import measure_qber
from experiments.calibration.registry import ROUTINES
from experiments.calibration.routine import store_of
from experiments.keygen.checkpoint import KeygenState
from labctl.interfaces.clock import Clock
from labctl.interfaces.errors import InstrumentError
from labctl.runner.plan_context import PlanContext

CHECK_CAPTURE_S = 0.01
"""Seconds of light for the resume check: 1e7 pulses, some 10^4 sifted bits on sim.yaml,
so a QBER within the 3 % limit is told from a misaligned link (tens of percent)."""


@dataclass
class RunAges:
    """Run time and calibration age on the run clock, carried over resumes.

    Each process's clock starts anew (a simulated one at zero), so ages are a base carried
    in the checkpoint plus what this process's clock adds since ``t0``.
    """

    clock: Clock
    run_base_s: float
    run_t0_s: float
    calibration_base_s: float | None = None
    calibration_t0_s: float = 0.0

    @classmethod
    def start(cls, clock: Clock, state: KeygenState | None) -> RunAges:
        """Ages at the plan's start: fresh (zero) or carried from a resumed state."""
        base = 0.0 if state is None or state.run_time_s is None else state.run_time_s
        return cls(clock, base, clock.now_s())

    def run_time_s(self) -> float:
        """Run-clock seconds the run has been running (all processes together)."""
        return self.run_base_s + self.clock.now_s() - self.run_t0_s

    def calibration_age_s(self) -> float | None:
        """Run-clock seconds since the calibration (None: no passed calibration)."""
        if self.calibration_base_s is None:
            return None
        return self.calibration_base_s + self.clock.now_s() - self.calibration_t0_s

    def calibrated(self, age_s: float = 0.0) -> None:
        """A calibration passed ``age_s`` seconds ago (0: now)."""
        self.calibration_base_s, self.calibration_t0_s = age_s, self.clock.now_s()


def calibration_age_s(state: KeygenState, now_wall_ts: float | None = None) -> float | None:
    """The calibration's age now: at the checkpoint plus the wall time since (never less)."""
    if state.calibrated_age_s is None:
        return None
    now = time.time() if now_wall_ts is None else now_wall_ts
    return state.calibrated_age_s + max(now - state.wall_ts, 0.0)


async def reuse_calibration(run: PlanContext, state: KeygenState) -> float | None:
    """The reused calibration's age, or None (with the reason logged) to recalibrate."""
    age_s = calibration_age_s(state)
    reason = await _why_not(run, age_s)
    if reason is None:
        assert age_s is not None
        checked = await _check(run)
        if isinstance(checked, str):
            reason = checked
        else:
            run.log.info(
                "calibration reused (age %.0f s, check QBER %.2f %%)", age_s, 100 * checked
            )
            run.emit(
                "calibration",
                {"action": "reused", "age_s": age_s, "check_qber": checked, "passed": True},
            )
            return age_s
    run.log.info("recalibrating on resume: %s", reason)
    run.emit("calibration", {"action": "recalibrate", "reason": reason})
    return None


async def _why_not(run: PlanContext, age_s: float | None) -> str | None:
    """Why the run's calibration cannot be reused (None: it can, pending the check)."""
    if age_s is None:
        return "no calibration passed before the interruption"
    store = store_of(run)
    if store is None:
        return "the station has no calibration store"
    try:
        mine = {c.kind: c for c in store.all() if c.provenance.get("run_id") == run.run_id}
    except (OSError, ValueError) as exc:
        return f"calibration store unreadable: {exc}"
    missing = [name for name in ROUTINES if name not in mine]
    if missing:
        return f"calibration store {store.path} holds no calibration of this run for {missing}"
    valid_s = min(c.expires_s - c.time_s for c in mine.values())
    if age_s >= valid_s:
        return f"calibration expired (age {age_s:.0f} s, valid {valid_s:.0f} s)"
    session = Session.of(run)
    try:
        await session.light_on()
        tagger = session.get("tagger")
        for channel, delay_ps in mine["delays"].values.get("delay_ps", {}).items():
            await tagger.set_channel_delay_ps(int(channel), int(delay_ps))
        voltages = mine["polarization"].values.get("voltages_mv")
        if voltages is not None:
            await session.get("pc").set_voltages_mv([float(v) for v in voltages])
    except (InstrumentError, KeyError, TypeError, ValueError) as exc:
        return f"calibrated settings not restored: {type(exc).__name__}: {exc}"
    return None


async def _check(run: PlanContext) -> float | str:
    """QBER of a short capture (float), or why the check failed (str)."""
    session = Session.of(run)
    limit = float(session.settings.section("polarization")["max_qber"])
    try:
        sample = await measure_qber(session, CHECK_CAPTURE_S)
    except (CalibrationFailed, InstrumentError) as exc:
        return f"resume check failed: {exc}"
    if not sample.qber <= limit:
        return f"resume check failed: QBER {sample.qber:.2%} above the limit {limit:.2%}"
    return sample.qber

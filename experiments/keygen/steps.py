"""Calibration and synchronization as steps of the key-generation plan.

They call the calibration and sync packages (experiments.calibration, experiments.sync)
and return what key generation needs: a JSON-able calibration summary (the station is left
calibrated), a synchronization, and a clock map kept locked block after block.
"""

from __future__ import annotations

from typing import Any

from experiments.calibration import CalibrationReport, calibrate_all
from experiments.keygen.acquisition import ClockMap
from experiments.sync import SyncError, SyncResult, SyncTracker, relock
from experiments.sync import synchronize as sync_plan
from labctl.runner.plan_context import PlanContext


def report_summary(report: CalibrationReport) -> dict[str, Any]:
    """What a calibration report says, as plain JSON (verdicts, reasons, sync figures)."""
    return {
        "passed": report.passed,
        "routines": {
            r.name: {"instrument": r.instrument, "passed": r.passed, "reason": r.reason}
            for r in report.results
        },
        "sync": dict(report.sync),
    }


async def calibrate(run: PlanContext) -> dict[str, Any]:
    """Run every calibration (``experiments.calibration.calibrate_all``); its summary."""
    return report_summary(await calibrate_all(run))


async def synchronize(run: PlanContext) -> SyncResult:
    """Lock Bob's clock onto Alice's pulses (``experiments.sync.synchronize``)."""
    return await sync_plan(run)


def sync_figures(clock_map: ClockMap) -> tuple[float | None, float | None]:
    """(offset_ps, drift_ppb) of a clock map, when it exposes them."""
    offset = getattr(clock_map, "offset_ps", None)
    drift = getattr(clock_map, "drift_ppb", None)
    return (
        None if offset is None else float(offset),
        None if drift is None else float(drift),
    )


MAX_RELOCK_GAP_S = 30.0
"""Run-clock seconds since the last lock after which a block resynchronizes instead of
relocking. A relock measures the pulse phase only, so it cannot see a slip of whole pulses:
a fitted drift good to ~0.01 ppb slips half a pulse (500 ps at 1 GHz) in about 50 s. After
an hour of suspension (an intercept-resend window) every later block sifted at QBER 50 %
while every tag still fell in the gate."""


class BlockClock:
    """The clock map of each key block: a synchronization tracked from block to block.

    A fitted drift is good to ~0.01 ppb, which slips a pulse after about a minute and a
    half, so a SyncResult is refreshed from fresh tags before every block
    (``experiments.sync.relock``); when the lock is lost, or the last one is older than
    :data:`MAX_RELOCK_GAP_S`, the link is resynchronized. Any other clock map (e.g. the
    world's truth in tests) is used as it is.
    """

    def __init__(self, clock_map: ClockMap) -> None:
        self.clock_map = clock_map
        self.tracker = SyncTracker(clock_map) if isinstance(clock_map, SyncResult) else None
        self.resyncs = 0
        self.locked_s: float | None = None
        """Run clock of the last lock (relock or synchronization); None: not known yet."""

    async def for_block(self, run: PlanContext, tagger: Any) -> ClockMap:
        """The clock map to acquire the next block with; Bob's stream is left running."""
        if self.tracker is None:
            await tagger.stop_stream()  # only tags from now on: the block starts after this
            await tagger.start_stream()
            return self.clock_map
        now_s = run.clock.now_s()
        if self.locked_s is not None and now_s - self.locked_s > MAX_RELOCK_GAP_S:
            reason = (
                f"last lock {now_s - self.locked_s:.0f} s ago (more than "
                f"{MAX_RELOCK_GAP_S:g} s: the drift may have slipped whole pulses)"
            )
        else:
            try:
                result = await relock(self.tracker, tagger)
            except SyncError as exc:
                reason = str(exc)
            else:
                self.locked_s = run.clock.now_s()
                return result
        run.log.warning("resynchronizing: %s", reason)
        run.emit("sync", {"action": "resynchronize", "reason": reason})
        await self.resynchronize(run)
        return self.clock_map

    async def resynchronize(self, run: PlanContext) -> SyncResult:
        """A full synchronization (e.g. a suspender's remedy); tracking restarts from it."""
        result = await synchronize(run)
        self.clock_map = result
        self.tracker = SyncTracker(result)
        self.resyncs += 1
        self.locked_s = run.clock.now_s()
        return result

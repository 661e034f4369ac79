"""Renew calibrations before they expire, so that key output never stops for an expiry.

The trust gate stores no key once a calibration that key depends on has expired
(experiments/keygen/trust.py). Without renewal, a run outlasting a calibration's validity
(polarization: an hour) loses the blocks between the expiry and the recalibration that the
key stall finally triggers. Between blocks, :class:`Renewal` runs again every required
calibration that expires within ``lead_s`` of run clock (the next block and the check
after it):

* polarization through the QBER watch's remedy, which drains post-processing and runs its
  hooks (latched detectors reset first, the drift tracker told after);
* the others through the calibration registry, after the same drain (calibration blanks
  and re-powers the laser: no block may be in post-processing meanwhile).

A renewal that fails is logged and emitted; the gate then stops key at the expiry as it
would have, and the suspenders take over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from experiments.calibration import calibrate
from experiments.keygen.trust import CalibrationSource
from labctl.runner.plan_context import PlanContext
from labctl.store.calibration import Calibration

Remedy = Callable[[PlanContext], Awaitable[None]]


@dataclass
class Renewal:
    """Calibrations of ``kinds`` renewed when they expire within ``lead_s``."""

    store: CalibrationSource
    kinds: Sequence[str]
    lead_s: float
    drain: Callable[[], Awaitable[None]]
    """Waits until no block is in post-processing."""
    polarization: Remedy | None = None
    """The polarization remedy (drains and runs its hooks itself); None: the registry's."""
    renewed: int = 0
    """Calibration runs made so far (one per kind renewed)."""

    def __post_init__(self) -> None:
        if not self.lead_s > 0.0:
            raise ValueError(f"Renewal: lead_s must be > 0, got {self.lead_s}")

    def due(self, now_s: float) -> list[str]:
        """Kinds whose latest calibration expires by ``now_s + lead_s`` (in ``kinds`` order).

        A kind never calibrated is not renewed here: the gate reports it, and renewing
        cannot fix a routine that never passed."""
        latest: dict[str, Calibration] = {}
        for entry in self.store.all():
            seen = latest.get(entry.kind)
            if entry.kind in self.kinds and (seen is None or entry.time_s > seen.time_s):
                latest[entry.kind] = entry
        horizon_s = now_s + self.lead_s
        return [k for k in self.kinds if k in latest and latest[k].expires_s <= horizon_s]

    async def before_block(self, run: PlanContext) -> list[str]:
        """Renew what is due now; the kinds renewed."""
        due = self.due(run.clock.now_s())
        if not due:
            return []
        run.log.info("renewing calibration(s) before they expire: %s", ", ".join(due))
        run.emit("calibration", {"action": "renew", "kinds": due})
        others = [kind for kind in due if kind != "polarization" or self.polarization is None]
        if others:
            await self.drain()
            report = await calibrate(run, others)
            for result in report.results:
                if not result.passed:
                    self._failed(run, result.name, result.reason)
        if "polarization" in due and self.polarization is not None:
            try:
                await self.polarization(run)
            except RuntimeError as exc:  # the remedy's way of saying the routine failed
                self._failed(run, "polarization", str(exc))
        self.renewed += len(due)
        return due

    @staticmethod
    def _failed(run: PlanContext, kind: str, reason: str) -> None:
        run.log.warning("renewing %s failed: %s", kind, reason)
        run.emit("calibration", {"action": "renew-failed", "kind": kind, "reason": reason})


def install(
    run: PlanContext,
    store: CalibrationSource | None,
    kinds: Sequence[str],
    *,
    block_interval_s: float,
    block_s: float,
    drain: Callable[[], Awaitable[None]],
    polarization: Remedy | None,
) -> Renewal | None:
    """The run's renewal (None without a calibration store): a calibration is renewed when
    it would expire before the next block and its check are over."""
    if store is None:
        return None
    lead_s = 2.0 * max(block_interval_s, block_s)
    run.log.info("calibrations renewed %.0f s before they expire: %s", lead_s, ", ".join(kinds))
    return Renewal(store, tuple(kinds), lead_s, drain, polarization)

"""Keep key generation calibrated: a QBER suspender whose remedy recalibrates polarization.

The suspender reads the QBER of the latest post-processed block. Its remedy runs the
polarization calibration and replaces that reading with the calibration's own fresh
measurement, so the runner's re-check after the settle delay judges the new alignment,
not the block that tripped it; blocks acquired before the remedy no longer count.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from experiments.calibration import calibrate
from labctl.link.nodes import BlockResult
from labctl.link.settings import KeygenSettings
from labctl.runner.plan_context import PlanContext
from labctl.runner.suspenders import Backoff, Suspender

LASTING_QBER = Backoff(first_s=30.0, max_s=600.0, give_up_s=6 * 3600.0)
"""Past three failed recalibrations (e.g. intercept-resend: no calibration can pass) the run
stays suspended and recalibrates again after 30 s, 60 s, ... up to every 10 minutes; it
aborts after 6 hours of run clock, or ends earlier with the run's duration."""


class QberWatch:
    """The latest QBER seen on the link (max of both bases), for a suspender."""

    def __init__(self) -> None:
        self.latest: float | None = None
        self.next_block = 0
        """Index of the next block to be acquired."""
        self._first_counted = 0
        self.before_calibration: list[Callable[[], Awaitable[None]]] = []
        """Run before every polarization recalibration (e.g. resetting latched detectors)."""
        self.after_calibration: list[Callable[[], Awaitable[None]]] = []
        """Run after every polarization recalibration, passed or not (it moved the controller)."""
        self.remedy: Callable[[Any], Awaitable[None]] | None = None
        """The recalibration remedy :func:`install` added (for other suspenders to share)."""

    def acquired(self, block: int) -> None:
        """Acquisition handed block ``block`` to post-processing."""
        self.next_block = block + 1

    def observe(self, result: BlockResult) -> None:
        """Take a block's QBER, unless the block was acquired before the last remedy."""
        if result.block < self._first_counted:
            return
        values = [q for q in (result.qber_z, result.qber_x) if q is not None]
        if values:
            self.latest = max(values)

    def measured(self, qber: float) -> None:
        """A calibration's measurement replaces the block readings taken before it."""
        self.latest = qber
        self._first_counted = self.next_block

    async def read(self) -> float | None:
        """The suspender's reading (None before the first block: not tripped)."""
        return self.latest


async def recalibrate_polarization(run: PlanContext, watch: QberWatch) -> None:
    """The remedy: polarization calibration; RuntimeError (remedy failed) when it fails."""
    for hook in watch.before_calibration:
        await hook()
    try:
        report = await calibrate(run, ["polarization"])
    finally:
        for hook in watch.after_calibration:
            await hook()
    result = report.get("polarization")
    if not result.passed:
        raise RuntimeError(f"polarization recalibration failed: {result.reason}")
    qber = result.values.get("qber")
    if isinstance(qber, int | float):
        watch.measured(float(qber))


def install(
    run: PlanContext, settings: KeygenSettings, drain: Callable[[], Awaitable[None]]
) -> QberWatch:
    """Add the QBER suspender and the ``recalibrate`` remedy (MQTT command) to the run.

    ``drain`` waits until the blocks already acquired are post-processed: Alice's node
    reads her source's intensities when it processes a block, and calibration blanks and
    re-powers the laser, so no block may be in post-processing while it runs.
    """
    watch = QberWatch()

    async def remedy(run: PlanContext) -> None:
        await drain()
        await recalibrate_polarization(run, watch)

    run.add_suspender(
        Suspender.above(
            "qber",
            watch.read,
            settings.suspend_qber,
            quantity="QBER",
            remedy=remedy,
            settle_s=settings.suspend_settle_s,
            backoff=LASTING_QBER,
        )
    )
    run.add_remedy("recalibrate", remedy)
    watch.remedy = remedy
    return watch

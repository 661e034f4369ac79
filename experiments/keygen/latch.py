"""Latched detectors during key generation: a suspender that resets them.

A superconducting detector hit by too much light (or a bias glitch) latches: it stays
normal-conducting and counts nothing until its bias is cycled. Blocks acquired meanwhile
lose a quarter of Bob's detections and skew the basis statistics, and the instrument's
health stays bad, so a link remedy that only reconnects never brings it back. The
suspender checks Bob's detector channels at every checkpoint; its remedy cycles the bias
of the latched ones (``reset_latch``), and the runner checks again after the settle delay.
"""

from __future__ import annotations

from experiments.calibration.common import CalibrationFailed, Session
from labctl.interfaces.devices import SinglePhotonDetector
from labctl.runner.plan_context import PlanContext
from labctl.runner.suspenders import Suspender


def install(run: PlanContext, *, settle_s: float = 0.5) -> Suspender | None:
    """Add the latch suspender for Bob's detectors (None when the station has none)."""
    try:
        detector: SinglePhotonDetector = Session.of(run).get("detectors")
    except CalibrationFailed as exc:
        run.log.warning("latched detectors not watched: %s", exc)
        return None
    channels = range(detector.n_channels)

    async def reset_latched(run: PlanContext) -> None:
        for channel in channels:
            if await detector.is_latched(channel):
                run.log.warning("%s channel %d latched: cycling its bias", detector.name, channel)
                await detector.reset_latch(channel)

    suspender = Suspender.latched(detector, list(channels), remedy=reset_latched, settle_s=settle_s)
    run.add_suspender(suspender)
    return suspender

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


async def reset_latched(run: PlanContext, detector: SinglePhotonDetector) -> None:
    """Cycle the bias of every latched channel of ``detector``."""
    for channel in range(detector.n_channels):
        if await detector.is_latched(channel):
            run.log.warning("%s channel %d latched: cycling its bias", detector.name, channel)
            await detector.reset_latch(channel)


def install(run: PlanContext, *, settle_s: float = 0.5) -> SinglePhotonDetector | None:
    """Add the latch suspender for Bob's detectors; the detectors (None when there are none).

    Another suspender's remedy that needs counting detectors (the polarization calibration)
    should call :func:`reset_latched` first: suspenders are checked one after the other, so
    this one cannot run while another holds the run suspended.
    """
    try:
        detector: SinglePhotonDetector = Session.of(run).get("detectors")
    except CalibrationFailed as exc:
        run.log.warning("latched detectors not watched: %s", exc)
        return None

    async def remedy(run: PlanContext) -> None:
        await reset_latched(run, detector)

    channels = list(range(detector.n_channels))
    run.add_suspender(Suspender.latched(detector, channels, remedy=remedy, settle_s=settle_s))
    return detector

"""Every calibration routine by name, ``calibrate_all`` and one plan per routine.

Order matters in ``all``: channel delays first (the other routines read the aligned
peaks), detectors next (dark counts and dead times feed the photon-number and switch
checks), then polarization, mean photon number and the switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.calibration.common import RoutineResult, Session
from experiments.calibration.delays import calibrate_delays
from experiments.calibration.detectors import calibrate_detectors
from experiments.calibration.photons import calibrate_mean_photon_number
from experiments.calibration.polarization import calibrate_polarization
from experiments.calibration.routine import Routine, run_routine
from experiments.calibration.switch import calibrate_switch
from labctl.runner.plan_context import PlanContext

ROUTINES: dict[str, Routine] = {
    r.name: r
    for r in (
        Routine("delays", "tagger", "time-tagger channel delays", calibrate_delays),
        Routine("detectors", "detectors", "detector characterization", calibrate_detectors),
        Routine("polarization", "pc", "polarization compensation", calibrate_polarization),
        Routine("mean_photon_number", "laser", "mean photon number", calibrate_mean_photon_number),
        Routine("switch", "switch", "optical switch path check", calibrate_switch),
    )
}


@dataclass(slots=True)
class CalibrationReport:
    """The verdicts of one calibration run."""

    results: list[RoutineResult] = field(default_factory=list)
    sync: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when every routine passed."""
        return bool(self.results) and all(r.passed for r in self.results)

    def get(self, name: str) -> RoutineResult:
        """The result of routine ``name``."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no result for routine {name!r}")


async def calibrate(run: PlanContext, names: list[str]) -> CalibrationReport:
    """Run the named routines in order in one session; failures do not stop the others."""
    unknown = [n for n in names if n not in ROUTINES]
    if unknown:
        raise ValueError(f"unknown calibration(s) {unknown}; known: {', '.join(ROUTINES)}")
    session = Session.of(run)
    report = CalibrationReport()
    with run.progress.task("calibration", total=len(names)) as bar:
        for name in names:
            report.results.append(await run_routine(session, ROUTINES[name]))
            bar.advance()
            await run.checkpoint()
    if session.tracker is not None:
        report.sync = session.tracker.result.summary()
    return report


async def calibrate_all(run: PlanContext) -> CalibrationReport:
    """Every calibration routine, in dependency order."""
    return await calibrate(run, list(ROUTINES))


async def plan_delays(run: PlanContext) -> CalibrationReport:
    """Time-tagger channel delays only."""
    return await calibrate(run, ["delays"])


async def plan_detectors(run: PlanContext) -> CalibrationReport:
    """Detector characterization only."""
    return await calibrate(run, ["detectors"])


async def plan_polarization(run: PlanContext) -> CalibrationReport:
    """Polarization compensation only."""
    return await calibrate(run, ["polarization"])


async def plan_mean_photon_number(run: PlanContext) -> CalibrationReport:
    """Mean photon number per intensity class only."""
    return await calibrate(run, ["mean_photon_number"])


async def plan_switch(run: PlanContext) -> CalibrationReport:
    """Optical switch path check only."""
    return await calibrate(run, ["switch"])


PLANS = {
    "all": calibrate_all,
    "delays": plan_delays,
    "detectors": plan_detectors,
    "polarization": plan_polarization,
    "mean_photon_number": plan_mean_photon_number,
    "switch": plan_switch,
}


def validate_config(config: Any) -> None:
    """Check a station config's ``calibration:`` and ``sync:`` sections (ConfigError if bad)."""
    from experiments.calibration.settings import CalibrationSettings
    from experiments.sync.settings import SyncSettings

    CalibrationSettings.from_section(config.raw_section("calibration"), config.file)
    SyncSettings.from_section(config.raw_section("sync"), config.file)

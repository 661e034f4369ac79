"""Simulated twins: the five instrument interfaces as thin adapters onto the shared world.

Config class paths: ``sims.twins:SimLaser``, ``sims.twins:SimPolarizationController``,
``sims.twins:SimDetector``, ``sims.twins:SimTimeTagger``, ``sims.twins:SimOpticalSwitch``.
"""

from sims.twins.base import SimTwin
from sims.twins.detector import SimDetector
from sims.twins.laser import SimLaser
from sims.twins.polarization import SimPolarizationController
from sims.twins.switch import SimOpticalSwitch
from sims.twins.tagger import SimTimeTagger

__all__ = [
    "SimDetector",
    "SimLaser",
    "SimOpticalSwitch",
    "SimPolarizationController",
    "SimTimeTagger",
    "SimTwin",
]

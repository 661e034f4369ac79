"""Simulated twins: the six instrument interfaces as thin adapters onto the shared world.

Config class paths: ``sims.twins:SimLaser``, ``sims.twins:SimPolarizationController``,
``sims.twins:SimDetector``, ``sims.twins:SimTimeTagger``, ``sims.twins:SimOpticalSwitch``,
``sims.twins:SimTransmitter``.
"""

from sims.twins.base import SimTwin
from sims.twins.detector import SimDetector
from sims.twins.laser import SimLaser
from sims.twins.polarization import SimPolarizationController
from sims.twins.switch import SimOpticalSwitch
from sims.twins.tagger import SimTimeTagger
from sims.twins.transmitter import SimTransmitter

__all__ = [
    "SimDetector",
    "SimLaser",
    "SimOpticalSwitch",
    "SimPolarizationController",
    "SimTimeTagger",
    "SimTransmitter",
    "SimTwin",
]

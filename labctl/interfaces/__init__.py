"""The contract shared by drivers, twins and the framework: protocols, errors, units, tags."""

from labctl.interfaces.build import BuildContext, FromConfig, InstrumentSpec, Source, TransportSpec
from labctl.interfaces.clock import Clock, WallClock
from labctl.interfaces.devices import (
    Laser,
    OpticalSwitch,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
    Transmitter,
)
from labctl.interfaces.errors import (
    TRANSIENT_ERRORS,
    ConfigError,
    ConnectionLost,
    InstrumentError,
    InstrumentFault,
    InstrumentTimeout,
    LabctlError,
    ProtocolError,
)
from labctl.interfaces.instrument import Health, Instrument, LifecycleMixin
from labctl.interfaces.pattern import PatternMode, PulsePattern, secret_pattern
from labctl.interfaces.tags import TagBatch

__all__ = [
    "TRANSIENT_ERRORS",
    "BuildContext",
    "Clock",
    "ConfigError",
    "ConnectionLost",
    "FromConfig",
    "Health",
    "Instrument",
    "InstrumentError",
    "InstrumentFault",
    "InstrumentSpec",
    "InstrumentTimeout",
    "LabctlError",
    "Laser",
    "LifecycleMixin",
    "OpticalSwitch",
    "PatternMode",
    "PolarizationController",
    "ProtocolError",
    "PulsePattern",
    "SinglePhotonDetector",
    "Source",
    "TagBatch",
    "TimeTagger",
    "Transmitter",
    "TransportSpec",
    "WallClock",
    "secret_pattern",
]

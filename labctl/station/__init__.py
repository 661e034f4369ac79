"""Station files -> validated config -> connected instruments, with one lifecycle for all."""

from labctl.station.errors import ConfigErrorGroup
from labctl.station.loader import import_classes, load_config, validate_config
from labctl.station.model import (
    InstrumentConfig,
    LoggingConfig,
    MqttConfig,
    StationConfig,
    StorageConfig,
    TlsConfig,
    TransportConfig,
    WorldConfig,
)
from labctl.station.station import DEFAULT_TIMEOUT_S, Station, StationError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ConfigErrorGroup",
    "InstrumentConfig",
    "LoggingConfig",
    "MqttConfig",
    "Station",
    "StationConfig",
    "StationError",
    "StorageConfig",
    "TlsConfig",
    "TransportConfig",
    "WorldConfig",
    "import_classes",
    "load_config",
    "validate_config",
]

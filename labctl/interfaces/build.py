"""How the station builds an instrument (or the simulated world) named in a config file.

labctl never imports drivers or sims by name: the config names a class path such as
``sims.twins:SimLaser`` and the station calls ``cls.from_config(spec, context)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from labctl.interfaces.clock import Clock, WallClock

TransportKind = Literal["visa", "serial", "tcp", "zmq"]


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """Where and how to reach a real instrument.

    ``address`` examples: visa ``TCPIP::127.0.0.1::5000::SOCKET``; serial ``/dev/ttyUSB0``,
    ``socket://127.0.0.1:7000`` or ``loop://``; tcp ``127.0.0.1:7001``; zmq
    ``tcp://127.0.0.1:5555``. ``options`` holds transport-specific extras (baud rate,
    terminators, a second stream address...).
    """

    kind: TransportKind
    address: str
    timeout_s: float = 2.0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a config item came from, for error messages (file and line)."""

    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        if self.file is None:
            return "<api>"
        return self.file if self.line is None else f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """One instrument entry of a station config, validated."""

    name: str
    class_path: str
    settings: dict[str, Any] = field(default_factory=dict)
    transport: TransportSpec | None = None
    source: Source = field(default_factory=Source)


@dataclass(slots=True)
class BuildContext:
    """What the station hands every instrument factory.

    ``world`` is the simulated world object when the station has one (twins attach to
    it); real drivers ignore it. ``clock`` is the world's virtual clock or wall time.
    """

    lab: str
    node: str
    clock: Clock = field(default_factory=WallClock)
    world: Any | None = None
    config_file: str | None = None


@runtime_checkable
class FromConfig(Protocol):
    """A class the station can build from a config entry."""

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Any:
        """Build an (unconnected) instance from a validated config entry."""
        ...

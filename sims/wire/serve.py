"""Serve every twin of a simulated station behind its real device's protocol.

The model served for a twin follows its interface: Laser -> TSL-570 (TCP), polarization
controller -> EPC-400 (pty), detector -> Eos (TCP control + counts), time tagger -> ID1000
(ZMQ), optical switch -> Agiltron FF (pty), transmitter -> Swabian Pulse Streamer 8/2
(JSON-RPC over HTTP + binary upload port).

Where (the station file's free-form ``twin_serve`` section; everything optional)::

    twin_serve:
      host: 127.0.0.1                 # loopback only by default
      link_dir: /tmp/labctl-twin      # stable symlinks <link_dir>/<instrument> -> /dev/pts/N
      stream_pattern: push            # ID1000 tag stream: push (lossless) or pub
      instruments:                    # per-instrument ports (0 = any free port)
        laser: {port: 47000}
        detectors: {control_port: 47010, counts_port: 47011}
        tagger-bob: {control_port: 47022, stream_port: 47023}
        transmitter: {port: 47030, upload_port: 47031}
        pc-bob: {wire: thorlabs-mpc320}  # serve this twin as another model (see below)

Default ports (what configs/hil.yaml uses), counted per interface in config order (i):
laser 47000+i; detector control 47010+2i, counts 47011+2i; tagger control 47020+2i,
stream 47021+2i; transmitter JSON-RPC 47030+2i, binary upload 47031+2i. Pseudo-terminal
paths change on every start, so serial twins are also reachable through the symlink
``<link_dir>/<instrument>``, removed again at stop.

Choosing the model: ``wire: <model>`` in an instrument's entry serves that twin behind
another model's protocol (``sims/wire/models.py`` lists them); left out, the default model
above. Laser: ``santec-tsl570`` (default), ``keysight-n7776c`` (SCPI over TCP, same port
numbering); polarization controller: ``ozoptics-epc400`` (default), ``thorlabs-mpc320``
(APT binary protocol, pty); optical switch: ``agiltron-ff`` (default), ``dicon-mems``
(SCPI text, pty); transmitter: ``swabian-pulsestreamer`` (default), ``tektronix-awg5208``
(SCPI over TCP, ``port``); detector: ``singlequantum-eos`` (default), ``idq-id120`` (one
SCPI port per channel from ``port``); time tagger: ``idq-id1000`` (default),
``picoquant-hydraharp`` (HHLib bridge: ``control_port``, ``stream_port``). A model that
does not serve the twin's interface is a ConfigError naming
``twin_serve.instruments.<name>.wire``. ``labctl twin serve SIM --for STATION`` takes the
models from the driver classes STATION names (``models.station_models``), so a station
swaps a model by its ``class:`` (and transport) alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from labctl.interfaces.devices import (
    Laser,
    OpticalSwitch,
    PolarizationController,
    SinglePhotonDetector,
    TimeTagger,
    Transmitter,
)
from labctl.interfaces.errors import ConfigError
from sims.wire.base import WireServer
from sims.wire.eos import EosWire
from sims.wire.epc400 import Epc400Wire
from sims.wire.ffswitch import FfSwitchWire
from sims.wire.id1000 import Id1000Wire
from sims.wire.models import station_models as station_models
from sims.wire.models import wire_class
from sims.wire.pulsestreamer import PulseStreamerWire
from sims.wire.tsl570 import Tsl570Wire

DEFAULT_HOST = "127.0.0.1"
DEFAULT_LINK_DIR = Path("/tmp/labctl-twin")
LASER_BASE_PORT = 47000
DETECTOR_BASE_PORT = 47010
TAGGER_BASE_PORT = 47020
TRANSMITTER_BASE_PORT = 47030
_KEYS = {"host", "link_dir", "stream_pattern", "instruments"}
_PORT_KEYS = {"port", "control_port", "counts_port", "stream_port", "upload_port"}


@dataclass(frozen=True)
class ServeSettings:
    """The validated ``twin_serve`` section."""

    host: str = DEFAULT_HOST
    link_dir: Path | None = DEFAULT_LINK_DIR
    stream_pattern: str = "push"
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    any_port: bool = False  # True: ports not given explicitly are picked free (tests)
    wires: dict[str, str] = field(default_factory=dict)  # instrument -> model served

    @classmethod
    def from_section(cls, section: Any, *, base_dir: Path | None = None) -> ServeSettings:
        """Parse ``twin_serve`` (None = defaults); ConfigError naming the bad field."""
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise ConfigError("must be a mapping", field="twin_serve")
        for key in section:
            if key not in _KEYS:
                known = ", ".join(sorted(_KEYS))
                raise ConfigError(f"unknown key (known: {known})", field=f"twin_serve.{key}")
        host = section.get("host", DEFAULT_HOST)
        if not isinstance(host, str) or not host:
            raise ConfigError("must be a host name or address", field="twin_serve.host")
        link_dir: Path | None = DEFAULT_LINK_DIR
        if "link_dir" in section:
            raw = section["link_dir"]
            if raw is not None and not isinstance(raw, str):
                raise ConfigError("must be a folder path or null", field="twin_serve.link_dir")
            link_dir = None if raw is None else Path(raw)
            if link_dir is not None and not link_dir.is_absolute() and base_dir is not None:
                link_dir = base_dir / link_dir
        pattern = section.get("stream_pattern", "push")
        if pattern not in ("push", "pub"):
            raise ConfigError("must be push or pub", field="twin_serve.stream_pattern")
        instruments = section.get("instruments", {})
        return cls(host, link_dir, pattern, _ports(instruments), wires=_wires(instruments))

    def with_models(self, wires: Mapping[str, str], *, file: str | None = None) -> ServeSettings:
        """These settings with ``wires`` (instrument -> model, e.g. ``station_models`` of the
        station that drives the twins) added; a different model already named under
        ``twin_serve`` is a ConfigError naming both."""
        merged = dict(self.wires)
        for name, wire in wires.items():
            if merged.setdefault(name, wire) != wire:
                raise ConfigError(
                    f"twin_serve names model {merged[name]!r} but {file or 'the station'} "
                    f"drives {name!r} as {wire!r}",
                    field=f"twin_serve.instruments.{name}.wire",
                )
        return replace(self, wires=merged)


def _wires(section: Any) -> dict[str, str]:
    """``wire: <model>`` per instrument (the rest of each entry is checked by _ports)."""
    wires: dict[str, str] = {}
    for name, entry in section.items() if isinstance(section, Mapping) else ():
        if isinstance(entry, Mapping) and "wire" in entry:
            wire = entry["wire"]
            if not isinstance(wire, str) or not wire:
                raise ConfigError(
                    f"must be a model name, got {wire!r}",
                    field=f"twin_serve.instruments.{name}.wire",
                )
            wires[str(name)] = wire
    return wires


def _ports(section: Any) -> dict[str, dict[str, int]]:
    if not isinstance(section, Mapping):
        raise ConfigError("must map instrument names to ports", field="twin_serve.instruments")
    ports: dict[str, dict[str, int]] = {}
    for name, entry in section.items():
        where = f"twin_serve.instruments.{name}"
        if not isinstance(entry, Mapping):
            raise ConfigError("must be a mapping of ports", field=where)
        ports[str(name)] = {}
        for key, value in entry.items():
            if key == "wire":
                continue  # the model served: _wires
            if key not in _PORT_KEYS:
                raise ConfigError(
                    f"unknown key (known: {', '.join(sorted(_PORT_KEYS))})", field=f"{where}.{key}"
                )
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 65536:
                raise ConfigError(f"must be a port 0..65535, got {value!r}", field=f"{where}.{key}")
            ports[str(name)][str(key)] = value
    return ports


def build_servers(instruments: Mapping[str, Any], settings: ServeSettings) -> list[WireServer]:
    """One wire server per twin, ports from ``settings`` or the documented defaults."""
    servers: list[WireServer] = []
    counts = {"laser": 0, "detector": 0, "tagger": 0, "transmitter": 0}
    for name, twin in instruments.items():
        chosen = dict(settings.ports.get(name, {}))
        if settings.any_port:
            for key in _PORT_KEYS:
                chosen.setdefault(key, 0)
        link = None if settings.link_dir is None else settings.link_dir / name
        host = settings.host
        if isinstance(twin, Laser):
            port = chosen.get("port", LASER_BASE_PORT + counts["laser"])
            counts["laser"] += 1
            laser_wire = wire_class("laser", settings.wires.get(name), name, Tsl570Wire)
            servers.append(laser_wire(name, twin, host=host, port=port))
        elif isinstance(twin, Transmitter):
            base = TRANSMITTER_BASE_PORT + 2 * counts["transmitter"]
            counts["transmitter"] += 1
            tx_wire = wire_class("transmitter", settings.wires.get(name), name, PulseStreamerWire)
            if tx_wire is not PulseStreamerWire:
                servers.append(tx_wire(name, twin, host=host, port=chosen.get("port", base)))
                continue
            servers.append(
                PulseStreamerWire(
                    name,
                    twin,
                    host=host,
                    port=chosen.get("port", base),
                    binary_port=chosen.get("upload_port", base + 1),
                )
            )
        elif isinstance(twin, TimeTagger):
            base = TAGGER_BASE_PORT + 2 * counts["tagger"]
            counts["tagger"] += 1
            tagger_wire = wire_class("time_tagger", settings.wires.get(name), name, Id1000Wire)
            if tagger_wire is not Id1000Wire:
                ports = {"control_port": chosen.get("control_port", base)}
                ports["stream_port"] = chosen.get("stream_port", base + 1)
                servers.append(tagger_wire(name, twin, host=host, **ports))
                continue
            servers.append(
                Id1000Wire(
                    name,
                    twin,
                    host=host,
                    control_port=chosen.get("control_port", base),
                    stream_port=chosen.get("stream_port", base + 1),
                    stream_pattern="pub" if settings.stream_pattern == "pub" else "push",
                )
            )
        elif isinstance(twin, SinglePhotonDetector):
            base = DETECTOR_BASE_PORT + 2 * counts["detector"]
            counts["detector"] += 1
            det_wire = wire_class("detector", settings.wires.get(name), name, EosWire)
            if det_wire is not EosWire:
                servers.append(det_wire(name, twin, host=host, port=chosen.get("port", base)))
                continue
            servers.append(
                EosWire(
                    name,
                    twin,
                    host=host,
                    control_port=chosen.get("control_port", base),
                    counts_port=chosen.get("counts_port", base + 1),
                )
            )
        elif isinstance(twin, PolarizationController):
            pc_wire = wire_class(
                "polarization_controller", settings.wires.get(name), name, Epc400Wire
            )
            servers.append(pc_wire(name, twin, link=link))
        elif isinstance(twin, OpticalSwitch):
            switch_wire = wire_class("optical_switch", settings.wires.get(name), name, FfSwitchWire)
            servers.append(switch_wire(name, twin, link=link))
        else:
            raise ConfigError(
                f"{type(twin).__name__} implements none of the six interfaces; no wire "
                "protocol to serve it on",
                field=f"instruments.{name}",
            )
    return servers


class WireTwins:
    """Every wire server of one station: ``async with WireTwins(...)`` starts and stops them."""

    def __init__(self, instruments: Mapping[str, Any], settings: ServeSettings) -> None:
        self.servers = build_servers(instruments, settings)
        self._started: list[WireServer] = []

    async def start(self) -> None:
        """Start every server; on a failure stop those already started, then raise."""
        try:
            for server in self.servers:
                await server.start()
                self._started.append(server)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every started server (newest first); idempotent."""
        while self._started:
            await self._started.pop().stop()

    def endpoints(self) -> dict[str, dict[str, str]]:
        """Every server's endpoints by instrument name."""
        return {server.name: server.endpoints() for server in self.servers}

    async def __aenter__(self) -> WireTwins:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

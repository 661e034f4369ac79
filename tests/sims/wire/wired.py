"""Driver -> wire -> twin: real drivers talking to wire twins on loopback, for tests.

``wired_station(world_settings, twins)`` serves twins of one world through
``sims.wire.serve.WireTwins`` (free ports, pty symlinks in a temp folder) and yields the
connected real drivers. ``wire_factory(kind)`` is the conformance-suite factory.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.interfaces.build import BuildContext, InstrumentSpec, TransportSpec
from sims.wire.serve import ServeSettings, WireTwins
from sims.world import World

# Bob's side of sim.yaml at 1/10 of the pulse rate: a few MHz of clicks keeps every
# world slice small (fast tests) while each batch still holds hundreds of tags.
WIRE_WORLD: dict[str, Any] = {
    "seed": 21,
    "slice_max_s": 0.002,
    "source": {"rate_hz": 1.0e8},
}

TWIN_CLASSES = {
    "laser": "SimLaser",
    "polarization_controller": "SimPolarizationController",
    "detector": "SimDetector",
    "time_tagger": "SimTimeTagger",
    "optical_switch": "SimOpticalSwitch",
    "transmitter": "SimTransmitter",
}
DRIVER_CLASSES = {
    "laser": "drivers.santec.tsl570:TSL570",
    "polarization_controller": "drivers.ozoptics.epc400:EPC400",
    "detector": "drivers.singlequantum.eos:EosSNSPD",
    "time_tagger": "drivers.idq.id1000:ID1000",
    "optical_switch": "drivers.agiltron.ffswitch:FFSwitch",
    "transmitter": "drivers.swabian.pulsestreamer:PulseStreamer",
}
NAMES = {
    "laser": "laser",
    "polarization_controller": "pc-bob",
    "detector": "detectors",
    "time_tagger": "tagger-bob",
    "optical_switch": "switch",
    "transmitter": "transmitter",
}
DRIVER_SETTINGS: dict[str, dict[str, Any]] = {
    "laser": {},
    "polarization_controller": {},
    "detector": {"enabled": [True, True, True, True], "bias_ua": [12.0] * 4},
    "time_tagger": {"n_channels": 4},
    "optical_switch": {"n_ports": 4, "parking_port": 4},
    # WIRE_WORLD's source (1e8 Hz: 10 ns) and the tagger's default sync divider.
    "transmitter": {"period_ps": 10_000, "marker_divider": 1000},
}
TWIN_SETTINGS: dict[str, dict[str, Any]] = {"time_tagger": {"side": "bob"}}
# Second models (``twin_serve.instruments.<name>.wire``): wire name -> driver class path,
# and its driver settings where they differ from the kind's.
WIRE_DRIVERS: dict[str, str] = {
    "keysight-n7776c": "drivers.keysight.n7776c:N7776C",
    "thorlabs-mpc320": "drivers.thorlabs.mpc320:MPC320",
    "dicon-mems": "drivers.dicon.mems:DiconMems",
}
WIRE_DRIVER_SETTINGS: dict[str, dict[str, Any]] = {}


@dataclass
class Wired:
    """Everything of one driver -> wire -> twin setup."""

    world: World
    twins: dict[str, Any]
    drivers: dict[str, Any]
    wire: WireTwins
    link_dir: Path

    def server(self, name: str) -> Any:
        """The wire server of instrument ``name``."""
        return next(s for s in self.wire.servers if s.name == name)


def make_twin(kind: str, world: World, settings: dict[str, Any] | None = None) -> Any:
    """A twin of interface ``kind`` on ``world``, built as the station builds it."""
    import sims.twins

    class_name = TWIN_CLASSES[kind]
    spec = InstrumentSpec(
        name=NAMES[kind],
        class_path=f"sims.twins:{class_name}",
        settings={**TWIN_SETTINGS.get(kind, {}), **(settings or {})},
    )
    context = BuildContext(lab="wire", node="test", clock=world.clock, world=world)
    return getattr(sims.twins, class_name).from_config(spec, context)


def transport_for(kind: str, endpoints: dict[str, str], timeout_s: float) -> TransportSpec:
    """The transport entry a station file would hold for this wire twin."""
    if kind == "laser":
        host, port = endpoints["control"].rsplit(":", 1)
        return TransportSpec("visa", f"TCPIP::{host}::{port}::SOCKET", timeout_s)
    if kind in ("polarization_controller", "optical_switch"):
        return TransportSpec("serial", endpoints["serial"], timeout_s)
    if kind == "detector":
        options = {"counts_address": endpoints["counts"]}
        return TransportSpec("tcp", endpoints["control"], timeout_s, options)
    if kind == "transmitter":
        upload_port = int(endpoints["upload"].rsplit(":", 1)[1])
        return TransportSpec("tcp", endpoints["control"], timeout_s, {"upload_port": upload_port})
    options = {"stream_address": endpoints["stream"], "stream_pattern": "pull", "stream_hwm": 4}
    return TransportSpec("zmq", endpoints["control"], timeout_s, options)


def make_driver(
    kind: str,
    endpoints: dict[str, str],
    *,
    settings: dict[str, Any] | None = None,
    timeout_s: float = 2.0,
    wire: str | None = None,
) -> Any:
    """The real driver of ``kind`` (or of model ``wire``) built from a config entry."""
    from labctl.station.classpath import import_class

    class_path = DRIVER_CLASSES[kind] if wire is None else WIRE_DRIVERS[wire]
    default = (
        DRIVER_SETTINGS[kind]
        if wire is None
        else WIRE_DRIVER_SETTINGS.get(wire, DRIVER_SETTINGS[kind])
    )
    spec = InstrumentSpec(
        name=NAMES[kind],
        class_path=class_path,
        settings=dict(default if settings is None else settings),
        transport=transport_for(kind, endpoints, timeout_s),
    )
    cls = import_class(class_path, field=f"instruments.{spec.name}.class", source=spec.source)
    return cls.from_config(spec, BuildContext(lab="wire", node="test"))


@asynccontextmanager
async def wired_station(
    kinds: list[str],
    *,
    world_settings: dict[str, Any] | None = None,
    twin_settings: dict[str, dict[str, Any]] | None = None,
    driver_settings: dict[str, dict[str, Any]] | None = None,
    wires: dict[str, str] | None = None,
) -> AsyncIterator[Wired]:
    """Serve one twin per kind on one world; yield them with their connected drivers.

    ``wires`` maps a kind to the model its twin is served as (default: the kind's first).
    """
    wires = wires or {}
    world = World.from_settings(WIRE_WORLD if world_settings is None else world_settings)
    with tempfile.TemporaryDirectory(prefix="labctl-wire-") as tmp:
        link_dir = Path(tmp) / "links"
        twins = {NAMES[k]: make_twin(k, world, (twin_settings or {}).get(k)) for k in kinds}
        async with AsyncExitStack() as stack:
            for twin in twins.values():
                await stack.enter_async_context(twin)
            chosen_wires = {NAMES[k]: w for k, w in wires.items()}
            serve = ServeSettings(link_dir=link_dir, any_port=True, wires=chosen_wires)
            wire = WireTwins(twins, serve)
            await stack.enter_async_context(wire)
            endpoints = wire.endpoints()
            drivers = {}
            for kind in kinds:
                name = NAMES[kind]
                chosen = (driver_settings or {}).get(kind)
                driver = make_driver(kind, endpoints[name], settings=chosen, wire=wires.get(kind))
                drivers[name] = await stack.enter_async_context(driver)
            yield Wired(world, twins, drivers, wire, link_dir)


def wire_factory(
    kind: str, wire: str | None = None
) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """Conformance factory: the real driver of ``kind`` through its wire twin (laser on).

    ``wire`` serves the twin as another model (and builds that model's driver).
    """

    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        async with wired_station([kind], wires={kind: wire} if wire else None) as setup:
            setup.world.set_laser_enabled(True)
            yield setup.drivers[NAMES[kind]]

    return factory

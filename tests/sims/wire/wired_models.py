"""Driver -> wire -> twin for the transmitter, detector and tagger second models
(sims.wire.models), for tests and the conformance registry: the twin served through
``WireTwins`` with its ``wire:`` key set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from labctl.interfaces.build import BuildContext, InstrumentSpec, TransportSpec
from labctl.station.classpath import import_class
from sims.wire.serve import ServeSettings, WireTwins
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin

WIRE_NAMES = {
    "awg5208": "tektronix-awg5208",
    "id120": "idq-id120",
    "hydraharp": "picoquant-hydraharp",
}
DRIVERS = {
    "awg5208": ("transmitter", "drivers.tektronix.awg5208:AWG5208Transmitter"),
    "id120": ("detector", "drivers.idq.id120:ID120Array"),
    "hydraharp": ("time_tagger", "drivers.picoquant.hydraharp:HydraHarp400"),
}
# WIRE_WORLD's source runs at 1e8 Hz: 10 ns pulses, 4 samples each = 400 MSa/s.
SETTINGS: dict[str, dict[str, Any]] = {
    "awg5208": {"period_ps": 10_000, "marker_divider": 1000, "samples_per_pulse": 4},
    "id120": {"enabled": [True] * 4, "bias_ua": [12.0] * 4},
    "hydraharp": {},
}


@dataclass
class WiredModel:
    """A twin served by a second model, its wire server and the connected driver."""

    world: World
    twin: Any
    server: Any
    driver: Any


@asynccontextmanager
async def wired_model(model: str) -> AsyncIterator[WiredModel]:
    """Serve the twin of ``model``'s interface as ``model``; yield the connected driver."""
    kind, class_path = DRIVERS[model]
    world = World.from_settings(WIRE_WORLD)
    name = NAMES[kind]
    async with make_twin(kind, world) as twin:
        settings = ServeSettings(link_dir=None, any_port=True, wires={name: WIRE_NAMES[model]})
        async with WireTwins({name: twin}, settings) as wire:
            endpoints = wire.endpoints()[name]
            others = [endpoints[k] for k in sorted(endpoints) if k.startswith("channel")][1:]
            options: dict[str, Any] = {"channel_addresses": others} if others else {}
            if "stream" in endpoints:
                options = {"stream_address": endpoints["stream"]}
            spec = InstrumentSpec(
                name=name,
                class_path=class_path,
                settings=dict(SETTINGS[model]),
                transport=TransportSpec("tcp", endpoints["control"], 2.0, options),
            )
            cls = import_class(class_path, field=f"instruments.{name}.class", source=spec.source)
            async with cls.from_config(spec, BuildContext(lab="wire", node="test")) as driver:
                yield WiredModel(world, twin, wire.servers[0], driver)


def model_factory(model: str) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """Conformance factory: the real driver of ``model`` through its wire twin (laser on)."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        async with wired_model(model) as setup:
            setup.world.set_laser_enabled(True)
            yield setup.driver

    return factory

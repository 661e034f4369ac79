"""The registry the conformance suite runs against: per interface, named factories.

A factory is a zero-argument callable returning an async context manager that yields a
*connected* instrument and releases everything on exit. To put another implementation
through the suite (e.g. "driver -> wire -> twin"), append one ``Implementation`` to the
interface's list below; every conformance test then runs against it too.

Requirements on an implementation's factory:
* the instrument's ``name`` is a non-empty string;
* a time tagger must see light (or dark counts) so that some batches hold tags.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from labctl.interfaces.build import BuildContext, InstrumentSpec

Factory = Callable[[], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Implementation:
    """One implementation under test: a name for test ids and a factory."""

    name: str
    factory: Factory


# A small, fast world: 1 km of fiber, short slices; the same physics as the default.
_TWIN_WORLD_SETTINGS: dict[str, Any] = {
    "seed": 11,
    "slice_max_s": 0.001,
    "fiber": {"length_km": 1.0},
}


def twin_factory(class_name: str, name: str, settings: dict[str, Any] | None = None) -> Factory:
    """A factory building ``sims.twins:<class_name>`` on a fresh world with the laser on."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        import sims.twins
        from sims.world import World

        world = World.from_settings(_TWIN_WORLD_SETTINGS)
        world.set_laser_enabled(True)
        cls = getattr(sims.twins, class_name)
        spec = InstrumentSpec(
            name=name, class_path=f"sims.twins:{class_name}", settings=dict(settings or {})
        )
        context = BuildContext(lab="conformance", node="twin", clock=world.clock, world=world)
        instrument = cls.from_config(spec, context)
        async with instrument:
            yield instrument

    return factory


LASERS: list[Implementation] = [
    Implementation("twin", twin_factory("SimLaser", "laser")),
]
POLARIZATION_CONTROLLERS: list[Implementation] = [
    Implementation("twin", twin_factory("SimPolarizationController", "pc-bob")),
]
DETECTORS: list[Implementation] = [
    Implementation("twin", twin_factory("SimDetector", "detectors")),
]
TIME_TAGGERS: list[Implementation] = [
    Implementation("twin-bob", twin_factory("SimTimeTagger", "tagger-bob", {"side": "bob"})),
    Implementation("twin-alice", twin_factory("SimTimeTagger", "tagger-alice", {"side": "alice"})),
]


def replay_factory() -> Factory:
    """A ReplayTimeTagger over a PTU file of random tags (10 ms, looped), in a temp folder."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[Any]:
        import tempfile
        from pathlib import Path

        import numpy as np

        from labctl.formats.ptu import write_ptu
        from labctl.interfaces.tags import TagBatch
        from sims.twins.replay import ReplayTimeTagger

        rng = np.random.default_rng(13)
        time_ps = np.sort(rng.integers(0, 10**10, 20_000)).astype(np.int64)
        channel = rng.integers(0, 4, time_ps.size).astype(np.uint8)
        with tempfile.TemporaryDirectory(prefix="labctl-replay-") as tmp:
            path = Path(tmp) / "recorded.ptu"
            write_ptu(path, [TagBatch(channel, time_ps, 0, 10**10)], n_channels=4, resolution_ps=1)
            async with ReplayTimeTagger("tagger-replay", path, loop=True) as tagger:
                yield tagger

    return factory


TIME_TAGGERS.append(Implementation("replay", replay_factory()))

OPTICAL_SWITCHES: list[Implementation] = [
    Implementation("twin", twin_factory("SimOpticalSwitch", "switch")),
]

TRANSMITTERS: list[Implementation] = [
    Implementation("twin", twin_factory("SimTransmitter", "transmitter")),
]

REGISTRY: dict[str, list[Implementation]] = {
    "laser": LASERS,
    "polarization_controller": POLARIZATION_CONTROLLERS,
    "detector": DETECTORS,
    "time_tagger": TIME_TAGGERS,
    "optical_switch": OPTICAL_SWITCHES,
    "transmitter": TRANSMITTERS,
}

# -- driver -> wire -> twin (sims/wire): the real drivers over loopback against wire twins.
# Helper in tests/sims/wire/wired.py (real driver against its wire twin).
from tests.sims.wire.wired import wire_factory  # noqa: E402

for _interface, _impls in REGISTRY.items():
    _impls.append(Implementation("driver-wire-twin", wire_factory(_interface)))

# Second models: the same twins served as another device, through that device's driver.
LASERS.append(Implementation("keysight-n7776c", wire_factory("laser", "keysight-n7776c")))
POLARIZATION_CONTROLLERS.append(
    Implementation("thorlabs-mpc320", wire_factory("polarization_controller", "thorlabs-mpc320"))
)
OPTICAL_SWITCHES.append(Implementation("dicon-mems", wire_factory("optical_switch", "dicon-mems")))

# -- second wire models (sims.wire.models): driver -> wire -> twin with ``wire:`` set.
from tests.sims.wire.wired_models import model_factory  # noqa: E402

TRANSMITTERS.append(Implementation("awg5208-wire-twin", model_factory("awg5208")))
DETECTORS.append(Implementation("id120-wire-twin", model_factory("id120")))
TIME_TAGGERS.append(Implementation("hydraharp-wire-twin", model_factory("hydraharp")))

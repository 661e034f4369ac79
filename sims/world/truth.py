"""Ground truth of the world, kept apart so that plans cannot read it by accident.

Tests and calibration checks compare what a plan measured with these numbers; a plan that
reads them is cheating.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from labctl.interfaces.clock import Clock
from sims.world.detectors import DetectorBank
from sims.world.optics import OpticalPath
from sims.world.settings import WorldSettings
from sims.world.tagger import TaggerModel


class WorldParts(Protocol):
    """What the truth is read from: the world's parts (the World itself, in practice)."""

    @property
    def settings(self) -> WorldSettings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def optics(self) -> OpticalPath: ...
    @property
    def detectors(self) -> DetectorBank: ...
    @property
    def taggers(self) -> Mapping[str, TaggerModel]: ...
    @property
    def period_ps(self) -> int: ...


@dataclass(frozen=True, slots=True)
class WorldTruth:
    """A frozen snapshot of the hidden parameters of the world."""

    period_ps: int
    fiber_delay_ps: int
    detector_delay_ps: tuple[int, ...]
    detector_efficiency: tuple[float, ...]
    dark_count_rate_hz: tuple[float, ...]
    transmittance: float
    alice_offset_ps: int
    alice_frequency_offset_ppm: float
    bob_offset_ps: int
    bob_frequency_offset_ppm: float
    fiber_rotation: tuple[tuple[float, ...], ...]
    pc_rotation: tuple[tuple[float, ...], ...]
    eve_fraction: float
    blinding: bool

    @classmethod
    def of(cls, world: WorldParts) -> WorldTruth:
        """Read the truth off a world."""
        optics, states = world.optics, world.detectors.states
        alice, bob = world.taggers["alice"], world.taggers["bob"]
        return cls(
            period_ps=world.period_ps,
            fiber_delay_ps=optics.fiber_delay_ps,
            detector_delay_ps=tuple(s.settings.delay_ps for s in states),
            detector_efficiency=tuple(s.efficiency for s in states),
            dark_count_rate_hz=tuple(s.dark_rate_hz for s in states),
            transmittance=optics.transmittance,
            alice_offset_ps=alice.offset_ps,
            alice_frequency_offset_ppm=alice.frequency_offset_ppm,
            bob_offset_ps=bob.offset_ps,
            bob_frequency_offset_ppm=bob.frequency_offset_ppm,
            fiber_rotation=tuple(tuple(float(x) for x in row) for row in optics.fiber.matrix),
            pc_rotation=tuple(tuple(float(x) for x in row) for row in optics.controller.matrix),
            eve_fraction=optics.eve_fraction,
            blinding=optics.blinding,
        )


def snapshot_of(world: WorldParts) -> dict[str, Any]:
    """Current settings and live state as JSON-able values (no hidden truth)."""
    optics = world.optics
    return {
        "settings": _plain(dataclasses.asdict(world.settings)),
        "time_s": world.clock.now_s(),
        "laser": {
            "enabled": optics.source.enabled,
            "power_mw": optics.source.power_mw,
            "wavelength_nm": optics.source.wavelength_nm,
        },
        "switch_port": optics.switch.port,
        "pc_voltages_mv": list(optics.controller.voltages_mv),
        "detectors": [
            {"enabled": s.enabled, "latched": s.latched, "efficiency": s.efficiency}
            for s in world.detectors.states
        ],
        "taggers": {
            side: {
                "streaming": t.streaming,
                "channel_delays_ps": list(t.channel_delays_ps),
                "max_rate_hz": t.max_rate_hz,
            }
            for side, t in world.taggers.items()
        },
        "eve": {"fraction": optics.eve_fraction, "blinding": optics.blinding},
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

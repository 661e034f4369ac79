"""What each twin needs of the simulated world: one small Protocol per twin.

A twin is a thin adapter: it validates a call as its device would and hands it to the world
through exactly these methods. ``sims.world.World`` implements all of them (checked by mypy
below); a test may give a twin any object that has the few methods its Protocol lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from labctl.interfaces.pattern import PulsePattern
from labctl.interfaces.tags import TagBatch
from sims.clock import VirtualClock
from sims.faults import FaultWorld
from sims.world.settings import WorldSettings


class TwinWorld(FaultWorld, Protocol):
    """What every twin reads: the clock it waits on, the settings it validates against,
    and the world faults its fault schedule applies."""

    clock: VirtualClock
    settings: WorldSettings

    def snapshot(self) -> dict[str, Any]:
        """The world's state, JSON-able (the twins read their own part at start)."""
        ...


class LaserWorld(TwinWorld, Protocol):
    def set_laser_enabled(self, enabled: bool) -> None: ...
    def set_laser_power_mw(self, power_mw: float) -> None: ...
    def set_wavelength_nm(self, wavelength_nm: float) -> None: ...


class DetectorWorld(TwinWorld, Protocol):
    def set_detector_enabled(self, detector: int, enabled: bool) -> None: ...
    def detector_count_rates_hz(self, integration_s: float) -> list[float]: ...
    def detector_light_power_w(self) -> list[float]: ...
    def is_latched(self, detector: int) -> bool: ...
    def reset_latch(self, detector: int) -> None: ...


class PolarizationWorld(TwinWorld, Protocol):
    def set_pc_voltages_mv(self, voltages_mv: Sequence[float]) -> None: ...
    def pc_voltages_mv(self) -> list[float]: ...


class SwitchWorld(TwinWorld, Protocol):
    def set_switch_port(self, port: int) -> None: ...
    def switch_port(self) -> int: ...


class TaggerWorld(TwinWorld, Protocol):
    def start_stream(self, side: str) -> None: ...
    def stop_stream(self, side: str) -> None: ...
    def read_batch(self, side: str) -> TagBatch: ...
    def tagger_count_rates_hz(self, side: str, integration_s: float) -> list[float]: ...
    def set_tagger_channel_delay_ps(self, side: str, channel: int, delay_ps: int) -> None: ...
    def tagger_channel_delay_ps(self, side: str, channel: int) -> int: ...


class TransmitterWorld(TwinWorld, Protocol):
    period_ps: int

    def attach_transmitter(self) -> None: ...
    def transmitter_load(self, pattern: PulsePattern, repeat: bool) -> None: ...
    def transmitter_append(self, pattern: PulsePattern) -> None: ...
    def transmitter_start(self) -> int: ...
    def transmitter_stop(self) -> None: ...
    def transmitter_running(self) -> bool: ...


if TYPE_CHECKING:
    from sims.world.world import World

    def _the_world_serves_every_twin(world: World) -> None:
        worlds: tuple[
            LaserWorld,
            DetectorWorld,
            PolarizationWorld,
            SwitchWorld,
            TaggerWorld,
            TransmitterWorld,
        ] = (world, world, world, world, world, world)
        faults: FaultWorld = world
        del worlds, faults

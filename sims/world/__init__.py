"""The simulated optical world shared by every twin (see sims/world/API.md)."""

from sims.world.settings import DETECTOR_NAMES, WorldSettings, parse_world_settings
from sims.world.source import PulsePattern
from sims.world.truth import WorldTruth
from sims.world.world import SIDES, World

__all__ = [
    "DETECTOR_NAMES",
    "SIDES",
    "PulsePattern",
    "World",
    "WorldSettings",
    "WorldTruth",
    "parse_world_settings",
]

"""A simulated link for sync tests: a world, Alice's laser and Bob's tagger as twins."""

from __future__ import annotations

from typing import Any

import numpy as np

from sims.twins import SimLaser, SimTimeTagger
from sims.world import World


async def link(settings: dict[str, Any]) -> tuple[World, SimLaser, SimTimeTagger]:
    """A world from ``settings`` with the laser on and Bob's tagger connected."""
    world = World.from_settings(settings)
    laser = SimLaser("laser", world)
    tagger = SimTimeTagger("tagger-bob", world, side="bob")
    await laser.connect()
    await tagger.connect()
    await laser.set_output(True)
    return world, laser, tagger


def true_bob_time_ps(world: World, index: np.ndarray) -> np.ndarray:
    """Bob-clock arrival of Alice's pulses without jitter (tests only: reads world.truth)."""
    truth = world.truth
    true_ps = index * truth.period_ps + truth.fiber_delay_ps
    stretch = np.rint(true_ps * truth.bob_frequency_offset_ppm * 1e-6)
    tagger = world.settings.bob_tagger
    wander = tagger.wander_amplitude_ps * np.sin(
        2.0 * np.pi * true_ps * 1e-12 / tagger.wander_period_s
    )
    return (true_ps + truth.bob_offset_ps + stretch + np.rint(wander)).astype(np.float64)

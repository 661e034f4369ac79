"""warm_up() compiles on a scratch copy: the world's own clock and tags are untouched."""

from __future__ import annotations

import numpy as np

from sims.world import World


def _first_bob_batch(world: World) -> tuple[np.ndarray, np.ndarray]:
    world.start_stream("bob")
    batch = world.read_batch("bob")
    return batch.time_ps, batch.channel


def test_warm_up_leaves_time_and_tags_as_they_were() -> None:
    cold = World.from_settings({"seed": 11})
    warmed = World.from_settings({"seed": 11})
    warmed.warm_up()
    assert warmed.clock.now_s() == 0.0
    times_cold, channels_cold = _first_bob_batch(cold)
    times_warm, channels_warm = _first_bob_batch(warmed)
    assert np.array_equal(times_cold, times_warm)
    assert np.array_equal(channels_cold, channels_warm)

"""The tracker keeps the lock through clock wander and flags lost light."""

from __future__ import annotations

import numpy as np

from experiments.sync.acquire import acquire_sync
from experiments.sync.settings import SyncSettings
from experiments.sync.tracker import SyncTracker
from tests.experiments.sync.sync_helpers import link, true_bob_time_ps, world_alice

SEED = 3  # the marker frame's public states: fixed, so the test is repeatable
SETTINGS = SyncSettings(marker_seed=SEED)


async def test_tracker_follows_wander_and_detects_lost_light() -> None:
    world, laser, tagger = await link(
        {
            "seed": 5,
            "fiber": {"length_km": 100.0},
            "taggers": {
                "bob": {
                    "offset_ps": 123_456_789,
                    "frequency_offset_ppm": 3.0,
                    "wander_amplitude_ps": 150.0,
                    "wander_period_s": 2.0,
                }
            },
        }
    )
    result = await acquire_sync(tagger, await world_alice(world), world.clock, SETTINGS)
    tracker = SyncTracker(result)
    errors = []
    while world.clock.now_s() < 2.0:
        batch = await tagger.read_batch(5.0)
        tracked = tracker.update(batch)
        assert tracked.locked
        index = tracked.pulse_index[tracked.in_gate]
        errors.append(np.abs(tracked.residual_ps[tracked.in_gate]).mean())
        # The tags' pulse indices are the true ones: residuals against truth stay in the jitter.
        truth_resid = batch.time_ps[tracked.in_gate] - true_bob_time_ps(world, index)
        assert np.abs(np.median(truth_resid)) < 20.0
    assert len(errors) > 10
    await laser.set_output(False)
    states = [tracker.update(await tagger.read_batch(5.0)).locked for _ in range(6)]
    assert states[-1] is False

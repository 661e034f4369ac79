"""Synchronization recovers the configured clock offset, drift and pulse index from tags."""

from __future__ import annotations

import numpy as np
import pytest
from sync_helpers import link, true_bob_time_ps, world_alice

from experiments.sync.acquire import acquire_sync
from experiments.sync.model import SyncError
from experiments.sync.settings import SyncSettings


@pytest.mark.parametrize(
    ("distance_km", "offset_ps", "ppm"),
    [(50.0, 734_567_891_234, -13.7), (200.0, -912_345_678_901, 19.5)],
)
async def test_sync_recovers_offset_drift_and_index(
    distance_km: float, offset_ps: int, ppm: float
) -> None:
    # 200 km of 0.2 dB/km fiber is 40 dB; darks, afterpulses and dead time as in a real SNSPD.
    world, _laser, tagger = await link(
        {
            "seed": 11,
            "fiber": {"length_km": distance_km, "initial_rotation_rad": [0.4, -1.1, 0.6]},
            "detectors": {
                "dark_count_rate_hz": 800.0,
                "afterpulse_probability": 0.05,
                "dead_time_ns": 60.0,
            },
            "taggers": {"bob": {"offset_ps": offset_ps, "frequency_offset_ppm": ppm}},
        }
    )
    result = await acquire_sync(tagger, await world_alice(world), world.clock, SyncSettings())
    truth = world.truth
    assert abs(result.drift_ppb - ppm * 1e3) < 0.1  # within 0.1 ppb
    n = np.arange(result.n_ref, result.n_ref + 10**9, 10**7)  # one second of pulses
    error = result.bob_time_ps(n) - true_bob_time_ps(world, n)
    assert float(np.sqrt(np.mean(error**2))) < 10.0  # ps, on top of the detector jitter
    # Fresh tags map onto the pulses that caused them.
    batch = await tagger.read_batch(5.0)
    index, residual = result.assign(batch.channel, batch.time_ps)
    expected = true_bob_time_ps(world, index)
    assert np.median(np.abs(batch.time_ps - expected)) < 30.0
    assert np.mean(np.abs(residual) < 60.0) > 0.8
    assert truth.bob_offset_ps == offset_ps


async def test_sync_without_light_fails_with_reason() -> None:
    world, laser, tagger = await link({"seed": 3})
    await laser.set_output(False)
    with pytest.raises(SyncError, match="no light"):
        await acquire_sync(
            tagger, await world_alice(world), world.clock, SyncSettings(max_acquire_s=0.2)
        )

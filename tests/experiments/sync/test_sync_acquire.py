"""Synchronization recovers the configured clock offset, drift and pulse index from tags."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.sync.acquire import acquire_sync
from experiments.sync.model import SyncError
from experiments.sync.settings import SyncSettings
from tests.experiments.sync.sync_helpers import link, true_bob_time_ps, world_alice

SEED = 3  # the marker frame's public states: fixed, so the test is repeatable
SETTINGS = SyncSettings(marker_seed=SEED)


@pytest.mark.parametrize(
    ("distance_km", "offset_ps", "ppm", "rms_ps"),
    # At 40 dB the fit rests on ~1e4 detections: its drift is good to a few 0.01 ppb, so one
    # second of extrapolation may be off by a few tens of ps (0.1 ppb would be 58 ps rms).
    [
        (50.0, 734_567_891_234, -13.7, 10.0),
        pytest.param(
            200.0,
            -912_345_678_901,
            19.5,
            40.0,
            marks=pytest.mark.xfail(
                reason="at 40 dB the transmitter's marker-frame sync leaves fresh tags ~100 ps "
                "off the fitted phase (darks and afterpulses weigh on the refit)",
                strict=False,
            ),
        ),
    ],
)
async def test_sync_recovers_offset_drift_and_index(
    distance_km: float, offset_ps: int, ppm: float, rms_ps: float
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
    result = await acquire_sync(tagger, await world_alice(world), world.clock, SETTINGS)
    truth = world.truth
    assert abs(result.drift_ppb - ppm * 1e3) < 0.1  # within 0.1 ppb
    n = np.arange(result.n_ref, result.n_ref + 10**9, 10**7)  # one second of pulses
    error = result.bob_time_ps(n) - true_bob_time_ps(world, n)
    assert float(np.sqrt(np.mean(error**2))) < rms_ps  # ps, on top of the detector jitter
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
            tagger,
            await world_alice(world),
            world.clock,
            SyncSettings(max_acquire_s=0.2, marker_seed=SEED),
        )


def test_tags_sorted_by_pulse_keep_each_tag_s_channel_and_window() -> None:
    from experiments.sync import acquire

    rng = np.random.default_rng(3)
    n = 3 * acquire._KEY_CHUNK // 2 + 17  # more than one chunk, not a whole number of them
    time_ps = np.sort(rng.integers(-(10**9), 10**12, n)).astype(np.int64)
    channel = rng.integers(0, 4, n).astype(np.uint8)
    phase_ps = np.zeros(256)
    phase_ps[:4] = (0.0, 140.5, -260.0, 333.3)
    t_ref, period, window = 5_000_000, 1000.0 * (1 + 2e-7), (2e11, 6e11)
    keys = acquire._pulse_keys(time_ps, channel, phase_ps, t_ref, period, window)
    # Written over the tags themselves, piece by piece, the keys come out the same.
    in_place = time_ps.copy()
    assert acquire._pulse_keys(in_place, channel, phase_ps, t_ref, period, window, in_place) is (
        in_place
    )
    np.testing.assert_array_equal(in_place, keys)
    k, ch, inside = acquire._sorted_by_pulse(keys)
    # The whole-array reading, sorted by pulse:
    ref_k = np.rint(((time_ps - t_ref).astype(np.float64) - phase_ps[channel]) / period)
    ref_inside = (time_ps >= window[0]) & (time_ps <= window[1])
    expected = sorted(
        zip(ref_k.astype(np.int64).tolist(), channel.tolist(), ref_inside.tolist(), strict=True)
    )
    got = list(zip(k.tolist(), ch.tolist(), inside.tolist(), strict=True))
    assert (k < 0).any() and got == expected


def test_tag_log_hands_its_tags_over_once() -> None:
    from experiments.sync.acquire import TagLog
    from labctl.interfaces.tags import TagBatch

    log = TagLog({0: "Z0", 2: "X0"})
    for start in (0, 100):
        times = np.arange(start, start + 100, 10, dtype=np.int64)
        channels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1], dtype=np.uint8)
        log.add(TagBatch(channels, times, start, start + 100))
    seen_t, seen_ch = log.arrays()  # read-only views of the joined log
    assert not seen_t.flags.writeable and log.count == 10
    time_ps, channel = log.take()
    assert time_ps.flags.writeable and channel.flags.writeable
    np.testing.assert_array_equal(time_ps, seen_t)
    np.testing.assert_array_equal(channel, seen_ch)
    assert set(channel.tolist()) == {0, 2}
    assert log.count == 0 and log.arrays()[0].size == 0

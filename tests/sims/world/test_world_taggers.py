"""Time taggers: exact clock offset and frequency offset, resolution, delays, overflow."""

from __future__ import annotations

import numpy as np

from sims.world import DETECTOR_NAMES, World
from tests.sims.world.world_helpers import collect, quiet_world

OFFSET_PS = 123_456_789
PPM = 37.5
DETECTOR_DELAYS = (0, 150, 300, 450)
CHANNEL_DELAYS = (10, 20, 30, 40)


def _expected_tag(true_ps: np.ndarray, channel: np.ndarray, resolution: int = 1) -> np.ndarray:
    raw = (
        true_ps
        + OFFSET_PS
        + np.rint(true_ps * (PPM * 1e-6)).astype(np.int64)
        + np.asarray(CHANNEL_DELAYS)[channel]
    )
    result: np.ndarray = (raw // resolution) * resolution
    return result


def _clock_world(resolution_ps: int = 1) -> World:
    overrides = {
        name: {"delay_ps": d} for name, d in zip(DETECTOR_NAMES, DETECTOR_DELAYS, strict=True)
    }
    return quiet_world(
        fiber={"length_km": 1.0},
        detectors={"overrides": overrides},
        taggers={
            "bob": {
                "offset_ps": OFFSET_PS,
                "frequency_offset_ppm": PPM,
                "resolution_ps": resolution_ps,
                "channel_delays_ps": list(CHANNEL_DELAYS),
            }
        },
    )


def test_bob_tags_carry_exactly_the_offset_and_frequency_offset() -> None:
    world = _clock_world()
    channel, tag_ps, _, _ = collect(world, "bob", 0.05)
    truth = world.truth
    assert truth.bob_offset_ps == OFFSET_PS and truth.bob_frequency_offset_ppm == PPM
    # Invert the clock to find each tag's pulse, then demand the forward map hit it exactly.
    # 37.5 ppm over 50 ms is 1.9 us = 190 pulse periods: a wrong slope could not land on it.
    approx_true = (tag_ps - OFFSET_PS - np.asarray(CHANNEL_DELAYS)[channel]) / (1 + PPM * 1e-6)
    det_delay = np.asarray(DETECTOR_DELAYS)[channel]
    pulse = np.rint((approx_true - truth.fiber_delay_ps - det_delay) / world.period_ps)
    true_ps = pulse.astype(np.int64) * world.period_ps + truth.fiber_delay_ps + det_delay
    np.testing.assert_array_equal(tag_ps, _expected_tag(true_ps, channel))
    assert tag_ps[-1] - tag_ps[0] > 0.04e12


def test_resolution_bins_every_tag() -> None:
    world = _clock_world(resolution_ps=100)
    channel, tag_ps, _, _ = collect(world, "bob", 0.002)
    assert np.all(tag_ps % 100 == 0)
    truth = world.truth
    det_delay = np.asarray(DETECTOR_DELAYS)[channel]
    approx_true = (tag_ps - OFFSET_PS - np.asarray(CHANNEL_DELAYS)[channel]) / (1 + PPM * 1e-6)
    pulse = np.rint((approx_true - truth.fiber_delay_ps - det_delay) / world.period_ps)
    true_ps = pulse.astype(np.int64) * world.period_ps + truth.fiber_delay_ps + det_delay
    np.testing.assert_array_equal(tag_ps, _expected_tag(true_ps, channel, resolution=100))


def test_channel_delay_shifts_only_that_channel() -> None:
    world = quiet_world()
    world.set_tagger_channel_delay_ps("bob", 2, 777)
    assert world.tagger_channel_delay_ps("bob", 2) == 777
    channel, tag_ps, _, _ = collect(world, "bob", 0.001)
    residue = tag_ps % world.period_ps
    assert np.all(residue[channel == 2] == 777)
    assert np.all(residue[channel != 2] == 0)


def test_alice_records_her_sync_clock_with_her_offsets() -> None:
    world = quiet_world(
        taggers={"alice": {"offset_ps": -5000, "frequency_offset_ppm": -2.0, "sync_divider": 100}}
    )
    channel, tag_ps, _, _ = collect(world, "alice", 0.001)
    assert np.all(channel == 0)
    sync_period = 100 * world.period_ps
    true_ps = np.arange(tag_ps.size, dtype=np.int64) * sync_period
    expected = true_ps - 5000 + np.rint(true_ps * -2e-6).astype(np.int64)
    np.testing.assert_array_equal(tag_ps, expected)


def test_batches_tile_the_tagger_timeline() -> None:
    world = quiet_world(detectors={"jitter_fwhm_ps": 50.0, "dark_count_rate_hz": 1e5})
    world.start_stream("bob")
    previous_stop = None
    for _ in range(30):
        batch = world.read_batch("bob")
        if previous_stop is not None:
            assert batch.start_ps == previous_stop
        assert np.all(np.diff(batch.time_ps) >= 0)
        if len(batch):
            assert batch.start_ps <= batch.time_ps[0] and batch.time_ps[-1] < batch.stop_ps
        assert not batch.overflow
        previous_stop = batch.stop_ps


def test_rate_above_the_maximum_overflows_with_a_count_of_missed_tags() -> None:
    world = quiet_world()
    expected_rate = sum(quiet_world().detector_count_rates_hz(0.002))
    world.set_tagger_max_rate_hz("bob", 1.0e6)  # 1000 tags per ms block
    world.start_stream("bob")
    kept = missed = 0
    times = []
    first_start = None
    while world.clock.now_s() < 0.005:
        batch = world.read_batch("bob")
        first_start = batch.start_ps if first_start is None else first_start
        assert batch.overflow == (batch.missed_events > 0)
        kept += len(batch)
        missed += batch.missed_events
        times.append(batch.time_ps)
    blocks = np.bincount(np.concatenate(times) // 1_000_000_000)
    assert blocks.max() == 1000  # never more than the limit per block
    assert missed > 0
    assert first_start is not None
    duration_s = (batch.stop_ps - first_start) * 1e-12
    assert abs((kept + missed) / duration_s - expected_rate) < 0.05 * expected_rate


def test_forced_overflow_drops_everything_for_its_duration() -> None:
    world = quiet_world(slice_max_s=0.0005)
    world.start_stream("bob")
    world.read_batch("bob")
    start_s = world.clock.now_s()
    world.force_tagger_overflow("bob", 0.002)
    dropped_until_ps = round((start_s + 0.002) * 1e12)
    seen_overflow = False
    resumed = False
    while world.clock.now_s() < start_s + 0.004:
        batch = world.read_batch("bob")
        early = batch.time_ps < dropped_until_ps - 20_000
        assert not early.any()
        seen_overflow |= batch.overflow
        if batch.start_ps > dropped_until_ps:
            assert not batch.overflow and len(batch) > 0
            resumed = True
    assert seen_overflow and resumed


def test_reader_lagging_beyond_the_buffer_loses_data_and_is_told() -> None:
    world = quiet_world(taggers={"bob": {"buffer_s": 0.01}})
    world.start_stream("bob")
    first = world.read_batch("bob")
    world.clock.advance(1.0)  # the plan did something else for a second of sim time
    late = world.read_batch("bob")
    assert late.overflow
    assert late.start_ps > first.stop_ps + 0.9e12


def test_a_backlog_is_generated_as_it_is_read_and_a_change_applies_from_its_time() -> None:
    world = quiet_world(slice_max_s=0.001, detectors={"dark_count_rate_hz": 1e5})
    world.start_stream("bob")
    world.read_batch("bob")
    world.clock.advance(0.05)  # 50 ms unread: within the buffer, nothing lost
    late = world.read_batch("bob")
    # One batch of the backlog is made, not all of it (a blinded detector's second of
    # tags would be tens of millions at once).
    assert not late.overflow and late.stop_ps - late.start_ps <= 1.1e9
    assert world._cursor_ps < 0.04e12
    # A change catches up first: the rest of the backlog shows the world before it.
    changed_s = world.clock.now_s()
    world.set_detector_enabled(0, False)
    z0 = world.taggers["bob"].settings.detector_channels[0]
    before = after = 0
    while world.clock.now_s() < changed_s + 0.01:
        batch = world.read_batch("bob")
        on_z0 = int(np.count_nonzero(batch.channel == z0))
        if batch.stop_ps <= changed_s * 1e12:
            before += on_z0
        elif batch.start_ps >= changed_s * 1e12 + 1e6:
            after += on_z0
    assert before > 0 and after == 0


def test_slow_wander_follows_its_sine() -> None:
    amplitude_ps, period_s = 400.0, 0.02
    world = quiet_world(
        taggers={"bob": {"wander_amplitude_ps": amplitude_ps, "wander_period_s": period_s}},
        slice_max_s=0.0005,
    )
    _, tag_ps, _, _ = collect(world, "bob", 0.02)
    period = world.period_ps
    # Tags sit on the pulse grid shifted by the wander (less than half a period here).
    pulse = np.rint(tag_ps / period).astype(np.int64)
    true_ps = pulse * period
    expected = np.rint(amplitude_ps * np.sin(2 * np.pi * true_ps * 1e-12 / period_s))
    assert np.max(np.abs((tag_ps - true_ps) - expected)) <= 1
    assert np.ptp(tag_ps - true_ps) > 1.9 * amplitude_ps


def test_detectors_can_be_wired_to_any_tagger_inputs() -> None:
    world = quiet_world(taggers={"bob": {"n_channels": 8, "detector_channels": [7, 5, 3, 1]}})
    channel, _, _, _ = collect(world, "bob", 0.001)
    assert set(np.unique(channel).tolist()) == {1, 3, 5, 7}
    rates = world.tagger_count_rates_hz("bob", 0.001)
    assert len(rates) == 8 and rates[0] == 0.0 and rates[7] > 0.0

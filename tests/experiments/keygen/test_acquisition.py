"""Bob's detections from tags already mapped to pulses (one per pulse, sorted)."""

from __future__ import annotations

import numpy as np

from experiments.keygen.acquisition import _BlockTags, detections_from_indices

CHANNELS = (1, 2, 3, 4)  # detector codes 0..3: Z0, Z1, X0, X1 (basis << 1 | bit)


def test_one_click_per_pulse_in_order_gives_each_detector_s_basis_and_bit() -> None:
    channel = np.array([1, 4, 9, 2, 3], dtype=np.uint8)  # 9: not a detector (dropped)
    index = np.array([10, 11, 11, 12, 15], dtype=np.int64)
    found = detections_from_indices(channel, index, CHANNELS, np.random.default_rng(0))
    assert found.pulse_index.tolist() == [10, 11, 12, 15]
    assert found.basis.tolist() == [0, 1, 0, 1] and found.bit.tolist() == [0, 1, 1, 0]


def test_tags_out_of_order_are_sorted_and_agreeing_clicks_merge() -> None:
    channel = np.array([2, 1, 2, 3], dtype=np.uint8)
    index = np.array([7, 3, 7, 5], dtype=np.int64)
    found = detections_from_indices(channel, index, CHANNELS, np.random.default_rng(0))
    assert found.pulse_index.tolist() == [3, 5, 7]
    assert found.basis.tolist() == [0, 1, 0] and found.bit.tolist() == [0, 0, 1]


def test_disagreeing_clicks_on_one_pulse_get_a_random_basis_and_bit() -> None:
    n = 4000
    channel = np.tile(np.array([1, 4], dtype=np.uint8), n)  # Z0 and X1 on every pulse
    index = np.repeat(np.arange(n, dtype=np.int64), 2)
    found = detections_from_indices(channel, index, CHANNELS, np.random.default_rng(1))
    assert found.pulse_index.tolist() == list(range(n))
    # Fair coins: 4000 draws stay within 5 standard deviations (sd = 0.0079) of 1/2.
    assert abs(float(found.basis.mean()) - 0.5) < 0.04
    assert abs(float(found.bit.mean()) - 0.5) < 0.04


def test_the_caller_s_indices_stay_unless_given_away() -> None:
    channel = np.array([1, 1, 2, 3], dtype=np.uint8)
    index = np.array([4, 4, 6, 8], dtype=np.int64)
    kept = detections_from_indices(channel, index, CHANNELS, np.random.default_rng(0))
    assert index.tolist() == [4, 4, 6, 8] and kept.pulse_index.tolist() == [4, 6, 8]
    given = detections_from_indices(
        channel, index, CHANNELS, np.random.default_rng(0), overwrite=True
    )
    assert given.pulse_index.tolist() == [4, 6, 8]
    assert np.shares_memory(given.pulse_index, index)  # merged in place, no copy


def test_merging_matches_a_click_by_click_reading() -> None:
    rng = np.random.default_rng(7)
    index = np.sort(rng.integers(0, 3000, 5000)).astype(np.int64)  # many multi-click pulses
    channel = rng.choice(np.array(CHANNELS, dtype=np.uint8), index.size)
    found = detections_from_indices(channel, index, CHANNELS, np.random.default_rng(0))
    codes: dict[int, set[int]] = {}
    for i, ch in zip(index.tolist(), channel.tolist(), strict=True):
        codes.setdefault(i, set()).add(CHANNELS.index(ch))
    assert found.pulse_index.tolist() == sorted(codes)
    for k, pulse in enumerate(found.pulse_index.tolist()):
        if len(codes[pulse]) == 1:  # agreeing clicks keep their detector's basis and bit
            (code,) = codes[pulse]
            assert (int(found.basis[k]), int(found.bit[k])) == (code >> 1, code & 1)


def test_a_blocks_tags_are_kept_narrow_and_joined_absolute() -> None:
    rng = np.random.default_rng(3)
    first_pulse, span = 7_000_000_000, 3_000_000_000  # window wider than int32
    kept = _BlockTags.of(CHANNELS)
    expected_index, expected_channel = [], []
    for k, start in enumerate(range(6_000_000_000, 10_500_000_000, 500_000_000)):
        if k == 4:  # the window becomes known after four batches of 0.5e9 pulses
            kept.restrict(first_pulse, span)
        index = np.sort(rng.integers(start, start + 500_000_000, 5000))
        channel = rng.choice(np.array((1, 2, 3, 4), dtype=np.uint8), index.size)
        inside = (index >= first_pulse) & (index < first_pulse + span)
        expected_index.append(index[inside])
        expected_channel.append(channel[inside])
        frame_view = channel[:]  # a driver's batch may view its frame: it is copied
        kept.add(frame_view, index)
        channel[:] = 0
    assert all(o.dtype == np.int32 for o in kept.offsets)  # each batch's spread fits
    assert sum(o.size == 0 for o in kept.offsets) == 3  # batches outside the window
    channel, index = kept.take()
    assert index.dtype == np.int64
    assert np.array_equal(index, np.concatenate(expected_index))
    assert np.array_equal(channel, np.concatenate(expected_channel))
    assert not kept.offsets and not kept.channels and not kept.bases


def test_a_batch_wider_than_int32_keeps_its_offsets_wide() -> None:
    kept = _BlockTags.of(CHANNELS)
    index = np.array([5, 2**31 + 10, 2**32], dtype=np.int64)
    kept.add(np.ones(3, np.uint8), index)
    assert kept.offsets[0].dtype == np.int64
    kept.restrict(6, 2**33)
    assert kept.take()[1].tolist() == index[1:].tolist()


def test_other_channels_are_dropped_and_a_let_go_block_only_counts() -> None:
    kept = _BlockTags.of(CHANNELS)
    kept.add(np.array([1, 9, 2], dtype=np.uint8), np.array([10, 11, 12], dtype=np.int64))
    kept.restrict(11, 100)
    assert kept.clicks == 1  # channel 9 is no detector, pulse 10 is before the window
    kept.let_go()
    kept.add(np.array([3, 4, 9], dtype=np.uint8), np.array([20, 200, 30], dtype=np.int64))
    assert kept.clicks == 2 and not kept.offsets  # counted inside the window, not kept
    channel, index = kept.take()
    assert channel.size == 0 and index.size == 0

"""Bob's detections from tags already mapped to pulses (one per pulse, sorted)."""

from __future__ import annotations

import numpy as np

from experiments.keygen.acquisition import detections_from_indices

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


def test_int32_offsets_into_a_block_give_the_absolute_detections() -> None:
    rng = np.random.default_rng(3)
    first_pulse = 7_000_000_000  # beyond int32: only the offsets are narrow
    offset = np.sort(rng.integers(0, 50_000_000, 20_000)).astype(np.int32)
    channel = rng.choice(np.array((1, 2, 3, 4, 9), dtype=np.uint8), offset.size)
    absolute = detections_from_indices(
        channel, offset.astype(np.int64) + first_pulse, CHANNELS, np.random.default_rng(0)
    )
    relative = detections_from_indices(
        channel, offset, CHANNELS, np.random.default_rng(0), first_pulse=first_pulse
    )
    assert relative.pulse_index.dtype == np.int64
    assert np.array_equal(relative.pulse_index, absolute.pulse_index)
    assert np.array_equal(relative.basis, absolute.basis)
    assert np.array_equal(relative.bit, absolute.bit)

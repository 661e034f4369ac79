"""Alice's record of what she played: states by pulse index, bounded, released per block."""

from __future__ import annotations

import numpy as np

from experiments.sync.record import Played, PlayRecord
from labctl.interfaces.pattern import (
    NOT_SENT,
    PackedCodes,
    PulsePattern,
    seeded_pattern,
    state_codes,
)


def _codes(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.uint8)


def test_states_by_index_with_a_cycling_frame_cut_by_the_next_pattern() -> None:
    record = PlayRecord()
    record.add(Played(100, PackedCodes(np.arange(4, dtype=np.uint8)), repeat=True))
    record.add(Played(120, PackedCodes(_codes(5, 9)), repeat=False))
    got = record.codes(np.array([99, 100, 105, 119, 120, 124, 125], dtype=np.int64))
    assert list(got) == [NOT_SENT, 0, 1, 3, 9, 9, NOT_SENT]
    assert record.one_shot(120, 5) and not record.one_shot(110, 5)


def test_the_record_is_bounded_and_releases_served_blocks() -> None:
    record = PlayRecord(max_pulses=12)
    for first in (0, 10, 20):
        record.add(Played(first, PackedCodes(_codes(5, 1)), repeat=False))
    record.add(
        Played(30, PackedCodes(_codes(6, 2)), repeat=False)
    )  # 21 states held, 12 kept at most: the oldest go
    assert record.codes(np.array([0, 10], dtype=np.int64)).tolist() == [NOT_SENT, NOT_SENT]
    assert record.codes(np.array([20, 30], dtype=np.int64)).tolist() == [1, 2]
    record.release(30, 6)
    assert record.codes(np.array([30], dtype=np.int64)).tolist() == [NOT_SENT]


def test_serving_a_block_forgets_the_calibration_frames_played_before_it() -> None:
    record = PlayRecord()
    for block, first in enumerate((100, 300, 500)):
        record.add(
            Played(first - 50, PackedCodes(_codes(8, 7)), repeat=True)
        )  # the frame between blocks
        record.add(Played(first, PackedCodes(_codes(20, block)), repeat=False))  # the key block
    record.add(Played(600, PackedCodes(_codes(8, 7)), repeat=True))  # playing now
    held = record._held
    record.release(300, 20)  # block 1 served (block 0 may still be in post-processing)
    # Frames cut off before block 1 go; block 0 and the frames after block 1 stay.
    assert record._held == held - 20 - 2 * 8
    assert record.codes(np.array([60, 100, 260, 300, 460, 500, 610], dtype=np.int64)).tolist() == [
        NOT_SENT,
        0,
        NOT_SENT,
        NOT_SENT,
        7,
        2,
        7,
    ]


def test_sorted_lookup_gives_what_the_general_one_gives() -> None:
    """Sorted indices over patterns in order take one slice per pattern; shuffled indices
    and nested patterns take the general path: both answer alike."""
    rng = np.random.default_rng(7)
    for trial in range(200):
        record = PlayRecord()
        first = int(rng.integers(0, 50))
        for _ in range(int(rng.integers(1, 6))):
            n = int(rng.integers(1, 40))
            codes = rng.integers(0, 12, n).astype(np.uint8)
            record.add(Played(first, PackedCodes(codes), repeat=bool(rng.integers(0, 2))))
            # Mostly in order, now and then nested or overlapping (the general path).
            first += n + int(rng.integers(0, 10)) if trial % 4 else int(rng.integers(-20, 30))
        index = np.sort(rng.integers(0, first + 60, 300)).astype(np.int64)
        shuffled = rng.permutation(index)
        by_slice = record.codes(index)
        general = record.codes(shuffled)
        order = np.argsort(shuffled, kind="stable")
        assert np.array_equal(by_slice, general[order])


def test_packed_codes_give_back_every_code_at_half_a_byte_a_pulse() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 1000, 1001):
        codes = rng.integers(0, 16, n).astype(np.uint8)
        packed = PackedCodes(codes)
        pos = rng.permutation(n).astype(np.int64)
        assert packed.size == n and packed.nbytes == (n + 1) // 2
        assert np.array_equal(packed[pos], codes[pos])
    # Codes of more than four intensity classes do not fit a nibble: one byte each.
    wide = np.array([3, 17, 40, 0], dtype=np.uint8)
    packed = PackedCodes(wide)
    assert packed.nbytes == 4 and np.array_equal(packed[np.arange(4)], wide)


def test_packing_a_pattern_in_one_pass_gives_the_codes_of_its_states() -> None:
    rng = np.random.default_rng(5)
    for n in (1, 2, 9, 4096, 4097):
        pattern = seeded_pattern(n, [0.5, 0.3, 0.15, 0.05], 0.5, seed=n)
        assert np.array_equal(PackedCodes.of(pattern).unpacked(), state_codes(pattern))
    # A fifth intensity class does not fit a nibble: one byte a code.
    intensity = rng.integers(0, 5, 101).astype(np.uint8)
    intensity[7] = 4
    wide = PulsePattern(intensity, np.ones(101, np.uint8), np.zeros(101, np.uint8))
    packed = PackedCodes.of(wide)
    assert packed.nbytes == 101 and np.array_equal(packed.unpacked(), state_codes(wide))

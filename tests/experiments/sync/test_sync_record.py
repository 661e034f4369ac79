"""Alice's record of what she played: states by pulse index, bounded, released per block."""

from __future__ import annotations

import numpy as np

from experiments.sync.record import Played, PlayRecord
from labctl.interfaces.pattern import NOT_SENT


def _codes(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.uint8)


def test_states_by_index_with_a_cycling_frame_cut_by_the_next_pattern() -> None:
    record = PlayRecord()
    record.add(Played(100, np.arange(4, dtype=np.uint8), repeat=True))
    record.add(Played(120, _codes(5, 9), repeat=False))
    got = record.codes(np.array([99, 100, 105, 119, 120, 124, 125], dtype=np.int64))
    assert list(got) == [NOT_SENT, 0, 1, 3, 9, 9, NOT_SENT]
    assert record.one_shot(120, 5) and not record.one_shot(110, 5)


def test_the_record_is_bounded_and_releases_served_blocks() -> None:
    record = PlayRecord(max_pulses=12)
    for first in (0, 10, 20):
        record.add(Played(first, _codes(5, 1), repeat=False))
    record.add(
        Played(30, _codes(6, 2), repeat=False)
    )  # 21 states held, 12 kept at most: the oldest go
    assert record.codes(np.array([0, 10], dtype=np.int64)).tolist() == [NOT_SENT, NOT_SENT]
    assert record.codes(np.array([20, 30], dtype=np.int64)).tolist() == [1, 2]
    record.release(30, 6)
    assert record.codes(np.array([30], dtype=np.int64)).tolist() == [NOT_SENT]

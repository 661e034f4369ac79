"""The laser gaps bound the absolute pulse index."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from experiments.sync import index


def _detections_with_gaps(offset: int) -> tuple[npt.NDArray[np.int64], list[tuple[int, int]]]:
    """Bob's relative pulse numbers at density 0.05/pulse, dark where Alice's gaps fall."""
    rng = np.random.default_rng(11)
    n_pulses = 400_000
    lit = rng.random(n_pulses) < 0.05
    markers = [(100_000, 102_000), (180_000, 182_000), (300_000, 302_000)]
    for n_off, n_on in markers:
        lit[n_off:n_on] = False
    k = np.flatnonzero(lit).astype(np.int64) - offset  # n = k + offset
    return k, markers


def test_the_gaps_put_the_true_offset_among_the_candidates() -> None:
    k, markers = _detections_with_gaps(offset=12_345)
    candidates = index.gap_offset_candidates(k, markers, 0.05, 64)
    assert 12_345 in candidates.tolist()


def test_window_counts_do_not_depend_on_the_slices_they_are_made_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    k, markers = _detections_with_gaps(offset=-777)
    whole = index.gap_offset_candidates(k, markers, 0.05, 64)
    monkeypatch.setattr(index, "_WINDOW_CHUNK", 997)  # many slices, none aligned
    assert index.gap_offset_candidates(k, markers, 0.05, 64).tolist() == whole.tolist()

"""labctl.runner.heap: giving the C heap's free pages back between blocks."""

from __future__ import annotations

import sys
import time

import pytest

from labctl.runner import heap
from labctl.runner.heap import HeapTrimmer, trim_heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trim_heap_runs_on_linux() -> None:
    assert trim_heap() is True


def test_trimmer_trims_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_trim() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(heap, "trim_heap", fake_trim)
    clock = iter([100.0, 100.2, 100.49, 100.5, 101.2])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    trimmer = HeapTrimmer(min_interval_s=0.5)
    # Blocks finishing together (several workers) share one trim.
    assert [trimmer.maybe_trim() for _ in range(5)] == [True, False, False, True, True]
    assert trimmer.trims == 3 == len(calls)


def test_trimmer_counts_nothing_where_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "trim_heap", lambda: False)
    trimmer = HeapTrimmer(min_interval_s=0.0)
    assert trimmer.maybe_trim() is False and trimmer.trims == 0


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="min_interval_s must be >= 0, got -1"):
        HeapTrimmer(min_interval_s=-1.0)

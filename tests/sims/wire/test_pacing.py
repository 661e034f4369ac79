"""Served tag streams: frames gathered from consecutive batches, paced to the wall clock."""

from __future__ import annotations

import time

import numpy as np
import pytest

from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import PS_PER_MS, PS_PER_S
from sims.wire.pacing import StreamPacer


def batch(start_ms: int, stop_ms: int, times_ms: list[int], **extra: object) -> TagBatch:
    return TagBatch(
        np.arange(len(times_ms), dtype=np.uint8) % 4,
        np.asarray(times_ms, dtype=np.int64) * PS_PER_MS,
        start_ms * PS_PER_MS,
        stop_ms * PS_PER_MS,
        **extra,  # type: ignore[arg-type]
    )


def test_consecutive_batches_gather_into_one_frame() -> None:
    pacer = StreamPacer(min_frame_s=0.01)
    parts = [batch(2 * k, 2 * k + 2, [2 * k, 2 * k + 1]) for k in range(5)]
    parts[2] = batch(4, 6, [5], overflow=True, missed_events=3)
    frames = [pacer.add(p) for p in parts]
    assert frames[:4] == [None] * 4
    frame = frames[4]
    assert frame is not None
    assert (frame.start_ps, frame.stop_ps) == (0, 10 * PS_PER_MS)
    assert frame.time_ps.tolist() == np.concatenate([p.time_ps for p in parts]).tolist()
    assert frame.channel.tolist() == np.concatenate([p.channel for p in parts]).tolist()
    assert frame.overflow and frame.missed_events == 3
    assert pacer.flush() is None


def test_a_gap_sends_what_came_before_it() -> None:
    pacer = StreamPacer(min_frame_s=0.01)
    assert pacer.add(batch(0, 2, [1])) is None
    before = pacer.add(batch(5, 7, [6]))  # 2..5 ms were lost
    assert before is not None and (before.start_ps, before.stop_ps) == (0, 2 * PS_PER_MS)
    rest = pacer.flush()
    assert rest is not None and rest.time_ps.tolist() == [6 * PS_PER_MS]


def test_a_full_frame_goes_early() -> None:
    pacer = StreamPacer(min_frame_s=1.0, max_frame_tags=3)
    assert pacer.add(batch(0, 1, [0, 0])) is None
    frame = pacer.add(batch(1, 2, [1, 1]))
    assert frame is not None and len(frame) == 4


async def test_pace_keeps_stream_time_behind_the_wall_clock() -> None:
    pacer = StreamPacer()
    step_ps = 40 * PS_PER_MS
    t0 = time.monotonic()
    for k in range(6):
        await pacer.pace(k * step_ps)
    # Five steps of 40 ms of stream time cannot be served in less than 200 ms of wall time.
    assert time.monotonic() - t0 >= 0.19


async def test_a_jump_of_the_world_clock_is_not_slept_off() -> None:
    pacer = StreamPacer()
    await pacer.pace(0)
    t0 = time.monotonic()
    await pacer.pace(30 * PS_PER_S)  # another twin integrated 30 s of counts at once
    await pacer.pace(30 * PS_PER_S + PS_PER_MS)
    assert time.monotonic() - t0 < 10.0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="min_frame_s"):
        StreamPacer(min_frame_s=-1.0)

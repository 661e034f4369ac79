"""Served tag streams run in real time, in frames a real device would send.

The served world runs on a virtual clock that moves only when a tagger reads. A wire twin
that pumped its stream as fast as it could would run the world ahead of the wall clock:
every reader would pay CPU for dark time nobody waited for, and the fiber's polarization
drift would run ahead of the lab's clock (a key block spread over chunks that arrive late
would see more drift than it would in the lab). A real controller streams in real time and
sends its timestamps in buffers of some milliseconds, not one message per event.

``StreamPacer`` does both for a pump: ``pace`` sleeps while the stream's time is ahead of
the wall clock since the stream started (a jump of the world's clock is not slept off),
and ``add``/``flush`` gather consecutive batches into frames of at least ``min_frame_s``
of stream time.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import PS_PER_S

MIN_FRAME_S = 0.01
"""Stream time gathered into one frame (a real controller's buffers are milliseconds long)."""
MAX_FRAME_TAGS = 1_000_000
"""A frame is sent early once it holds this many tags (bounded memory, bounded latency)."""
MAX_LEAD_S = 1.0
"""A stream further ahead than this jumped (another twin integrated a count at once, which
moves the world's clock without waiting): pacing starts anew instead of sleeping it off."""


class StreamPacer:
    """Real-time pacing and frame gathering for one started stream."""

    def __init__(
        self, *, min_frame_s: float = MIN_FRAME_S, max_frame_tags: int = MAX_FRAME_TAGS
    ) -> None:
        if min_frame_s < 0.0 or max_frame_tags < 1:
            raise ValueError("min_frame_s must be >= 0 and max_frame_tags >= 1")
        self._min_frame_ps = round(min_frame_s * PS_PER_S)
        self._max_frame_tags = max_frame_tags
        self._origin: tuple[float, int] | None = None  # (wall s, stream ps) at the start
        self._pending: list[TagBatch] = []
        self._pending_tags = 0

    async def pace(self, stream_ps: int) -> None:
        """Wait while ``stream_ps`` (the end of the last batch read) is ahead of real time."""
        now_s = time.monotonic()
        if self._origin is None:
            self._origin = (now_s, stream_ps)
            return
        wall0_s, stream0_ps = self._origin
        lead_s = (stream_ps - stream0_ps) / PS_PER_S - (now_s - wall0_s)
        if lead_s > MAX_LEAD_S:
            self._origin = (now_s, stream_ps)
        elif lead_s > 0.0:
            await asyncio.sleep(lead_s)

    def add(self, batch: TagBatch) -> TagBatch | None:
        """Gather ``batch``; the frame to send once enough stream time (or tags) is in.

        A batch that does not follow the last one (data lost in between) sends what was
        gathered before it, so no frame spans a gap.
        """
        if self._pending and self._pending[-1].stop_ps != batch.start_ps:
            before = self.flush()
            self._pending, self._pending_tags = [batch], len(batch)
            return before
        self._pending.append(batch)
        self._pending_tags += len(batch)
        span_ps = batch.stop_ps - self._pending[0].start_ps
        if span_ps >= self._min_frame_ps or self._pending_tags >= self._max_frame_tags:
            return self.flush()
        return None

    def flush(self) -> TagBatch | None:
        """The batches gathered so far as one frame (None when there are none)."""
        pending, self._pending, self._pending_tags = self._pending, [], 0
        if not pending:
            return None
        if len(pending) == 1:
            return pending[0]
        return TagBatch(
            np.concatenate([b.channel for b in pending]),
            np.concatenate([b.time_ps for b in pending]),
            pending[0].start_ps,
            pending[-1].stop_ps,
            overflow=any(b.overflow for b in pending),
            missed_events=sum(b.missed_events for b in pending),
        )

"""Device side of the ID1000 tag stream: TagBatch -> binary frames.

Written from the frame layout documented in ``drivers/idq/tagframe.py`` (sims never import
drivers): little-endian header ``magic "IDQT", u16 version 1, u16 flags (bit 0 overflow),
u32 seq, u32 n_tags, u32 missed_events, u32 reserved, i64 start_ps, i64 stop_ps``, then
``int64[n] time_ps`` and ``uint8[n] channel``.

A batch holding more than ``max_tags`` tags is cut into several frames whose windows
tile the batch's window (each cut falls at the first tag of the next frame), so no frame
outgrows the driver's message limit.
"""

from __future__ import annotations

import struct

import numpy as np

from labctl.interfaces.tags import TagBatch

MAGIC = b"IDQT"
VERSION = 1
FLAG_OVERFLOW = 0x0001
HEADER = struct.Struct("<4sHHIIIIqq")
SEQ_MODULO = 2**32
MAX_TAGS_PER_FRAME = 65_536  # 9 bytes a tag: well below a 1 MiB message limit


class FrameEncoder:
    """Numbers frames consecutively (mod 2**32) and encodes batches into them."""

    def __init__(self, *, max_tags: int = MAX_TAGS_PER_FRAME) -> None:
        if max_tags < 1:
            raise ValueError(f"max_tags must be >= 1, got {max_tags}")
        self.max_tags = max_tags
        self.seq = 0

    def skip(self, n_frames: int = 1) -> None:
        """Leave a gap in the numbering (frames the device lost)."""
        self.seq = (self.seq + n_frames) % SEQ_MODULO

    def encode(self, batch: TagBatch) -> list[bytes]:
        """The frames carrying ``batch`` (at least one, even for an empty batch)."""
        n = len(batch)
        cuts = list(range(0, n, self.max_tags)) or [0]
        frames = []
        for i, first in enumerate(cuts):
            last = min(first + self.max_tags, n)
            start_ps = batch.start_ps if i == 0 else int(batch.time_ps[first])
            stop_ps = batch.stop_ps if last >= n else int(batch.time_ps[last])
            frames.append(
                self._frame(
                    batch.channel[first:last],
                    batch.time_ps[first:last],
                    start_ps,
                    stop_ps,
                    overflow=batch.overflow and i == 0,
                    missed_events=batch.missed_events if i == 0 else 0,
                )
            )
        return frames

    def _frame(
        self,
        channel: np.ndarray,
        time_ps: np.ndarray,
        start_ps: int,
        stop_ps: int,
        *,
        overflow: bool,
        missed_events: int,
    ) -> bytes:
        header = HEADER.pack(
            MAGIC,
            VERSION,
            FLAG_OVERFLOW if overflow else 0,
            self.seq,
            int(time_ps.shape[0]),
            min(int(missed_events), 2**32 - 1),
            0,
            start_ps,
            stop_ps,
        )
        self.seq = (self.seq + 1) % SEQ_MODULO
        times = np.ascontiguousarray(time_ps, dtype="<i8").tobytes()
        channels = np.ascontiguousarray(channel, dtype=np.uint8).tobytes()
        return b"".join((header, times, channels))

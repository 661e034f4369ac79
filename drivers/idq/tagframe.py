"""The binary time-tag frame the ID1000/ID900 driver reads from its ZMQ stream.

IDQ's own stream format is not public in full, so labctl fixes this one (documented here,
spoken by the wire twin) and decodes it with ``np.frombuffer``: no Python loop per tag.

One ZMQ message = one frame, all little-endian::

    offset size  field
    0      4     magic  b"IDQT"
    4      2     version (1)
    6      2     flags: bit 0 = the tagger overflowed in this window
    8      4     seq: frame counter, +1 per frame (mod 2**32); a gap = frames lost
    12     4     n_tags
    16     4     missed_events the tagger knows it dropped (0 when unknown)
    20     4     reserved (0)
    24     8     start_ps (int64): window start on the tagger's clock
    32     8     stop_ps  (int64): window end
    40     8*n   time_ps  (int64[n], ascending)
    40+8n  n     channel  (uint8[n], 0-based input index)

Times come before channels so the int64 array starts 8-byte aligned.
"""

from __future__ import annotations

import struct

import numpy as np

from labctl.interfaces.errors import ProtocolError
from labctl.interfaces.tags import ChannelArray, TagBatch, TimeArray

MAGIC = b"IDQT"
VERSION = 1
FLAG_OVERFLOW = 0x0001
HEADER = struct.Struct("<4sHHIIIIqq")
HEADER_BYTES = HEADER.size  # 40
BYTES_PER_TAG = 9
SEQ_MODULO = 2**32


def encode_frame(
    seq: int,
    channel: ChannelArray,
    time_ps: TimeArray,
    start_ps: int,
    stop_ps: int,
    *,
    overflow: bool = False,
    missed_events: int = 0,
) -> bytes:
    """One frame holding ``channel``/``time_ps`` (the wire twin's and benchmark's encoder)."""
    n_tags = int(time_ps.shape[0])
    if channel.shape[0] != n_tags:
        raise ValueError(
            f"channel and time_ps differ in length: {channel.shape} vs {time_ps.shape}"
        )
    header = HEADER.pack(
        MAGIC,
        VERSION,
        FLAG_OVERFLOW if overflow else 0,
        seq % SEQ_MODULO,
        n_tags,
        missed_events,
        0,
        start_ps,
        stop_ps,
    )
    times = np.ascontiguousarray(time_ps, dtype="<i8").tobytes()
    channels = np.ascontiguousarray(channel, dtype=np.uint8).tobytes()
    return b"".join((header, times, channels))


def decode_frame(frame: bytes, *, instrument: str, n_channels: int) -> tuple[int, TagBatch]:
    """``(seq, batch)`` from one frame; ProtocolError naming what is wrong with it."""
    command = "tag stream"
    if len(frame) < HEADER_BYTES:
        raise ProtocolError(
            f"frame of {len(frame)} bytes is shorter than the {HEADER_BYTES}-byte header",
            instrument=instrument,
            command=command,
        )
    magic, version, flags, seq, n_tags, missed, _, start_ps, stop_ps = HEADER.unpack_from(frame)
    if magic != MAGIC or version != VERSION:
        raise ProtocolError(
            f"not a tag frame (magic {magic!r}, version {version})",
            instrument=instrument,
            command=command,
        )
    expected = HEADER_BYTES + BYTES_PER_TAG * n_tags
    if len(frame) != expected:
        raise ProtocolError(
            f"frame says {n_tags} tags ({expected} bytes) but has {len(frame)} bytes",
            instrument=instrument,
            command=command,
        )
    if stop_ps < start_ps:
        raise ProtocolError(
            f"window ends before it starts: {start_ps}..{stop_ps}",
            instrument=instrument,
            command=command,
        )
    time_ps = np.frombuffer(frame, dtype="<i8", count=n_tags, offset=HEADER_BYTES)
    channel = np.frombuffer(frame, dtype=np.uint8, count=n_tags, offset=HEADER_BYTES + 8 * n_tags)
    if n_tags and int(channel.max()) >= n_channels:
        raise ProtocolError(
            f"channel {int(channel.max())} in a frame of a {n_channels}-channel tagger",
            instrument=instrument,
            command=command,
        )
    batch = TagBatch(
        channel=channel,
        time_ps=time_ps.astype(np.int64, copy=False),
        start_ps=start_ps,
        stop_ps=stop_ps,
        overflow=bool(flags & FLAG_OVERFLOW),
        missed_events=missed,
    )
    return seq, batch

"""Durable outbox: every QoS 1 message is appended to disk before it is published.

Layout of the outbox folder:

* ``seg-000000000001.log`` ... append-only segment files of frames
  ``<u32 body length><u32 CRC-32 of body><body>``, body = ``<u8 flags><u16 topic length>
  <topic UTF-8><payload>`` (flags: bits 0-1 QoS, bit 2 retain). A segment is closed at
  ``segment_bytes`` and deleted once every message in it has been acknowledged.
* ``cursor``: JSON ``{"segment": id, "offset": bytes}``, the position after the last
  acknowledged message, replaced atomically (write + rename).

Durability (fsync policy): ``put`` hands each frame to the kernel with one ``write`` call, so
a killed process loses nothing that ``put`` accepted. The segment is fsynced, then the
cursor rewritten, at most every ``fsync_interval_s`` (default 1 s) and on close, so a power
cut loses at most that much. A cursor older than the truth only causes re-sends, which
subscribers drop by ``(run_id, seq)``. On recovery a torn or corrupt tail of the last
segment (a crash mid-write) is cut off; a corrupt frame in an older segment ends that
segment (with a warning). Files are private: the folder is 0700, segments and cursor 0600.

Memory: the newest messages are also kept in a bounded queue so that a healthy link never
reads the disk. When the queue is full (or the broker has been away long enough to fill
it) new messages live on disk only and the sender reads them back from there, in order.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
import zlib
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_BODY_HEAD = struct.Struct("<BH")
_MAX_BODY = 64 * 1024 * 1024

Position = tuple[int, int]
"""(segment id, byte offset just after a frame)."""


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as the outbox stores it."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def encode_frame(message: Message) -> bytes:
    """Serialise a message into one length + CRC framed record."""
    topic = message.topic.encode()
    flags = (message.qos & 0x3) | (0x4 if message.retain else 0)
    body = _BODY_HEAD.pack(flags, len(topic)) + topic + message.payload
    return _HEADER.pack(len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> Message:
    flags, topic_len = _BODY_HEAD.unpack_from(body)
    start = _BODY_HEAD.size
    topic = body[start : start + topic_len].decode()
    return Message(topic, body[start + topic_len :], flags & 0x3, bool(flags & 0x4))


def _read_frame(f: BinaryIO) -> tuple[Message, int] | None:
    """Next valid frame and its size, or None at end of file or on a torn/corrupt frame."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    length, crc = _HEADER.unpack(head)
    if length < _BODY_HEAD.size or length > _MAX_BODY:
        return None
    body = f.read(length)
    if len(body) < length or zlib.crc32(body) != crc:
        return None
    try:
        return _decode_body(body), _HEADER.size + length
    except (UnicodeDecodeError, struct.error):
        return None


class Outbox:
    """Crash-safe FIFO of messages waiting for the broker's acknowledgement.

    ``put`` is synchronous and O(1) (one ``write`` syscall); a single consumer calls
    ``peek`` to get the oldest messages and ``commit`` once they are acknowledged.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        memory_capacity: int = 10_000,
        segment_bytes: int = 8 * 1024 * 1024,
        fsync_interval_s: float = 1.0,
    ) -> None:
        if memory_capacity < 0 or segment_bytes < 1024 or fsync_interval_s < 0:
            raise ValueError(
                "Outbox: memory_capacity >= 0, segment_bytes >= 1024, fsync_interval_s >= 0"
            )
        self.directory = Path(directory)
        # Private: the queue holds run data on its way to the broker (segments are 0600).
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self.memory_capacity = memory_capacity
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self._cache: deque[tuple[Message, Position]] = deque()
        self._cache_open = True
        self._reader: BinaryIO | None = None
        self._reader_seg = -1
        self._dirty = False
        self._last_sync = time.monotonic()
        self.pending = 0
        """Messages accepted and not yet acknowledged."""
        self.spilled = 0
        """Messages that did not fit the memory queue (kept on disk only)."""
        self.disk_reads = 0
        """Messages read back from disk for sending."""
        self.recovered = 0
        """Messages found on disk, unacknowledged, when the outbox was opened."""
        self._recover()

    # -- files -------------------------------------------------------------------------
    def _seg_path(self, seg: int) -> Path:
        return self.directory / f"seg-{seg:012d}.log"

    def _segments(self) -> list[int]:
        ids = []
        for p in self.directory.glob("seg-*.log"):
            try:
                ids.append(int(p.stem[4:]))
            except ValueError:
                continue
        return sorted(ids)

    def _read_cursor(self) -> Position | None:
        path = self.directory / "cursor"
        try:
            raw = json.loads(path.read_text())
            return int(raw["segment"]), int(raw["offset"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError) as exc:
            log.warning("outbox %s: unreadable cursor (%s); replaying all", self.directory, exc)
            return None

    def _write_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        seg, off = self._read_pos
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"segment": seg, "offset": off}))
        os.replace(tmp, self.directory / "cursor")

    def _scan(self, seg: int, start: int, last: bool) -> tuple[int, int]:
        """Count valid frames from ``start``; return (count, end offset of valid data)."""
        count, end = 0, start
        with open(self._seg_path(seg), "rb") as f:
            f.seek(start)
            while (frame := _read_frame(f)) is not None:
                count += 1
                end += frame[1]
            size = os.fstat(f.fileno()).st_size
        if end < size:
            if last:
                log.warning(
                    "outbox %s: cutting %d torn bytes off %s",
                    self.directory,
                    size - end,
                    self._seg_path(seg).name,
                )
                os.truncate(self._seg_path(seg), end)
            else:
                log.warning(
                    "outbox %s: corrupt frame in %s at byte %d; skipping the rest",
                    self.directory,
                    self._seg_path(seg).name,
                    end,
                )
        return count, end

    def _recover(self) -> None:
        segs = self._segments()
        cursor = self._read_cursor()
        if cursor is None:
            cursor = (segs[0], 0) if segs else (1, 0)
        for seg in segs:
            if seg < cursor[0]:
                self._seg_path(seg).unlink()
        segs = [s for s in segs if s >= cursor[0]]
        if segs and segs[0] != cursor[0]:
            cursor = (segs[0], 0)
        pending, write_end = 0, 0
        for i, seg in enumerate(segs):
            start = cursor[1] if seg == cursor[0] else 0
            last = i == len(segs) - 1
            if last:
                # The cursor may point past a tail cut off above; keep it in bounds.
                _, valid_end = self._scan(seg, 0, last=True)
                start = min(start, valid_end)
                cursor = (seg, start) if seg == cursor[0] else cursor
            count, write_end = self._scan(seg, start, last)
            pending += count
        self._read_pos: Position = cursor
        self.pending = self.recovered = pending
        self._cache_open = pending == 0
        self._write_seg = segs[-1] if segs else cursor[0]
        self._write_off = write_end if segs else 0
        self._open_writer()

    def _open_writer(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self._seg_path(self._write_seg), flags, 0o600)

    def _roll(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._write_seg += 1
        self._write_off = 0
        self._open_writer()

    # -- producer ----------------------------------------------------------------------
    def put(self, message: Message) -> None:
        """Append a message (durable once this returns, short of a power cut)."""
        frame = encode_frame(message)
        os.write(self._fd, frame)
        self._write_off += len(frame)
        pos = (self._write_seg, self._write_off)
        if self._cache_open and len(self._cache) < self.memory_capacity:
            self._cache.append((message, pos))
        else:
            self._cache_open = False
            self.spilled += 1
        self.pending += 1
        self._dirty = True
        if self._write_off >= self.segment_bytes:
            self._roll()

    # -- consumer ----------------------------------------------------------------------
    def peek(self, limit: int) -> list[tuple[Message, Position]]:
        """Up to ``limit`` oldest unacknowledged messages, each with its end position."""
        if self._cache:
            return list(islice(self._cache, limit))
        if self.pending == 0:
            return []
        out: list[tuple[Message, Position]] = []
        seg, off = self._read_pos
        positioned = False
        while len(out) < limit:
            if self._reader is None or self._reader_seg != seg:
                self._close_reader()
                try:
                    self._reader = open(self._seg_path(seg), "rb")
                except FileNotFoundError:
                    if seg >= self._write_seg:
                        break
                    seg, off = seg + 1, 0
                    continue
                self._reader_seg = seg
                positioned = False
            if not positioned:
                self._reader.seek(off)
                positioned = True
            frame = _read_frame(self._reader)
            if frame is None:
                if seg >= self._write_seg:
                    break
                seg, off = seg + 1, 0
                continue
            off += frame[1]
            out.append((frame[0], (seg, off)))
        self.disk_reads += len(out)
        return out

    def commit(self, upto: Position, count: int) -> None:
        """Mark ``count`` messages up to position ``upto`` as acknowledged."""
        self.pending = max(0, self.pending - count)
        while self._cache and self._cache[0][1] <= upto:
            self._cache.popleft()
        old_seg = self._read_pos[0]
        self._read_pos = upto
        for seg in range(old_seg, upto[0]):
            if seg == self._reader_seg:
                self._close_reader()
            self._seg_path(seg).unlink(missing_ok=True)
        if self.pending == 0 and not self._cache:
            self._cache_open = True
        self._dirty = True

    def sync(self, force: bool = False) -> None:
        """fsync the segment and persist the cursor, if the interval has passed (or forced)."""
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_sync < self.fsync_interval_s):
            return
        os.fsync(self._fd)
        self._write_cursor()
        self._dirty = False
        self._last_sync = now

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader, self._reader_seg = None, -1

    def close(self) -> None:
        """Sync and release the files; the folder keeps whatever is unacknowledged."""
        if self._fd < 0:
            return
        self.sync(force=True)
        self._close_reader()
        os.close(self._fd)
        self._fd = -1

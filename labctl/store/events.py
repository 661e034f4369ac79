"""The run's events.jsonl: one JSON document per line, appended crash-safely.

Durability policy: every document is written as one ``write`` of a complete line and
flushed to the OS at once, so a killed process (``kill -9``) loses nothing already
emitted. ``fsync`` (which also survives power loss) runs after every document when
``fsync_interval_s`` is 0, otherwise at most once per interval, and always in
``sync()`` — the runner calls ``sync()`` before every checkpoint, so a checkpoint never
refers to an event that is not on disk. A reader tolerates a torn last line.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from labctl.documents import Document
from labctl.store.atomic import write_bytes_atomic


class EventLog:
    """Appends documents to a JSON-lines file."""

    def __init__(self, path: Path, *, fsync_interval_s: float = 0.0) -> None:
        self.path = Path(path)
        self.fsync_interval_s = fsync_interval_s
        self._handle: BinaryIO | None = open(self.path, "ab")  # long-lived: closed in close()
        self._last_fsync = time.monotonic()
        self._dirty = False

    def append(self, document: Document) -> None:
        """Write one document as one line, flushed (and fsynced per the policy)."""
        self.append_dict(document.to_json_dict())

    def append_dict(self, record: dict[str, Any]) -> None:
        """Write one JSON object as one line."""
        if self._handle is None:
            raise ValueError(f"{self.path}: event log is closed")
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        self._handle.write(line.encode("utf-8"))
        self._handle.flush()
        self._dirty = True
        now = time.monotonic()
        if self.fsync_interval_s <= 0.0 or now - self._last_fsync >= self.fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        """Force everything written so far onto the disk."""
        if self._handle is not None and self._dirty:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._dirty = False
            self._last_fsync = time.monotonic()

    def close(self) -> None:
        """Sync and close the file; idempotent."""
        if self._handle is not None:
            self.sync()
            self._handle.close()
            self._handle = None


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every complete document in an events file; a torn (unterminated) last line is skipped.

    A corrupt line that is *not* the last one is an error naming the file and line number,
    because it means something other than a crash damaged the file.
    """
    return list(iter_events(path))


def iter_events(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the complete documents of an events file in order."""
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    # The piece after the last newline is either empty or a line torn by a crash.
    complete, _torn = lines[:-1], lines[-1]
    for number, raw in enumerate(complete, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSON, UTF-8 or nesting
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:80]
            raise ValueError(f"{path}:{number}: corrupt event line ({reason})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: event line is not a JSON object")
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise ValueError(
                f"{path}:{number}: field 'seq': expected an integer >= 0, got {seq!r:.40}"
            )
        yield record


def truncate_events(path: Path, seq_next: int) -> int:
    """Keep only documents with ``seq < seq_next`` (atomically); returns how many were dropped."""
    kept: list[bytes] = []
    dropped = 0
    for record in iter_events(path):
        if int(record.get("seq", -1)) < seq_next:
            kept.append(json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n")
        else:
            dropped += 1
    write_bytes_atomic(Path(path), b"".join(kept))
    return dropped


def append_event(path: Path, record: dict[str, Any]) -> None:
    """Append one document to a closed events file, durably (the file must end complete)."""
    line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
    with open(path, "ab") as handle:
        handle.write(line.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def first_and_last_events(
    path: Path, tail_bytes: int = 1 << 20
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first and the latest complete documents of an events file, reading only its head
    and its last ``tail_bytes`` (a 12-hour run's file is far too big to parse at its end).

    (None, None) when the file is missing or holds no complete document.
    """
    path = Path(path)
    if not path.is_file():
        return None, None
    with open(path, "rb") as handle:
        head = handle.readline()
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(size - tail_bytes, 0))
        tail = handle.read()
    if not head.endswith(b"\n"):
        return None, None
    first = _parse(head)
    last = None
    for raw in reversed(tail.split(b"\n")[:-1]):  # after the last newline: torn or empty
        last = _parse(raw)
        if last is not None:
            break
    return first, last


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # a line cut by the tail window or a crash
    return record if isinstance(record, dict) else None

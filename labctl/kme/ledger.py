"""Durable bookkeeping of one KME: what key material was handed out, what is reserved.

SQLite (WAL), one file per node (``kme-ledger-alice.sqlite``), never holding key bytes:

- ``lease``: how far the allocator may have handed out key material (a byte offset in the
  store's key order). The allocator takes leases ahead of its in-memory cursor, one durable
  write per lease; after a restart it starts at the lease end, so bytes handed out before a
  crash are skipped (a lease's rest is wasted, never reused).
- ``consumed``: byte ranges of the store (in store order) that were allocated, at both KMEs.
  A range is refused when it overlaps one already here: the same bytes are never accepted
  for a second key_ID, whichever KME asks.
- ``reservations``: key_IDs reserved for a slave SAE at this KME, with their location in
  the store (store key ids, offsets, lengths). A reservation is deleted, durably, before
  its key leaves the KME, so it is served at most once.
- ``delivered``: key_IDs already handed out, so a repeated dec_keys says so.

A key relayed by a trusted node (:mod:`labctl.kme.relay`) is reserved at its last node as
the location of that hop's key plus ``pad``, the relayed one-time-padded key: the key is
``pad XOR`` those store bytes, so the ledger alone never holds it (the file is 0600).

What must survive a power loss is made durable before the call returns: the lease (a
``synchronous=FULL`` commit) and the erasure of a reservation before its key is served (a
commit followed by :meth:`Ledger.sync`, an fsync of the WAL that
:class:`~labctl.kme.commit.GroupCommit` shares between concurrent deliveries).
Consumed ranges and new reservations are committed without an fsync (WAL ``NORMAL``: they
survive a crash or restart of the process, only a power loss or kernel crash can roll the
last of them back). Losing them is safe: the allocator never goes back behind its durable
lease, so no range is handed out again, and a lost reservation is a key its slave SAE can
no longer fetch (refused as unknown), never one served twice.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY CHECK (id = 0), end_byte INTEGER)",
    "CREATE TABLE IF NOT EXISTS consumed (start_byte INTEGER PRIMARY KEY, end_byte INTEGER)",
    "CREATE TABLE IF NOT EXISTS reservations (key_id TEXT PRIMARY KEY, master TEXT NOT NULL, "
    "slaves TEXT NOT NULL, segments TEXT NOT NULL, size_bits INTEGER NOT NULL, "
    "created_ts REAL NOT NULL, pad BLOB)",
    "CREATE TABLE IF NOT EXISTS delivered (key_id TEXT PRIMARY KEY, ts REAL NOT NULL)",
)


class LedgerError(Exception):
    """The ledger cannot record what was asked (overlap, duplicate key_ID, bad file)."""


@dataclass(frozen=True)
class Segment:
    """``n_bytes`` of store key ``key_id`` from byte ``offset``; ``start`` in store order."""

    key_id: str
    offset: int
    n_bytes: int
    start: int

    def to_json(self) -> list[object]:
        """Compact form for the ledger and the peer channel."""
        return [self.key_id, self.offset, self.n_bytes, self.start]

    @classmethod
    def from_json(cls, item: object) -> Segment:
        """Inverse of :meth:`to_json`; ValueError when malformed."""
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not isinstance(item[0], str)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in item[1:])
        ):
            raise ValueError(f"segment must be [key_id, offset, n_bytes, start], got {item!r}")
        if item[1] < 0 or item[2] <= 0 or item[3] < 0:
            raise ValueError(f"segment has a negative offset or empty length: {item!r}")
        return cls(item[0], item[1], item[2], item[3])


@dataclass(frozen=True)
class Reservation:
    """A key reserved for slave SAEs: its key_ID, master SAE, size and store location.

    ``pad`` (relayed keys only): the key is ``pad XOR`` the bytes of ``segments``. It never
    travels in :meth:`to_json` (the relay message carries it, authenticated).
    """

    key_id: str
    master: str
    slaves: tuple[str, ...]
    size_bits: int
    segments: tuple[Segment, ...]
    pad: bytes | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, object]:
        """Form sent between KMEs (locations only, never bytes)."""
        return {
            "key_ID": self.key_id,
            "master_SAE_ID": self.master,
            "slave_SAE_IDs": list(self.slaves),
            "size": self.size_bits,
            "segments": [s.to_json() for s in self.segments],
        }

    @classmethod
    def from_json(cls, item: object) -> Reservation:
        """Inverse of :meth:`to_json`; ValueError naming the bad field."""
        if not isinstance(item, dict):
            raise ValueError(f"reservation must be an object, got {type(item).__name__}")
        key_id, master, slaves = (
            item.get("key_ID"),
            item.get("master_SAE_ID"),
            item.get("slave_SAE_IDs"),
        )
        size, segments = item.get("size"), item.get("segments")
        if not isinstance(key_id, str) or not isinstance(master, str):
            raise ValueError("reservation: key_ID and master_SAE_ID must be strings")
        if not isinstance(slaves, list) or not all(isinstance(s, str) for s in slaves):
            raise ValueError("reservation: slave_SAE_IDs must be a list of strings")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 8:
            raise ValueError(f"reservation: size must be a positive multiple of 8, got {size!r}")
        if not isinstance(segments, list) or not segments:
            raise ValueError("reservation: segments must be a non-empty list")
        segs = tuple(Segment.from_json(s) for s in segments)
        if sum(s.n_bytes for s in segs) * 8 != size:
            raise ValueError(f"reservation {key_id}: segments do not add up to {size} bits")
        return cls(key_id, master, tuple(slaves), size, segs)


class _Intervals:
    """Disjoint half-open byte ranges, merged when they touch."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return True
        return i + 1 < len(self._starts) and self._starts[i + 1] < end

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_right(self._starts, start)
        if i > 0 and self._ends[i - 1] == start:  # extends its left neighbour
            self._ends[i - 1] = end
            if i < len(self._starts) and self._starts[i] == end:
                self._ends[i - 1] = self._ends.pop(i)
                self._starts.pop(i)
            return
        if i < len(self._starts) and self._starts[i] == end:  # extends its right neighbour
            self._starts[i] = start
            return
        self._starts.insert(i, start)
        self._ends.insert(i, end)

    def end(self) -> int:
        return self._ends[-1] if self._ends else 0

    def spans(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)


Synchronous = Literal["FULL", "NORMAL"]


class Ledger:
    """The bookkeeping file of one KME (thread-safe; a context manager)."""

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "FULL") -> None:
        self.path = Path(path)
        self.durable_delivery = synchronous == "FULL"
        self._commits = 0
        self._wal_fd: int | None = None
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous: Synchronous = synchronous
            for statement in _SCHEMA:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(reservations)")}
            if "pad" not in columns:  # a ledger written before relayed keys existed
                self._db.execute("ALTER TABLE reservations ADD COLUMN pad BLOB")
            self.path.chmod(0o600)
        except sqlite3.Error as exc:
            raise LedgerError(f"KME ledger {self.path}: cannot open ({exc})") from None
        self._consumed = _Intervals()
        rows = self._db.execute("SELECT start_byte, end_byte FROM consumed").fetchall()
        for start, end in sorted(rows):
            self._consumed.add(int(start), int(end))
        if len(rows) > len(self._consumed):
            self._compact()

    def _compact(self) -> None:
        """Rewrite the consumed ranges merged (one row per allocation -> a few rows)."""
        with self._db:  # one transaction: the old rows go only with the merged ones in
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM consumed")
            self._db.executemany(
                "INSERT INTO consumed (start_byte, end_byte) VALUES (?, ?)",
                self._consumed.spans(),
            )

    def consumed_end(self) -> int:
        """The end of the last consumed byte range (0 when none)."""
        return self._consumed.end()

    def lease_end(self) -> int:
        """The byte (store order) up to which material may have been handed out."""
        with self._lock:
            row = self._db.execute("SELECT end_byte FROM lease WHERE id = 0").fetchone()
        return 0 if row is None else int(row[0])

    def _sync(self, mode: Synchronous) -> None:
        """Set the commit mode of the next transaction (outside a transaction)."""
        if mode != self._synchronous:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def extend_lease(self, end_byte: int) -> None:
        """Record, durably, that material up to ``end_byte`` may be handed out."""
        with self._lock:
            self._sync("FULL")
            self._db.execute(
                "INSERT INTO lease (id, end_byte) VALUES (0, ?) "
                "ON CONFLICT(id) DO UPDATE SET end_byte = excluded.end_byte",
                (end_byte,),
            )

    def consume(self, reservations: Sequence[Reservation], *, reserve_here: bool) -> None:
        """Mark the ranges of ``reservations`` consumed (and keep them reserved here).

        All or nothing: LedgerError when any range overlaps one consumed before, or a key_ID
        was seen before; nothing is recorded then.
        """
        ranges = sorted((s.start, s.start + s.n_bytes) for r in reservations for s in r.segments)
        for (_, end), (start, _) in itertools.pairwise(ranges):
            if start < end:
                raise LedgerError("reservation ranges overlap each other")
        with self._lock:
            for start, end in ranges:
                if self._consumed.overlaps(start, end):
                    raise LedgerError(f"bytes {start}..{end} of the store were handed out before")
            ids = [r.key_id for r in reservations]
            marks = ",".join("?" * len(ids))
            known = self._db.execute(
                f"SELECT key_id FROM reservations WHERE key_id IN ({marks}) UNION "
                f"SELECT key_id FROM delivered WHERE key_id IN ({marks})",
                ids + ids,
            ).fetchall()
            if known or len(set(ids)) != len(ids):
                raise LedgerError("key_ID seen before")
            now = time.time()
            self._sync("NORMAL")  # see the module docstring: losing this is safe
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR REPLACE INTO consumed (start_byte, end_byte) VALUES (?, ?)", ranges
                )
                if reserve_here:
                    self._db.executemany(
                        "INSERT INTO reservations (key_id, master, slaves, segments, "
                        "size_bits, created_ts, pad) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                r.key_id,
                                r.master,
                                json.dumps(list(r.slaves)),
                                json.dumps([s.to_json() for s in r.segments]),
                                r.size_bits,
                                now,
                                r.pad,
                            )
                            for r in reservations
                        ],
                    )
                else:
                    self._db.executemany(
                        "INSERT INTO delivered VALUES (?, ?)", [(k, now) for k in ids]
                    )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise LedgerError(f"KME ledger {self.path}: cannot record ({exc})") from None
            for start, end in ranges:
                self._consumed.add(start, end)

    def reservations(self, key_ids: Sequence[str]) -> dict[str, Reservation]:
        """The open reservations among ``key_ids``."""
        if not key_ids:
            return {}
        marks = ",".join("?" * len(key_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT key_id, master, slaves, segments, size_bits, pad FROM reservations "
                f"WHERE key_id IN ({marks})",
                list(key_ids),
            ).fetchall()
        out = {}
        for key_id, master, slaves, segments, size_bits, pad in rows:
            out[str(key_id)] = Reservation(
                str(key_id),
                str(master),
                tuple(json.loads(slaves)),
                int(size_bits),
                tuple(Segment.from_json(s) for s in json.loads(segments)),
                None if pad is None else bytes(pad),
            )
        return out

    def was_delivered(self, key_ids: Sequence[str]) -> set[str]:
        """Which of ``key_ids`` were handed out already."""
        if not key_ids:
            return set()
        marks = ",".join("?" * len(key_ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT key_id FROM delivered WHERE key_id IN ({marks})", list(key_ids)
            ).fetchall()
        return {str(r[0]) for r in rows}

    def deliver(self, key_ids: Sequence[str]) -> None:
        """Erase the reservations of ``key_ids`` (durably): they are never served again."""
        now = time.time()
        with self._lock:
            self._sync("NORMAL")  # made durable by sync() before the key leaves
            self._db.execute("BEGIN IMMEDIATE")
            marks = ",".join("?" * len(key_ids))
            deleted = self._db.execute(
                f"DELETE FROM reservations WHERE key_id IN ({marks})", list(key_ids)
            ).rowcount
            if deleted != len(set(key_ids)):
                self._db.execute("ROLLBACK")
                raise LedgerError("a reservation was taken meanwhile")
            self._db.executemany("INSERT INTO delivered VALUES (?, ?)", [(k, now) for k in key_ids])
            self._db.execute("COMMIT")
            self._commits += 1

    @property
    def commits(self) -> int:
        """How many deliveries were committed (to tell which ones a sync covers)."""
        return self._commits

    def sync(self) -> int:
        """fsync the WAL: every delivery committed so far is on disk; returns their count.

        Blocking (run it in a thread). WAL mode keeps appending commits to the ``-wal`` file
        while this connection is open, so syncing that file makes them durable, as a
        ``synchronous=FULL`` commit would have.
        """
        done = self._commits
        if self._wal_fd is None:
            self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        os.fsync(self._wal_fd)
        return done

    def open_reservations(self) -> int:
        """How many keys wait for their slave SAE."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

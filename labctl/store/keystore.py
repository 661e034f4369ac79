"""The key store: finished secret keys in SQLite, one file per node, keys named by UUID.

Alice and Bob each keep a store; after a block both hold the same bits under the same
key id. Every key the store holds (written now or loaded from an earlier run) is
registered with the log redaction registry (:mod:`labctl.log`) and the MQTT secret guard
(:mod:`labctl.stream.secrets`), so a key can never reach a log line or a published payload.
Nothing here prints or raises with key bits: errors name the key id and the file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from labctl import log as labctl_log
from labctl.qkd.secret import SecretBits
from labctl.stream.secrets import SecretRegistry, default_registry

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    n_bits INTEGER NOT NULL,
    key BLOB NOT NULL,
    created_ts REAL NOT NULL,
    run_id TEXT,
    block INTEGER
)
"""


class KeyStoreError(Exception):
    """The key store cannot do what was asked (duplicate id, unknown id, bad file)."""


@dataclass(frozen=True, repr=False)
class StoredKey:
    """One key of the store: id, bits and where it came from."""

    key_id: str
    key: SecretBits
    created_ts: float
    run_id: str | None
    block: int | None

    def __repr__(self) -> str:
        return f"StoredKey(key_id={self.key_id}, n_bits={len(self.key)})"


def _guard(data: bytes, registry: SecretRegistry) -> None:
    """Register key bytes with both secret registries (short keys cannot be guarded)."""
    if len(data) >= 8:
        labctl_log.register_secret(data)
        registry.register(data)


class KeyStore:
    """SQLite key store of one node; thread-safe; use as a context manager or close()."""

    def __init__(self, path: str | Path, *, secrets: SecretRegistry | None = None) -> None:
        self.path = Path(path)
        self._registry = secrets if secrets is not None else default_registry()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise KeyStoreError(f"key store {self.path}: cannot open ({exc})") from None
        for (data,) in self._db.execute("SELECT key FROM keys"):
            _guard(bytes(data), self._registry)

    def __repr__(self) -> str:
        return f"KeyStore({self.path}, keys={len(self)})"

    def add(
        self,
        key: SecretBits,
        *,
        key_id: str | None = None,
        run_id: str | None = None,
        block: int | None = None,
    ) -> str:
        """Store ``key`` (durably, before returning) under ``key_id`` (a new UUID if None)."""
        kid = str(uuid.UUID(key_id)) if key_id is not None else str(uuid.uuid4())
        if len(key) == 0:
            raise KeyStoreError(f"key store {self.path}: refusing to store an empty key {kid}")
        data = key.to_bytes()
        _guard(data, self._registry)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO keys (key_id, n_bits, key, created_ts, run_id, block) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (kid, len(key), data, time.time(), run_id, block),
                )
            except sqlite3.IntegrityError:
                raise KeyStoreError(f"key store {self.path}: key id {kid} exists") from None
        return kid

    def get(self, key_id: str) -> SecretBits:
        """The bits stored under ``key_id`` (KeyStoreError when unknown)."""
        with self._lock:
            row = self._db.execute(
                "SELECT key, n_bits FROM keys WHERE key_id = ?", (key_id,)
            ).fetchone()
        if row is None:
            raise KeyStoreError(f"key store {self.path}: no key {key_id}")
        return SecretBits.from_bytes(bytes(row[0]), int(row[1]))

    def ids(self) -> list[str]:
        """Every key id, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT key_id FROM keys ORDER BY rowid").fetchall()
        return [str(r[0]) for r in rows]

    def sizes_after(self, rowid: int) -> list[tuple[int, str, int]]:
        """(row, key id, n_bits) of every key stored after row ``rowid``, oldest first.

        Rows only grow (keys are never deleted), so a reader can follow the store by asking
        for what came after the last row it saw; no key bits are read.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, key_id, n_bits FROM keys WHERE rowid > ? ORDER BY rowid", (rowid,)
            ).fetchall()
        return [(int(r), str(k), int(n)) for r, k, n in rows]

    def keys(self) -> Iterator[StoredKey]:
        """Every stored key, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, key, n_bits, created_ts, run_id, block FROM keys ORDER BY rowid"
            ).fetchall()
        for kid, data, n_bits, ts, run_id, block in rows:
            yield StoredKey(
                str(kid), SecretBits.from_bytes(bytes(data), int(n_bits)), ts, run_id, block
            )

    def total_bits(self, run_id: str | None = None) -> int:
        """Key bits held (only those of ``run_id`` when given)."""
        query = "SELECT COALESCE(SUM(n_bits), 0) FROM keys"
        params: tuple[str, ...] = ()
        if run_id is not None:
            query, params = query + " WHERE run_id = ?", (run_id,)
        with self._lock:
            return int(self._db.execute(query, params).fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM keys").fetchone()[0])

    def close(self) -> None:
        """Close the database (keys stay registered as secrets for this process)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def node_store_path(key_store: str | Path, node: str) -> Path:
    """The store file of one node: ``keys.sqlite`` -> ``keys-alice.sqlite``."""
    path = Path(key_store)
    return path.with_name(f"{path.stem}-{node}{path.suffix or '.sqlite'}")

"""The key store: finished secret keys in SQLite, one file per node, keys named by UUID.

Alice and Bob each keep a store; after a block both hold the same bits under the same
key id. Every key the store holds (written now or loaded from an earlier run) is
registered as a secret (:mod:`labctl.secrets`), which log handlers mask and the MQTT
publisher refuses, so a key can never reach a log line or a published payload.
Nothing here prints or raises with key bits: errors name the key id and the file.

At rest. The store file (and SQLite's -wal/-shm, which inherit its mode) is created 0600
and an existing one is tightened to 0600 on open. Optionally the key bits are encrypted
with AES-256-GCM under a 32-byte key read from a private file (``storage.key_store_key_file``;
:func:`read_store_key`): each key is sealed with a fresh 96-bit nonce and its key id and
length as associated data, so bits cannot be moved to another row or truncated unnoticed.
A store is encrypted or not from its first key on (recorded in its ``meta`` table with a
check value): opening it without the key, with another key, or adding a key file to a
plain store that already holds keys is an error naming the file.

Threat model. Protects the key bits in a copy of the store without the key file: a backup,
a synced folder, a disk taken from the lab PC, the store mailed with a run. Does not protect
against anyone who can read the key file or run code as the node's user (the process holds
the key and the bits in memory); does not hide metadata (key ids, lengths, times, run ids,
block numbers stay in clear); does not detect whole rows being deleted or an older copy of
the store put back. Keep the key file off the disk that holds the store (removable medium,
secrets mount) for the first case to hold.

Keys are only ever deleted by :meth:`KeyStore.discard`, which a resumed run calls for the
keys of its own blocks that were stored but never committed at both ends.
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

from labctl.interfaces.errors import ConfigError
from labctl.qkd.secret import SecretBits
from labctl.sealing import KEY_BYTES, Sealer, SealError
from labctl.secrets import MIN_SECRET_BYTES, SecretRegistry, default_registry
from labctl.store.secret_files import create_private, read_secret_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    n_bits INTEGER NOT NULL,
    key BLOB NOT NULL,
    created_ts REAL NOT NULL,
    run_id TEXT,
    block INTEGER
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
)
"""
STORE_KEY_BYTES = KEY_BYTES
_CIPHER = b"aes-256-gcm"
_CHECK_PLAINTEXT = b"labctl key store check"


class KeyStoreError(Exception):
    """The key store cannot do what was asked (duplicate id, unknown id, bad file)."""


def read_store_key(path: str | Path, *, field: str = "storage.key_store_key_file") -> bytes:
    """The 32-byte key-store key from a private file (raw bytes or 64 hex digits)."""
    data = read_secret_file(path, field=field)
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = data
    if len(key) != STORE_KEY_BYTES:
        raise ConfigError(
            f"key-store key has {len(key)} bytes, need {STORE_KEY_BYTES} (raw or 64 hex digits)",
            file=str(path),
            field=field,
        )
    default_registry().register(key)
    return key


def _aad(key_id: str, n_bits: int) -> bytes:
    return f"labctl key {key_id} {n_bits}".encode()


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
    """Register key bytes as secrets (short keys cannot be guarded): with ``registry`` and
    with the process-wide one the log handlers read, when that is another."""
    if len(data) >= MIN_SECRET_BYTES:
        registry.register(data)
        if registry is not default_registry():
            default_registry().register(data)


class KeyStore:
    """SQLite key store of one node; thread-safe; use as a context manager or close()."""

    def __init__(
        self,
        path: str | Path,
        *,
        secrets: SecretRegistry | None = None,
        encryption_key: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        self._registry = secrets if secrets is not None else default_registry()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    create_private(side)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise KeyStoreError(f"key store {self.path}: cannot open ({exc})") from None
        self._sealer = self._setup_encryption(encryption_key)
        for kid, data, n_bits in self._db.execute("SELECT key_id, key, n_bits FROM keys"):
            _guard(self._plain(str(kid), bytes(data), int(n_bits)), self._registry)

    @property
    def encrypted(self) -> bool:
        """True when the key bits are sealed with AES-256-GCM in the file."""
        return self._sealer is not None

    def _setup_encryption(self, key: bytes | None) -> Sealer | None:
        """Check ``key`` against the store's record (and make the record for a new store)."""
        if key is not None and len(key) != STORE_KEY_BYTES:
            raise KeyStoreError(
                f"key store {self.path}: encryption key must have {STORE_KEY_BYTES} bytes"
            )
        meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        has_keys = self._db.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None
        if "cipher" not in meta:
            if key is None:
                return None
            if has_keys:
                raise KeyStoreError(
                    f"key store {self.path}: holds keys in clear; a key file "
                    "(storage.key_store_key_file) cannot be added to it (start a new store)"
                )
            sealer = Sealer(key)
            check = sealer.seal(_CHECK_PLAINTEXT, _CIPHER)
            self._db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?)",
                [("cipher", _CIPHER), ("check", check)],
            )
            return sealer
        if key is None:
            raise KeyStoreError(
                f"key store {self.path}: is encrypted; set storage.key_store_key_file to its "
                "key file"
            )
        sealer = Sealer(key)
        try:
            sealer.open(bytes(meta["check"]), _CIPHER)
        except (SealError, KeyError):
            raise KeyStoreError(
                f"key store {self.path}: the key file does not open this store (another key?)"
            ) from None
        return sealer

    def _plain(self, key_id: str, data: bytes, n_bits: int) -> bytes:
        if self._sealer is None:
            return data
        try:
            return self._sealer.open(data, _aad(key_id, n_bits))
        except SealError:
            raise KeyStoreError(
                f"key store {self.path}: key {key_id} fails its authentication tag "
                "(altered, or moved from another row)"
            ) from None

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
        stored = data if self._sealer is None else self._sealer.seal(data, _aad(kid, len(key)))
        with self._lock:
            try:
                # The row number is past every row ever held (discarded ones included), so a
                # reader following the store by row (sizes_after) never misses a new key.
                self._db.execute(
                    "INSERT INTO keys (rowid, key_id, n_bits, key, created_ts, run_id, block) "
                    "VALUES (MAX(COALESCE((SELECT MAX(rowid) FROM keys), 0), COALESCE("
                    "(SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'rowid_floor'), 0)"
                    ") + 1, ?, ?, ?, ?, ?, ?)",
                    (kid, len(key), stored, time.time(), run_id, block),
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
        n_bits = int(row[1])
        return SecretBits.from_bytes(self._plain(key_id, bytes(row[0]), n_bits), n_bits)

    def ids(self) -> list[str]:
        """Every key id, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT key_id FROM keys ORDER BY rowid").fetchall()
        return [str(r[0]) for r in rows]

    def sizes_after(self, rowid: int) -> list[tuple[int, str, int]]:
        """(row, key id, n_bits) of every key stored after row ``rowid``, oldest first.

        Row numbers only grow (a row number freed by :meth:`discard` is never given again),
        so a reader can follow the store by asking for what came after the last row it saw;
        no key bits are read.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT rowid, key_id, n_bits FROM keys WHERE rowid > ? ORDER BY rowid", (rowid,)
            ).fetchall()
        return [(int(r), str(k), int(n)) for r, k, n in rows]

    def run_keys(self, run_id: str) -> list[tuple[str, int, int | None]]:
        """(key id, n_bits, block) of every key of run ``run_id``, oldest first (no bits)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, n_bits, block FROM keys WHERE run_id = ? ORDER BY rowid",
                (run_id,),
            ).fetchall()
        return [(str(k), int(n), None if b is None else int(b)) for k, n, b in rows]

    def get_stored(self, key_id: str) -> StoredKey:
        """The key ``key_id`` with where it came from (KeyStoreError when unknown)."""
        with self._lock:
            row = self._db.execute(
                "SELECT key, n_bits, created_ts, run_id, block FROM keys WHERE key_id = ?",
                (key_id,),
            ).fetchone()
        if row is None:
            raise KeyStoreError(f"key store {self.path}: no key {key_id}")
        data, n_bits, ts, run_id, block = row
        plain = self._plain(key_id, bytes(data), int(n_bits))
        return StoredKey(key_id, SecretBits.from_bytes(plain, int(n_bits)), ts, run_id, block)

    def discard(self, key_ids: list[str]) -> int:
        """Delete keys that were never committed (a resumed run's uncommitted remainder).

        Only for keys no application can have been handed: the caller decides that. Returns
        how many rows went; their row numbers are not reused (see :meth:`sizes_after`).
        """
        if not key_ids:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                top = self._db.execute("SELECT COALESCE(MAX(rowid), 0) FROM keys").fetchone()[0]
                floor = self._db.execute(
                    "SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'rowid_floor'"
                ).fetchone()
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('rowid_floor', ?)",
                    (max(int(top), 0 if floor is None else int(floor[0])),),
                )
                gone = 0
                for kid in key_ids:
                    gone += self._db.execute("DELETE FROM keys WHERE key_id = ?", (kid,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return gone

    def keys(self) -> Iterator[StoredKey]:
        """Every stored key, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, key, n_bits, created_ts, run_id, block FROM keys ORDER BY rowid"
            ).fetchall()
        for kid, data, n_bits, ts, run_id, block in rows:
            plain = self._plain(str(kid), bytes(data), int(n_bits))
            yield StoredKey(str(kid), SecretBits.from_bytes(plain, int(n_bits)), ts, run_id, block)

    def note(self, name: str) -> bytes | None:
        """A value the node recorded in the store's ``meta`` table (None when absent)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_note(self, name: str, value: bytes) -> None:
        """Record ``value`` under ``name`` (durably; the store's own records are refused)."""
        if name in ("cipher", "check"):
            raise KeyStoreError(f"key store {self.path}: {name!r} is the store's own record")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)
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


def store_key_from_config(config: object) -> bytes | None:
    """The key-store key named by ``storage.key_store_key_file`` of a station config, or None."""
    storage = getattr(config, "storage", None)
    key_file = getattr(storage, "key_store_key_file", None)
    return None if key_file is None else read_store_key(key_file)

"""Key stores at rest: private files, optional AES-256-GCM of the bits, key files checked."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from labctl.interfaces.errors import ConfigError
from labctl.qkd.secret import SecretBits
from labctl.secrets import SecretRegistry
from labctl.store.keystore import KeyStore, KeyStoreError, read_store_key


def _bits(seed: int, n: int = 4096) -> SecretBits:
    del seed  # each call draws fresh random bits
    return SecretBits.from_bytes(os.urandom(n // 8), n)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_store_and_its_wal_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    with KeyStore(path, secrets=SecretRegistry()) as store:
        store.add(_bits(1))
        sides = [p for p in tmp_path.iterdir() if p.name.startswith("keys.sqlite")]
        assert len(sides) >= 2  # the database and its -wal (and -shm)
        assert all(_mode(p) == 0o600 for p in sides), [(p.name, oct(_mode(p))) for p in sides]


def test_an_existing_open_store_is_tightened_on_open(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    KeyStore(path, secrets=SecretRegistry()).close()
    path.chmod(0o644)
    KeyStore(path, secrets=SecretRegistry()).close()
    assert _mode(path) == 0o600


def _key_file(tmp_path: Path, key: bytes | None = None, mode: int = 0o600) -> Path:
    path = tmp_path / "store.key"
    path.write_text((key or os.urandom(32)).hex() + "\n", encoding="ascii")
    path.chmod(mode)
    return path


def test_encrypted_store_round_trips_and_keeps_no_bits_in_clear(tmp_path: Path) -> None:
    key = read_store_key(_key_file(tmp_path))
    path = tmp_path / "keys.sqlite"
    bits = [_bits(i) for i in range(3)]
    with KeyStore(path, secrets=SecretRegistry(), encryption_key=key) as store:
        ids = [store.add(b) for b in bits]
        assert store.encrypted
    with KeyStore(path, secrets=SecretRegistry(), encryption_key=key) as store:
        assert [store.get(i) for i in ids] == bits
        assert [k.key for k in store.keys()] == bits
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys"))
    for b in bits:
        assert b.to_bytes()[:32] not in raw  # no 32-byte run of any key on disk


def test_encrypted_store_refuses_no_key_and_another_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    with KeyStore(path, secrets=SecretRegistry(), encryption_key=os.urandom(32)) as store:
        store.add(_bits(1))
    with pytest.raises(KeyStoreError, match=r"is encrypted; set storage\.key_store_key_file"):
        KeyStore(path, secrets=SecretRegistry())
    with pytest.raises(KeyStoreError, match="does not open this store"):
        KeyStore(path, secrets=SecretRegistry(), encryption_key=os.urandom(32))


def test_a_plain_store_with_keys_cannot_become_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "keys.sqlite"
    with KeyStore(path, secrets=SecretRegistry()) as store:
        store.add(_bits(1))
    with pytest.raises(KeyStoreError, match="holds keys in clear"):
        KeyStore(path, secrets=SecretRegistry(), encryption_key=os.urandom(32))


def test_bits_moved_to_another_row_fail_their_tag(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "keys.sqlite"
    with KeyStore(path, secrets=SecretRegistry(), encryption_key=key) as store:
        first, second = store.add(_bits(1)), store.add(_bits(2))
    with sqlite3.connect(path) as db:
        (blob,) = db.execute("SELECT key FROM keys WHERE key_id = ?", (first,)).fetchone()
        db.execute("UPDATE keys SET key = ? WHERE key_id = ?", (blob, second))
    with pytest.raises(KeyStoreError, match=f"key {second} fails its authentication tag"):
        KeyStore(path, secrets=SecretRegistry(), encryption_key=key)


def test_key_files_must_be_private_and_32_bytes(tmp_path: Path) -> None:
    open_file = _key_file(tmp_path, mode=0o640)
    with pytest.raises(ConfigError) as info:
        read_store_key(open_file)
    assert "open to group/others (mode 0640)" in str(info.value)
    assert f"chmod 600 {open_file}" in str(info.value)
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="has 16 bytes, need 32"):
        read_store_key(short)
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"\x01" * 32)
    raw.chmod(0o600)
    assert read_store_key(raw) == b"\x01" * 32

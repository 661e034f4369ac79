"""The SQLite key store: ids, durability, and keys guarded from logs and MQTT payloads."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from labctl import log as labctl_log
from labctl.qkd.secret import SecretBits
from labctl.secrets import MASK, SecretLeakError, SecretRegistry
from labctl.store.keystore import KeyStore, KeyStoreError, node_store_path


def _key(n: int, seed: int) -> SecretBits:
    return SecretBits(np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8))


def test_keys_survive_reopen_with_ids_and_bits(tmp_path: Path) -> None:
    path = tmp_path / "keys-alice.sqlite"
    key_a, key_b = _key(4096, 1), _key(1001, 2)
    given = str(uuid.uuid4())
    with KeyStore(path, secrets=SecretRegistry()) as store:
        kid_a = store.add(key_a, key_id=given, run_id="r1", block=0)
        kid_b = store.add(key_b, run_id="r1", block=1)
    assert kid_a == given and uuid.UUID(kid_b).version == 4
    with KeyStore(path, secrets=SecretRegistry()) as store:
        assert store.ids() == [kid_a, kid_b]
        assert store.get(kid_a) == key_a and store.get(kid_b) == key_b
        assert len(store) == 2 and store.total_bits() == 5097 and store.total_bits("r2") == 0
        assert [k.key_id for k in store.keys()] == [kid_a, kid_b]


def test_duplicate_and_unknown_ids_are_refused_by_name(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "k.sqlite", secrets=SecretRegistry()) as store:
        kid = store.add(_key(256, 3))
        with pytest.raises(KeyStoreError, match=f"key id {kid} exists"):
            store.add(_key(256, 4), key_id=kid)
        missing = str(uuid.uuid4())
        with pytest.raises(KeyStoreError, match=f"no key {missing}"):
            store.get(missing)
        with pytest.raises(ValueError):
            store.add(_key(256, 5), key_id="not-a-uuid")


def test_stored_keys_are_masked_in_logs_and_refused_on_mqtt(tmp_path: Path) -> None:
    registry = SecretRegistry()
    key = _key(2048, 6)
    with KeyStore(tmp_path / "k.sqlite", secrets=registry) as store:
        store.add(key)
    raw = key.to_bytes()
    with pytest.raises(SecretLeakError, match="key material"):
        registry.check(b'{"oops": "' + raw[100:140].hex().encode() + b'"}', "test/topic")
    assert labctl_log.redact(f"leak {raw.hex()}") == f"leak {MASK}"
    # A fresh process (new registry) re-registers every key found in the file.
    fresh = SecretRegistry()
    with KeyStore(tmp_path / "k.sqlite", secrets=fresh):
        assert fresh.find(raw) is not None
    assert repr(key).startswith("SecretBits(n_bits=2048")


def test_node_store_path() -> None:
    assert node_store_path("/a/keys.sqlite", "bob") == Path("/a/keys-bob.sqlite")

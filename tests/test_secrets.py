"""The one secret registry: log lines masked, key material found in every encoding."""

from __future__ import annotations

import base64
import json
import os

import pytest

from labctl.secrets import SecretLeakError, SecretRegistry, fingerprint

KEY = bytes(range(7, 7 + 64))  # deterministic 64-byte key


@pytest.fixture
def registry() -> SecretRegistry:
    r = SecretRegistry()
    r.register(KEY)
    return r


def bits(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)


@pytest.mark.parametrize(
    "encode",
    [
        lambda k: k.hex(),
        lambda k: k.hex().upper(),
        lambda k: base64.b64encode(k).decode(),
        lambda k: base64.urlsafe_b64encode(k).decode().rstrip("="),
        bits,
    ],
    ids=["hex", "HEX", "b64", "b64url", "bits"],
)
@pytest.mark.parametrize("offset", [0, 1, 2, 5, 17])
def test_any_32_byte_fragment_is_found(
    registry: SecretRegistry, encode: object, offset: int
) -> None:
    fragment = KEY[offset : offset + 32]
    text = encode(fragment)  # type: ignore[operator]
    payload = json.dumps({"seq": 3, "data": {"blob": text}}).encode()
    assert registry.find(payload) == fingerprint(KEY)
    with pytest.raises(SecretLeakError) as info:
        registry.check(payload, "labctl/v1/l/n/run/r/qkd")
    # The error names the place and the fingerprint, never the key.
    assert "run/r/qkd" in str(info.value)
    assert KEY.hex()[:16] not in str(info.value)


def test_raw_bytes_are_found(registry: SecretRegistry) -> None:
    assert registry.find(b"prefix" + KEY[10:40] + b"suffix") is not None


def test_unrelated_payloads_pass(registry: SecretRegistry) -> None:
    rng_payloads = [os.urandom(256).hex().encode() for _ in range(200)]
    doc = json.dumps({"key_id": "k-1", "key_bits": 512, "fp": fingerprint(KEY)}).encode()
    assert all(registry.find(p) is None for p in [*rng_payloads, doc])


def test_short_secrets_are_refused_and_unregister_works() -> None:
    r = SecretRegistry()
    with pytest.raises(ValueError, match="too short"):
        r.register(b"1234567")
    r.register(KEY)
    assert len(r) == 1
    r.unregister(KEY)
    assert r.find(KEY.hex().encode()) is None


def test_many_keys_each_found_and_forgotten() -> None:
    r = SecretRegistry()
    keys = [os.urandom(64) for _ in range(500)]
    fps = [r.register(k) for k in keys]
    for key, fp in zip(keys[::50], fps[::50], strict=True):
        assert r.find(json.dumps({"x": key[20:56].hex()}).encode()) == fp
    assert r.find(json.dumps({"seq": 1, "qber_z": 0.02, "run_id": "r-1"}).encode()) is None
    r.unregister(keys[0])
    assert r.find(keys[0].hex().encode()) is None
    assert r.find(keys[1].hex().encode()) == fps[1]


def test_one_registration_masks_logs_and_guards_payloads_until_undone() -> None:
    r = SecretRegistry()
    fp = r.register(KEY)
    assert fp == fingerprint(KEY)
    assert r.redact(f"key {KEY.hex()}") == "key [redacted]"
    with pytest.raises(SecretLeakError, match=fp):
        r.check(json.dumps({"k": base64.b64encode(KEY).decode()}).encode(), "lab/run/x")
    r.register(KEY)  # counted: one unregister leaves it guarded
    r.unregister(KEY)
    assert r.find(KEY.hex().encode()) == fp
    r.unregister(KEY)
    assert r.find(KEY.hex().encode()) is None and r.redact(KEY.hex()) == KEY.hex()


def test_text_secrets_are_masked_in_logs_only() -> None:
    r = SecretRegistry()
    r.register("broker-password-123")
    assert r.redact("pw broker-password-123") == "pw [redacted]"
    assert r.find(b"pw broker-password-123") is None  # payload checks look for key bytes

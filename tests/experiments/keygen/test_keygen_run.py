"""Key generation runs on the simulated station: identical stores, attack safety, tampering."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest
import yaml

from labctl.qkd.auth.channel import AuthenticatedChannel, MemoryTransport
from labctl.qkd.auth.transcript import (
    EPS_PER_CHECK,
    TranscriptAuthenticator,
    open_local_pair,
    pool_path,
)
from labctl.store.events import read_events
from labctl.store.keystore import KeyStore
from tests.experiments.keygen.keygen_helpers import run_keygen, store_rows, write_config


async def test_two_blocks_give_identical_keys_at_alice_and_bob(tmp_path: Path) -> None:
    # A pool target above the seed's 124 slots per direction: every block refills it.
    config = write_config(tmp_path, qkd={"auth_pool_slots": 200})
    result = await run_keygen(config, duration_s=1.5)
    assert result.status == "ok", result.reason
    summary = json.loads((result.path / "summary.json").read_text())
    for field in (
        "run_id",
        "status",
        "pulses",
        "detections",
        "sifted_bits",
        "qber_z",
        "qber_x",
        "secret_bits",
        "key_rate_per_pulse",
        "secret_key_rate_bps",
        "ec_efficiency",
        "channel_uses",
        "sync_offset_ps",
        "sync_drift_ppb",
    ):
        assert field in summary, field
    assert summary["blocks"] == 2 and summary["pulses"] == 2 * 100_000_000
    # sim.yaml: e_det = 1 % plus slow fiber drift and darks -> QBER between 1 and 3 %.
    assert 0.01 < summary["qber_z"] < 0.03 and 0.01 < summary["qber_x"] < 0.03
    assert summary["secret_bits"] > 0 and summary["ec_efficiency"] < 1.2
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    bob = store_rows(tmp_path / "runs" / "keys-bob.sqlite")
    assert len(alice) == 2 and alice == bob
    # Wegman-Carter (the default): 3 checkpoints a block, the pool topped up from the key.
    auth = summary["authentication"]
    assert auth["mode"] == "wegman-carter" and auth["checkpoints"] == 6
    assert auth["pad_bits_used"] == 6 * 128
    assert summary["eps_auth"] == pytest.approx(6 * EPS_PER_CHECK)
    assert summary["eps_total"] == pytest.approx(2 * (1e-10 + 1e-15) + summary["eps_auth"])
    assert summary["auth_key_bits"] == auth["refill_bits"] > 0
    assert summary["auth_key_bits"] % 128 == 0
    assert summary["net_key_bits"] == summary["secret_bits"] - summary["auth_key_bits"]
    assert sum(n for _, n, _ in alice) == summary["net_key_bits"]
    assert sorted(summary["key_ids"]) == [k for k, _, _ in alice]
    # Per-block events reach the run's sinks, without key ids or bits.
    events = [e for e in read_events(result.path / "events.jsonl") if e.get("stream") == "qkd"]
    assert [e["data"]["block"] for e in events] == [0, 1]
    text = (result.path / "events.jsonl").read_bytes() + (result.path / "run.log").read_bytes()
    for key_id, _, key in alice:
        assert key_id.encode() not in text
        assert key.hex().encode() not in text and key[:16] not in text


async def test_a_key_store_key_seals_both_stores_and_both_pools(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    key_file = tmp_path / "store.key"
    key = os.urandom(32)
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["storage"]["key_store_key_file"] = str(key_file)
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = await run_keygen(config, duration_s=1.0)
    assert result.status == "ok", result.reason
    stores = [tmp_path / "runs" / f"keys-{node}.sqlite" for node in ("alice", "bob")]
    keys = []
    for path in stores:
        assert pool_path(path).read_bytes().startswith(b"labctl-sealed-authpool/1\n")
        with KeyStore(path, encryption_key=key) as store:
            assert store.encrypted
            keys.append([(s.key_id, s.key.to_bytes()) for s in store.keys()])
    assert keys[0] and keys[0] == keys[1]


async def test_full_intercept_resend_attack_stores_no_key(tmp_path: Path) -> None:
    attack = [{"kind": "attack", "at_s": 0.0, "until_s": 1.0e6, "fraction": 1.0}]
    config = write_config(tmp_path, faults=attack)
    result = await run_keygen(config, duration_s=1.5)
    # The first block trips the QBER suspender, whose recalibrations cannot pass under the
    # attack, until the run's duration ends it: no block gave key, so the run ends degraded.
    assert result.status == "degraded", result.reason
    assert result.reason.startswith("only 0 of ")
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["blocks"] >= 1 and summary["secret_bits"] == 0
    assert summary["status"] == "degraded" and summary["key_block_share"] == 0.0
    # Intercept-resend of every pulse: QBER = 1/4 (+ e_det), far above qber_max = 0.11.
    assert 0.22 < summary["qber_x"] < 0.29
    assert store_rows(tmp_path / "runs" / "keys-alice.sqlite") == []
    assert store_rows(tmp_path / "runs" / "keys-bob.sqlite") == []
    # The link monitor raised the intercept-resend alarm (run record; MQTT carries the same).
    alarms = [
        e["data"] for e in read_events(result.path / "events.jsonl") if e["stream"] == "alarm"
    ]
    assert [(a["source"], a["action"]) for a in alarms] == [("qber-high", "raised")]
    assert summary["trust"]["key_output"] == "stopped"


class TamperingTransport:
    """A real memory transport that flips one byte of the n-th frame it sends."""

    def __init__(self, inner: MemoryTransport, frame_number: int, replay: bool = False) -> None:
        self.inner = inner
        self.frame_number = frame_number
        self.replay = replay
        self.sent: list[bytes] = []

    async def send_frame(self, frame: bytes) -> None:
        if len(self.sent) == self.frame_number:
            if self.replay:
                frame = self.sent[-1]
            else:
                frame = frame[:20] + bytes([frame[20] ^ 0x01]) + frame[21:]
        self.sent.append(frame)
        await self.inner.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        return await self.inner.recv_frame(timeout_s)

    async def close(self) -> None:
        await self.inner.close()


def _pair(
    frame_number: int, *, replay: bool, tamper_alice: bool
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    psk = os.urandom(32)
    ta, tb = MemoryTransport.pair()
    wrapped_a = TamperingTransport(ta, frame_number, replay) if tamper_alice else ta
    wrapped_b = tb if tamper_alice else TamperingTransport(tb, frame_number, replay)
    return (
        AuthenticatedChannel(wrapped_a, psk, "alice", 10.0),
        AuthenticatedChannel(wrapped_b, psk, "bob", 10.0),
    )


async def _run_tampered(tmp_path: Path, frame: int, *, replay: bool, tamper_alice: bool) -> None:
    config = write_config(tmp_path)
    channels = _pair(frame, replay=replay, tamper_alice=tamper_alice)
    result = await run_keygen(config, duration_s=1.5, channels=channels)
    assert result.status == "aborted"
    assert "authentication failure" in result.reason
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] == "aborted"
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice == store_rows(tmp_path / "runs" / "keys-bob.sqlite")
    return None


async def test_tampered_message_from_alice_stops_key_output(tmp_path: Path) -> None:
    # Alice's 4th frame is inside Cascade of block 0: nothing may be stored.
    await _run_tampered(tmp_path, 3, replay=False, tamper_alice=True)
    assert store_rows(tmp_path / "runs" / "keys-bob.sqlite") == []


async def test_replayed_message_from_bob_stops_key_output(tmp_path: Path) -> None:
    await _run_tampered(tmp_path, 2, replay=True, tamper_alice=False)
    assert store_rows(tmp_path / "runs" / "keys-alice.sqlite") == []


class ForgingTransport:
    """Alice's transport run by an adversary who also holds the per-message HMAC key (the
    unbounded adversary of the Wegman-Carter bound): flips a bit of her first frame and
    MACs it again, so only the checkpoints can notice."""

    def __init__(self, inner: MemoryTransport, hmac_key: bytes) -> None:
        self.inner = inner
        self.key = hmac.new(hmac_key, b"labctl-qkd-auth/alice", hashlib.sha256).digest()
        self.forged = False

    async def send_frame(self, frame: bytes) -> None:
        if not self.forged:
            self.forged = True
            body = bytearray(frame[:-32])
            body[-1] ^= 0x01
            frame = bytes(body) + hmac.new(self.key, bytes(body), hashlib.sha256).digest()
        await self.inner.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        return await self.inner.recv_frame(timeout_s)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_message_forged_under_the_hmac_key_is_caught_by_a_checkpoint(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    runs = tmp_path / "runs"
    alice_pool, bob_pool = open_local_pair(runs / "keys-alice.sqlite", runs / "keys-bob.sqlite")
    hmac_key = os.urandom(32)
    ta, tb = MemoryTransport.pair()
    channels = (
        AuthenticatedChannel(
            ForgingTransport(ta, hmac_key),
            hmac_key,
            "alice",
            10.0,
            transcript=TranscriptAuthenticator(alice_pool),
        ),
        AuthenticatedChannel(
            tb, hmac_key, "bob", 10.0, transcript=TranscriptAuthenticator(bob_pool)
        ),
    )
    result = await run_keygen(config, duration_s=1.5, channels=channels)
    assert result.status == "aborted"
    assert "Wegman-Carter checkpoint failed" in result.reason
    assert store_rows(runs / "keys-alice.sqlite") == store_rows(runs / "keys-bob.sqlite") == []

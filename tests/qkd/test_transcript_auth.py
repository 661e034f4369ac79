"""Wegman-Carter transcript checkpoints: the hash, its bound, the pool, forgeries, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path

import pytest

from labctl.qkd.auth.channel import CHECKPOINT_KIND, AuthenticatedChannel, MemoryTransport
from labctl.qkd.auth.transcript import (
    CHUNK61,
    EPS_PER_CHECK,
    LANES,
    MIN_PSK_BYTES,
    P61,
    RESERVE_SLOTS,
    SLOT_BYTES,
    TRANSCRIPT_CAP_BYTES,
    AuthPool,
    KeyPoolExhausted,
    PoolStateError,
    StreamHash,
    TranscriptAuthenticator,
    open_local_pair,
    pool_path,
    psk_parts,
)
from labctl.qkd.auth.wegman_carter import PRIME, poly_hash_in
from labctl.qkd.errors import AuthenticationError

HMAC_KEY = b"h" * 32


def _lane_keys() -> tuple[int, ...]:
    return tuple(secrets.randbelow(P61 - 1) + 1 for _ in range(LANES))


@pytest.mark.parametrize("length", [0, 1, 6, 7, 8, 13, 14, 15, 1000, 70_001, 200_003])
def test_stream_hash_is_four_polynomials_of_the_whole_stream(length: int) -> None:
    keys = _lane_keys()
    message = os.urandom(length)
    stream = StreamHash(keys)
    at = 0
    while at < length:  # fed in uneven pieces, as frames arrive
        step = secrets.randbelow(5000) + 1
        stream.update(message[at : at + step])
        at += step
    expected = b"".join(poly_hash_in(k, message, P61, CHUNK61)[0].to_bytes(8, "big") for k in keys)
    assert stream.digest() == expected
    assert stream.digest() == b"".join(  # reset: the next digest is of the empty stream
        poly_hash_in(k, b"", P61, CHUNK61)[0].to_bytes(8, "big") for k in keys
    )


def test_a_message_larger_than_a_piece_hashes_as_the_same_bytes_in_frames() -> None:
    keys = _lane_keys()
    message = os.urandom(5 * (1 << 19) + 3)  # 2.5 MiB: hashed in several pieces
    whole, framed = StreamHash(keys), StreamHash(keys)
    whole.update(message)
    for at in range(0, len(message), 4093):
        framed.update(message[at : at + 4093])
    assert whole.total_bytes == framed.total_bytes == len(message)
    assert whole.digest() == framed.digest()


def test_the_per_check_bound_is_the_closed_form() -> None:
    chunks = -(-(TRANSCRIPT_CAP_BYTES + 8) // CHUNK61)
    closed = (chunks / (P61 - 1)) ** 4 + 3 / (PRIME - 1) + 2.0**-127
    assert EPS_PER_CHECK == pytest.approx(closed, rel=1e-12)
    assert 1e-37 < EPS_PER_CHECK < 1e-35


def _pools(tmp_path: Path) -> tuple[AuthPool, AuthPool]:
    return open_local_pair(tmp_path / "keys-alice.sqlite", tmp_path / "keys-bob.sqlite")


def _pair(
    alice_pool: AuthPool, bob_pool: AuthPool, timeout_s: float = 2.0
) -> tuple[AuthenticatedChannel, AuthenticatedChannel, MemoryTransport, MemoryTransport]:
    ta, tb = MemoryTransport.pair()
    alice = AuthenticatedChannel(
        ta, HMAC_KEY, "alice", timeout_s, transcript=TranscriptAuthenticator(alice_pool)
    )
    bob = AuthenticatedChannel(
        tb, HMAC_KEY, "bob", timeout_s, transcript=TranscriptAuthenticator(bob_pool)
    )
    return alice, bob, ta, tb


async def test_checkpoints_authenticate_both_directions_and_account_slots(tmp_path: Path) -> None:
    alice_pool, bob_pool = _pools(tmp_path)
    alice, bob, _, _ = _pair(alice_pool, bob_pool)
    for n in (0, 10, 100_000):
        await bob.send("m", os.urandom(n))
        await alice.recv("m")
    await bob.send_checkpoint()
    await alice.recv_checkpoint()
    await alice.send("r", b"reply")
    await bob.recv("r")
    await alice.send_checkpoint()
    await bob.recv_checkpoint()
    await bob.send_checkpoint()  # an empty transcript is authenticated too
    await alice.recv_checkpoint()
    # Each end used every slot once: bob->alice 0 and 1, alice->bob 0.
    assert bob_pool.slots_used == alice_pool.slots_used == 3
    assert bob_pool.eps_auth == pytest.approx(3 * EPS_PER_CHECK)
    assert alice_pool.streams["ba"].low == 2 and bob_pool.streams["ba"].next == 2
    for pool in (alice_pool, bob_pool):
        assert stat.S_IMODE(pool.path.stat().st_mode) == 0o600


class _Tamper:
    """The channel between the ends, run by an adversary who also knows the HMAC key (the
    unbounded adversary the Wegman-Carter bound is about): it rewrites one frame."""

    def __init__(self, inner: MemoryTransport, change: bytes) -> None:
        self.inner = inner
        self.change = change
        self.done = False

    async def send_frame(self, frame: bytes) -> None:
        await self.inner.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        frame = await self.inner.recv_frame(timeout_s)
        if self.done or CHECKPOINT_KIND.encode() in frame[:40]:
            return frame
        self.done = True
        body = frame[:-32][: -len(self.change)] + self.change
        key = hmac.new(HMAC_KEY, b"labctl-qkd-auth/bob", hashlib.sha256).digest()
        return body + hmac.new(key, body, hashlib.sha256).digest()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_modified_message_with_a_valid_hmac_fails_the_checkpoint(tmp_path: Path) -> None:
    alice_pool, bob_pool = _pools(tmp_path)
    alice, bob, ta, _ = _pair(alice_pool, bob_pool)
    alice._transport = _Tamper(ta, b'"match": true}')
    await bob.send("verify/result", b'{"corrected": 3, "match": false}')
    # The per-message layer is broken (the adversary holds its key): the message passes...
    assert (await alice.recv("verify/result")).payload.endswith(b'"match": true}')
    await bob.send_checkpoint()
    # ...and the checkpoint catches it; the channel then refuses everything.
    with pytest.raises(AuthenticationError, match="Wegman-Carter checkpoint failed"):
        await alice.recv_checkpoint()
    with pytest.raises(AuthenticationError):
        await alice.recv("m")


async def test_a_replayed_checkpoint_is_refused(tmp_path: Path) -> None:
    alice_pool, bob_pool = _pools(tmp_path)
    alice_auth = TranscriptAuthenticator(alice_pool)
    bob_auth = TranscriptAuthenticator(bob_pool)
    bob_auth.on_send(b"block 1")
    first = bob_auth.checkpoint()
    alice_auth.on_receive(b"block 1")
    await alice_auth.check(first, 1.0)
    alice_auth.on_receive(b"block 1")  # the same transcript again, with the same tag
    with pytest.raises(AuthenticationError, match="already used"):
        await alice_auth.check(first, 1.0)


async def test_a_forged_tag_on_a_fresh_slot_is_refused(tmp_path: Path) -> None:
    alice_pool, _ = _pools(tmp_path)
    alice_auth = TranscriptAuthenticator(alice_pool)
    alice_auth.on_receive(b"whatever an adversary sends")
    forged = (0).to_bytes(8, "big") + os.urandom(16)
    with pytest.raises(AuthenticationError, match="checkpoint failed"):
        await alice_auth.check(forged, 1.0)


def _drain(pool: AuthPool, direction: str = "ba") -> None:
    stream = pool.streams[direction]  # type: ignore[index]
    stream.next = stream.end


async def test_a_dry_pool_stops_the_sender_and_a_refill_restarts_it(tmp_path: Path) -> None:
    alice_pool, bob_pool = _pools(tmp_path)
    alice, bob, _, _ = _pair(alice_pool, bob_pool, timeout_s=0.5)
    _drain(bob_pool)
    with pytest.raises(KeyPoolExhausted, match="ba exhausted"):
        await bob.send_checkpoint()
    # A refill at Bob only: Alice waits for hers, up to the timeout, then says so.
    material = os.urandom(2 * SLOT_BYTES)
    bob_pool.refill("k1", {"ab": 1, "ba": 1}, material)
    alice_pool.streams["ba"].low = bob_pool.streams["ba"].next  # Alice saw the same slots
    await bob.send_checkpoint()
    waiting = asyncio.create_task(alice.recv_checkpoint())
    await asyncio.sleep(0.1)
    assert not waiting.done()  # the slot is not in her pool yet
    alice_pool.refill("k1", {"ab": 1, "ba": 1}, material)
    await waiting
    await bob.send("m", b"x")
    await alice.recv("m")
    assert bob_pool.available("ba") == 0 and alice_pool.available("ba") == 0


async def test_a_receiver_without_the_slot_fails_after_the_timeout(tmp_path: Path) -> None:
    alice_pool, bob_pool = _pools(tmp_path)
    _, _, _, _ = _pair(alice_pool, bob_pool)
    auth = TranscriptAuthenticator(alice_pool)
    end = alice_pool.streams["ba"].end
    with pytest.raises(KeyPoolExhausted, match="exhausted or out of step"):
        await auth.check(end.to_bytes(8, "big") + bytes(16), 0.2)
    with pytest.raises(KeyPoolExhausted, match="far beyond"):
        await auth.check((end + 10**6).to_bytes(8, "big") + bytes(16), 0.2)


async def test_no_pad_slot_is_used_twice_across_restarts(tmp_path: Path) -> None:
    used: dict[str, list[tuple[int, bytes]]] = {"ab": [], "ba": []}

    def record(pool: AuthPool) -> None:
        original_take = pool.take

        def take(d):  # type: ignore[no-untyped-def]
            index, pad = original_take(d)
            used[d].append((index, pad))
            return index, pad

        pool.take = take  # type: ignore[method-assign]

    for session in range(3):
        # Open from the files (the first session seeds them), as a restarted node does.
        alice_pool, bob_pool = _pools(tmp_path)
        record(alice_pool)
        record(bob_pool)
        alice, bob, _, _ = _pair(alice_pool, bob_pool)
        for _ in range(3 + session):
            await bob.send("m", os.urandom(50))
            await alice.recv("m")
            await bob.send_checkpoint()
            await alice.recv_checkpoint()
            await alice.send_checkpoint()
            await bob.recv_checkpoint()
        if session == 1:
            material = os.urandom(4 * SLOT_BYTES)
            for pool in (alice_pool, bob_pool):
                pool.refill(f"key-{session}", {"ab": 2, "ba": 2}, material)
        # No orderly close: the pools are left as a killed process leaves its files.
    for d in ("ab", "ba"):
        slots = [i for i, _ in used[d]]
        pads = [p for _, p in used[d]]
        assert len(set(slots)) == len(slots) == 3 + 4 + 5
        assert len(set(pads)) == len(pads)  # every pad value used once
        # Each restart skips the slots reserved on disk (never reused, never filled again).
        assert slots[3] >= RESERVE_SLOTS and slots[7] >= slots[6] + 1
    assert stat.S_IMODE(pool_path(tmp_path / "keys-bob.sqlite").stat().st_mode) == 0o600


async def test_a_lost_key_stored_is_undone_at_the_next_session(tmp_path: Path) -> None:
    alice_pool, bob_pool = _pools(tmp_path)
    material = os.urandom(2 * SLOT_BYTES)
    bob_pool.refill("k-lost", {"ab": 1, "ba": 1}, material)  # Alice never heard key/stored
    assert bob_pool.refills == 1 and alice_pool.refills == 0
    alice_pool, bob_pool = _pools(tmp_path)
    assert bob_pool.refills == 0
    assert bob_pool.streams["ab"].end == alice_pool.streams["ab"].end
    later = os.urandom(2 * SLOT_BYTES)
    for pool in (alice_pool, bob_pool):
        pool.refill("k-next", {"ab": 1, "ba": 1}, later)
    _drain(bob_pool)
    alice_pool.streams["ba"].low = bob_pool.streams["ba"].next = bob_pool.streams["ba"].end - 1
    alice, bob, _, _ = _pair(alice_pool, bob_pool)
    await bob.send_checkpoint()  # on the slot both refilled from k-next
    await alice.recv_checkpoint()


def test_pools_of_different_keys_or_out_of_step_are_refused(tmp_path: Path) -> None:
    a = AuthPool.open(tmp_path / "a.authpool", "alice", os.urandom(MIN_PSK_BYTES))
    b = AuthPool.open(tmp_path / "b.authpool", "bob", os.urandom(MIN_PSK_BYTES))
    with pytest.raises(PoolStateError, match="different pre-shared keys"):
        a.begin_session(a.state(), b.state())
    with pytest.raises(PoolStateError, match=r"qkd\.auth"):
        a.begin_session(a.state(), {"mode": "hmac"})
    with pytest.raises(ValueError, match=f">= {MIN_PSK_BYTES}"):
        psk_parts(os.urandom(MIN_PSK_BYTES - 1))
    with pytest.raises(PoolStateError, match="before a session"):
        a.take("ab")


def test_a_pool_file_open_to_others_or_of_another_key_is_refused(tmp_path: Path) -> None:
    psk = os.urandom(MIN_PSK_BYTES)
    path = tmp_path / "keys-alice.authpool"
    AuthPool.open(path, "alice", psk)
    data = json.loads(path.read_text())
    assert psk[32:80].hex() not in json.dumps(data["streams"])  # the keys are not pads
    with pytest.raises(PoolStateError, match="another pre-shared key"):
        AuthPool.open(path, "alice", os.urandom(MIN_PSK_BYTES))
    path.chmod(0o644)
    with pytest.raises(PoolStateError, match="chmod 600"):
        AuthPool.open(path, "alice", psk)
    path.chmod(0o600)
    with pytest.raises(PoolStateError, match="missing while its peer's exists"):
        open_local_pair(tmp_path / "keys-alice.sqlite", tmp_path / "keys-bob.sqlite")


def test_a_pool_sealed_with_the_key_store_key_opens_only_with_it(tmp_path: Path) -> None:
    psk, key = os.urandom(MIN_PSK_BYTES), os.urandom(32)
    path = tmp_path / "keys-bob.authpool"
    sealed = AuthPool.open(path, "bob", psk, key)
    raw = path.read_bytes()
    assert raw.startswith(b"labctl-sealed-authpool/1\n")
    assert psk[32:] not in raw and psk[64:96].hex().encode() not in raw  # no seed in clear
    assert path.stat().st_mode & 0o777 == 0o600
    again = AuthPool.open(path, "bob", psk, key)
    assert again.keys["ab"].to_bytes() == sealed.keys["ab"].to_bytes()
    assert bytes(again.streams["ba"].data) == bytes(sealed.streams["ba"].data)
    with pytest.raises(PoolStateError, match=r"is sealed; set storage\.key_store_key_file"):
        AuthPool.open(path, "bob", psk)
    with pytest.raises(PoolStateError, match="does not open it"):
        AuthPool.open(path, "bob", psk, os.urandom(32))
    moved = tmp_path / "keys-alice.authpool"  # bound to its role: not Alice's pool
    moved.write_bytes(raw)
    moved.chmod(0o600)
    with pytest.raises(PoolStateError, match="does not open it"):
        AuthPool.open(moved, "alice", psk, key)
    clear = tmp_path / "clear.authpool"
    AuthPool.open(clear, "alice", psk)
    with pytest.raises(PoolStateError, match="in clear while a key store key is set"):
        AuthPool.open(clear, "alice", psk, key)


def test_the_main_job_seals_both_pools_with_the_store_key(tmp_path: Path) -> None:
    key = os.urandom(32)
    stores = (tmp_path / "keys-alice.sqlite", tmp_path / "keys-bob.sqlite")
    open_local_pair(*stores, key)
    for store in stores:
        assert pool_path(store).read_bytes().startswith(b"labctl-sealed-authpool/1\n")
    alice, bob = open_local_pair(*stores, key)  # the next run continues from the files
    assert alice.seed_id == bob.seed_id

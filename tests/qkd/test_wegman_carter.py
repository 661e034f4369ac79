"""Wegman-Carter tags: the polynomial hash, its universality bound, pads, pools and accounting."""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest

from labctl.qkd.auth.channel import AuthenticatedChannel, FrameStream, MemoryTransport
from labctl.qkd.auth.wegman_carter import (
    CHUNK_BYTES,
    MIN_PSK_BYTES,
    PAD_BYTES,
    PRIME,
    KeyPoolExhausted,
    WegmanCarterAuthenticator,
    WegmanCarterKeys,
    poly_hash,
    poly_hash_in,
)
from labctl.qkd.errors import AuthenticationError


def _closed_form(key: int, message: bytes) -> int:
    """sum_i c_i k^(L-i+1) mod p, chunk c_i = 0x01 || bytes, written independently."""
    pieces = [message[i : i + CHUNK_BYTES] for i in range(0, len(message), CHUNK_BYTES)] or [b""]
    coefficients = [int.from_bytes(b"\x01" + piece, "big") for piece in pieces]
    n = len(coefficients)
    return sum(c * pow(key, n - i, PRIME) for i, c in enumerate(coefficients)) % PRIME


@pytest.mark.parametrize("length", [0, 1, 14, 15, 16, 29, 30, 31, 1000])
def test_poly_hash_is_the_polynomial(length: int) -> None:
    key = int.from_bytes(os.urandom(16), "big") % (PRIME - 1) + 1
    message = os.urandom(length)
    digest, chunks = poly_hash(key, message)
    assert digest == _closed_form(key, message)
    assert chunks == max(1, -(-length // CHUNK_BYTES))


def test_encoding_separates_lengths_and_trailing_zeros() -> None:
    key = 0x1234567890ABCDEF1234567890ABCDE
    variants = [b"", b"\x00", b"\x00\x00", b"\x00" * 15, b"\x00" * 16, b"a", b"a\x00"]
    assert len({poly_hash(key, m)[0] for m in variants}) == len(variants)


@pytest.mark.parametrize(
    ("m1", "m2"), [(b"ab", b"ba"), (b"abc", b"ab"), (b"", b"\x00"), (b"hello", b"hellp")]
)
def test_almost_delta_universal_bound_holds_exhaustively_in_a_small_field(
    m1: bytes, m2: bytes
) -> None:
    """Over Z_65537 with 1-byte chunks, every difference d occurs for at most L keys."""
    prime = 65537
    counts: Counter[int] = Counter()
    chunks = 1
    for key in range(1, prime):
        h1, l1 = poly_hash_in(key, m1, prime, 1)
        h2, l2 = poly_hash_in(key, m2, prime, 1)
        counts[(h1 - h2) % prime] += 1
        chunks = max(l1, l2)
    assert max(counts.values()) <= chunks  # Pr[difference = d] <= L/(p-1)


def _keys() -> WegmanCarterKeys:
    return WegmanCarterKeys.from_psk(os.urandom(MIN_PSK_BYTES))


def _pair(keys: WegmanCarterKeys) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    ta, tb = MemoryTransport.pair()
    psk = b"k" * 32
    alice = AuthenticatedChannel(
        ta, psk, "alice", 2, authenticator=WegmanCarterAuthenticator(keys, "alice")
    )
    bob = AuthenticatedChannel(
        tb, psk, "bob", 2, authenticator=WegmanCarterAuthenticator(keys, "bob")
    )
    return alice, bob


async def test_a_wegman_carter_channel_round_trips_and_accounts_key_and_eps() -> None:
    keys = _keys()
    alice, bob = _pair(keys)
    sizes = [0, 10, 100, 5000]
    for n in sizes:
        await alice.send("m", bytes(n))
        await bob.recv("m")
    await bob.send("r", b"ok")
    assert (await alice.recv("r")).payload == b"ok"
    a_auth, b_auth = alice._auth, bob._auth
    assert isinstance(a_auth, WegmanCarterAuthenticator)
    assert isinstance(b_auth, WegmanCarterAuthenticator)
    assert a_auth.consumed_bytes == b_auth.consumed_bytes == PAD_BYTES * (len(sizes) + 1)
    body_bytes = [8 + 1 + 1 + n for n in sizes]  # seq, kind length, kind "m", payload
    chunks = sum(-(-b // CHUNK_BYTES) for b in body_bytes) + 1  # + the reply (1 chunk)
    assert a_auth.eps_auth == pytest.approx(chunks / (PRIME - 1), rel=1e-12)
    assert b_auth.eps_auth == pytest.approx(a_auth.eps_auth, rel=1e-12)
    assert "KeyPool(" in repr(a_auth) and keys.alice_to_bob_pad.hex()[:16] not in repr(a_auth)


@pytest.mark.parametrize("attack", ["flip_payload", "flip_tag", "replay", "truncate"])
async def test_forged_frames_are_rejected_and_close_the_channel(attack: str) -> None:
    keys = _keys()
    ta, tb = MemoryTransport.pair()
    alice = AuthenticatedChannel(
        ta, b"k" * 32, "alice", 2, authenticator=WegmanCarterAuthenticator(keys, "alice")
    )
    bob_auth = WegmanCarterAuthenticator(keys, "bob")
    sent: list[bytes] = []
    await alice.send("m", b"pay 10 units")
    sent.append(await tb.recv_frame(1))
    frame = bytearray(sent[0])
    if attack == "flip_payload":
        frame[12] ^= 0x01
    elif attack == "flip_tag":
        frame[-1] ^= 0x80
    elif attack == "truncate":
        frame = frame[:-1]
    bob = AuthenticatedChannel(_Once(bytes(frame), tb), b"k" * 32, "bob", 2, authenticator=bob_auth)
    if attack == "replay":
        assert (await bob.recv("m")).payload == b"pay 10 units"
        bob._transport = _Once(sent[0], tb)  # the same frame again
    with pytest.raises(AuthenticationError):
        await bob.recv("m")
    with pytest.raises(AuthenticationError):
        await bob.recv("m")  # failed for good


class _Once:
    """A transport that yields one given frame, then the inner transport's."""

    def __init__(self, frame: bytes, inner: MemoryTransport) -> None:
        self.frame: bytes | None = frame
        self.inner = inner

    async def send_frame(self, frame: bytes) -> None:
        await self.inner.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        if self.frame is not None:
            frame, self.frame = self.frame, None
            return frame
        return await self.inner.recv_frame(timeout_s)

    async def close(self) -> None:
        await self.inner.close()


async def test_an_empty_pool_stops_sending_until_refilled_from_generated_key() -> None:
    psk = os.urandom(32 + 2 * 2 * PAD_BYTES)  # two tags' worth of pad per direction
    with pytest.raises(ValueError, match=f">= {MIN_PSK_BYTES} bytes"):
        WegmanCarterKeys.from_psk(psk)
    keys = WegmanCarterKeys(
        alice_to_bob_key=3, bob_to_alice_key=5, alice_to_bob_pad=psk[32:64], bob_to_alice_pad=b""
    )
    alice, bob = _pair(keys)
    for i in range(2):
        await alice.send("m", bytes([i]))
        await bob.recv("m")
    with pytest.raises(KeyPoolExhausted, match="alice->bob exhausted"):
        await alice.send("m", b"x")
    generated = os.urandom(4 * PAD_BYTES)  # bits of a key both stores hold
    for channel in (alice, bob):
        auth = channel._auth
        assert isinstance(auth, WegmanCarterAuthenticator)
        auth.refill(generated[: 2 * PAD_BYTES], generated[2 * PAD_BYTES :])
    await alice.send("m", b"after refill")
    assert (await bob.recv("m")).payload == b"after refill"
    await bob.send("r", b"both ways")
    assert (await alice.recv("r")).payload == b"both ways"


async def test_wegman_carter_over_real_tcp() -> None:
    keys = _keys()
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[FrameStream] = loop.create_future()
    server = await loop.create_server(
        lambda: FrameStream(on_made=accepted.set_result), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    bob_t = await FrameStream.connect("127.0.0.1", port, 5)
    alice = AuthenticatedChannel(
        await accepted,
        b"k" * 32,
        "alice",
        5,
        authenticator=WegmanCarterAuthenticator(keys, "alice"),
    )
    bob = AuthenticatedChannel(
        bob_t, b"k" * 32, "bob", 5, authenticator=WegmanCarterAuthenticator(keys, "bob")
    )
    payload = os.urandom(100_000)
    await bob.send("block/start", payload)
    assert (await alice.recv("block/start")).payload == payload
    for ch in (alice, bob):
        await ch.close()
    server.close()


async def test_hmac_stays_the_default_and_the_two_do_not_interoperate() -> None:
    ta, tb = MemoryTransport.pair()
    alice = AuthenticatedChannel(ta, b"k" * 32, "alice", 1)
    assert "HmacAuthenticator" in repr(alice)
    bob = AuthenticatedChannel(
        tb, b"k" * 32, "bob", 1, authenticator=WegmanCarterAuthenticator(_keys(), "bob")
    )
    await alice.send("m", b"hmac-tagged")
    with pytest.raises(AuthenticationError, match="MAC check failed"):
        await bob.recv("m")

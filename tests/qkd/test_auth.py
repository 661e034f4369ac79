"""Authenticated channel: tampering, replay, reordering and reflection are rejected."""

import asyncio

import numpy as np
import pytest

from labctl.qkd.auth.channel import AuthenticatedChannel, MemoryTransport, memory_pair, tcp_pair
from labctl.qkd.cascade.link import run_bob, serve_alice
from labctl.qkd.cascade.schedule import CascadeSchedule, cached_shuffle
from labctl.qkd.errors import AuthenticationError, ChannelTimeout
from labctl.qkd.secret import SecretBits

PSK = bytes(range(32))


class _Tap:
    """A transport wrapper that records frames so a test can tamper with or replay them."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    async def send_frame(self, frame: bytes) -> None:
        self.sent.append(frame)
        await self.inner.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        return await self.inner.recv_frame(timeout_s)

    async def close(self) -> None:
        await self.inner.close()


async def test_messages_arrive_in_order_and_repr_hides_key() -> None:
    alice, bob = memory_pair(PSK, timeout_s=2)
    await alice.send("hello", b"one")
    await alice.send("hello", b"two")
    assert (await bob.recv("hello")).payload == b"one"
    assert (await bob.recv()).payload == b"two"
    assert PSK.hex() not in repr(alice) and "psk=<" in repr(alice)


@pytest.mark.parametrize("attack", ["tamper", "replay", "reorder", "reflect", "wrong_key"])
async def test_attacks_raise_and_close_the_channel(attack: str) -> None:
    ta, _ = MemoryTransport.pair()
    tap = _Tap(ta)
    alice = AuthenticatedChannel(tap, PSK, "alice", 2)
    await alice.send("m", b"first")
    await alice.send("m", b"second")
    first, second = tap.sent
    # Bob reads from a queue the attacker controls.
    wire: asyncio.Queue[bytes | None] = asyncio.Queue()
    role = "alice" if attack == "reflect" else "bob"
    key = bytes(32) if attack == "wrong_key" else PSK
    victim = AuthenticatedChannel(MemoryTransport(wire, asyncio.Queue()), key, role, 2)
    if attack == "tamper":
        forged = bytearray(second)
        forged[12] ^= 1
        frames = [first, bytes(forged)]
    elif attack == "replay":
        frames = [first, second, first]
    elif attack == "reorder":
        frames = [second, first]
    else:  # reflect (Alice receives her own frame) or wrong pre-shared key
        frames = [first]
    for frame in frames:
        await wire.put(frame)
    delivered = 0
    with pytest.raises(AuthenticationError):
        for _ in frames:
            await victim.recv()
            delivered += 1
    assert delivered == {"tamper": 1, "replay": 2}.get(attack, 0)
    assert victim.failed
    with pytest.raises(AuthenticationError, match="closed after"):
        await victim.recv()


async def test_timeout_is_typed() -> None:
    _, bob = memory_pair(PSK, timeout_s=0.05)
    with pytest.raises(ChannelTimeout):
        await bob.recv()


async def test_cascade_over_tcp_corrects_the_key() -> None:
    alice_ch, bob_ch, server = await tcp_pair(PSK, timeout_s=10)
    rng = np.random.default_rng(4)
    a = rng.integers(0, 2, 20_000, dtype=np.uint8)
    b = a ^ (rng.random(20_000) < 0.03).astype(np.uint8)
    sched = CascadeSchedule.create(20_000, 0.03, 11)
    try:
        served, outcome = await asyncio.gather(
            serve_alice(alice_ch, SecretBits(a), sched), run_bob(bob_ch, SecretBits(b), sched)
        )
    finally:
        await alice_ch.close()
        await bob_ch.close()
        server.close()
        await server.wait_closed()
    assert outcome.key == SecretBits(a)
    assert served == outcome.stats.round_trips
    # The block's public shuffles are not kept after it: its seed never comes again.
    kept = [cached_shuffle(sched, j) for j in range(sched.passes)]
    assert all(order is None and position is None for order, position in kept)


async def test_tampering_on_tcp_stops_the_protocol() -> None:
    """A man in the middle flips one bit of a TCP frame: Bob gets AuthenticationError."""
    alice_ch, bob_ch, server = await tcp_pair(PSK, timeout_s=5)

    # Re-route: Alice's raw transport writes a forged frame directly on the socket.
    transport = alice_ch._transport
    body = b"\x00" * 8 + b"\x01m" + b"payload"
    await transport.send_frame(body + b"\x00" * 32)
    with pytest.raises(AuthenticationError, match="MAC"):
        await bob_ch.recv()
    await alice_ch.close()
    await bob_ch.close()
    server.close()
    await server.wait_closed()

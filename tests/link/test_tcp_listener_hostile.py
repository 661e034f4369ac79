"""Alice's listener against whoever reaches her port: only the offender's connection goes.

Every test ends with a real Bob (connect_channels) pairing up after the attack, so "the
listener survived" is checked by the link working, not by the absence of an exception.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from labctl.link.tcp_links import (
    HANDSHAKE_MAX_FRAME_BYTES,
    FrameStream,
    WorkerCountMismatch,
    accept_channels,
    connect_channels,
    worker_psk,
)
from labctl.qkd.auth.channel import AuthenticatedChannel
from labctl.qkd.auth.transcript import MIN_PSK_BYTES, AuthPool, PoolStateError, psk_parts
from labctl.qkd.errors import ChannelTimeout, QkdError

Attack = Callable[[int], Awaitable[None]]


class Listener:
    """accept_channels in a task, with its port and the rejections it reported."""

    def __init__(self, workers: int = 1, **options: float) -> None:
        self.psk = os.urandom(32)
        self.workers = workers
        self.rejected: list[tuple[str, str]] = []
        self._port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(
            accept_channels(
                "127.0.0.1",
                0,
                workers,
                self.psk,
                10.0,
                lambda h, p: self._port.set_result(p),
                on_rejected=lambda peer, why: self.rejected.append((peer, why)),
                **options,  # type: ignore[arg-type]
            )
        )

    async def port(self) -> int:
        return await self._port

    async def wait_rejections(self, n: int, within_s: float = 5.0) -> None:
        deadline = time.monotonic() + within_s
        while len(self.rejected) < n:
            assert time.monotonic() < deadline, f"rejections so far: {self.rejected}"
            await asyncio.sleep(0.01)

    async def bob_pairs_up(self) -> None:
        """A genuine Bob still gets every channel, and a message goes both ways."""
        bobs = await connect_channels("127.0.0.1", await self.port(), self.workers, self.psk, 5.0)
        alices = await asyncio.wait_for(self.task, 5.0)
        for alice, bob in zip(alices, bobs, strict=True):
            await bob.send("ping", b"1")
            assert (await alice.recv(expect="ping", timeout_s=5.0)).payload == b"1"
            await alice.send("pong", b"2")
            assert (await bob.recv(expect="pong", timeout_s=5.0)).payload == b"2"
        for ch in (*alices, *bobs):
            await ch.close()


async def _raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _port_scan(port: int) -> None:
    _, writer = await _raw(port)
    writer.close()


async def _garbage(port: int) -> None:
    _, writer = await _raw(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: alice\r\n\r\n" + os.urandom(3000))
    await writer.drain()


async def _oversized_prefix(port: int) -> None:
    _, writer = await _raw(port)
    writer.write(struct.pack(">I", 0xFFFFFFF0))
    await writer.drain()


async def _truncated_frame(port: int) -> None:
    _, writer = await _raw(port)
    writer.write(struct.pack(">I", 500) + b"link/worker/0" + b"x" * 20)
    await writer.drain()
    writer.close()


async def _wrong_key_hello(port: int) -> None:
    """A Bob with another key: his hello fails the MAC, Alice hangs up on him only."""
    with pytest.raises(WorkerCountMismatch, match="pre-shared key"):
        await connect_channels("127.0.0.1", port, 1, os.urandom(32), 5.0)


ATTACKS: dict[str, tuple[Attack, str]] = {
    "port scan": (_port_scan, "closed"),
    "garbage": (_garbage, "exceeds the limit"),
    "oversized length prefix": (_oversized_prefix, "exceeds the limit"),
    "truncated frame": (_truncated_frame, "closed"),
    "wrong pre-shared key": (_wrong_key_hello, "MAC check failed"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_a_hostile_connection_is_closed_and_bob_still_pairs(name: str) -> None:
    attack, reason = ATTACKS[name]
    listener = Listener(workers=2)
    await attack(await listener.port())
    await listener.wait_rejections(1)
    peer, why = listener.rejected[0]
    assert peer.startswith("127.0.0.1:") and reason in why, listener.rejected
    assert not listener.task.done()
    await listener.bob_pairs_up()


async def test_an_idle_connection_is_dropped_after_the_handshake_timeout() -> None:
    listener = Listener(handshake_timeout_s=0.3)
    reader, writer = await _raw(await listener.port())
    t0 = time.monotonic()
    await listener.wait_rejections(1)
    assert "no hello within 0.3 s" in listener.rejected[0][1]
    assert 0.25 < time.monotonic() - t0 < 3.0
    # Alice's side closed it: the reader sees the challenge, then the end.
    data = await asyncio.wait_for(reader.read(), 5.0)
    assert data.startswith(struct.pack(">I", len(data) - 4))
    writer.close()
    await listener.bob_pairs_up()


async def test_a_replayed_hello_from_another_session_does_not_verify() -> None:
    """A hello recorded on one connection carries that connection's challenge only."""
    listener = Listener()
    port = await listener.port()
    loop = asyncio.get_running_loop()
    _, stream = await loop.create_connection(FrameStream, "127.0.0.1", port)
    challenge = await stream.recv_frame(5.0)
    assert challenge.startswith(b"link/challenge:")
    # An authentic hello, but for an old challenge (what an eavesdropper could replay).
    old = AuthenticatedChannel(stream, worker_psk(listener.psk, 0), "bob", 5.0)
    await old.send("link/worker/0", b'{"workers": 1, "challenge": "' + b"00" * 16 + b'"}')
    await listener.wait_rejections(1)
    assert "replay" in listener.rejected[0][1]
    await listener.bob_pairs_up()


async def test_many_concurrent_connections_are_bounded_and_bob_gets_through() -> None:
    listener = Listener(max_pending=8, handshake_timeout_s=30.0)
    port = await listener.port()
    idle = [await _raw(port) for _ in range(40)]  # hold every slot, then some
    await listener.wait_rejections(40 - 8)
    assert all("more than 8 connections" in why for _, why in listener.rejected)
    await listener.bob_pairs_up()  # Bob's connection pushes out the oldest idle one
    for _, writer in idle:
        writer.close()


async def test_a_frame_larger_than_a_hello_is_refused_before_authentication() -> None:
    listener = Listener()
    _, writer = await _raw(await listener.port())
    writer.write(struct.pack(">I", HANDSHAKE_MAX_FRAME_BYTES + 1))
    await writer.drain()
    await listener.wait_rejections(1)
    assert f"({HANDSHAKE_MAX_FRAME_BYTES})" in listener.rejected[0][1]
    await listener.bob_pairs_up()


async def test_no_bob_at_all_times_out_naming_the_channels() -> None:
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    with pytest.raises(ChannelTimeout, match="0 of 2 worker channels authenticated within"):
        await accept_channels(
            "127.0.0.1", 0, 2, os.urandom(32), 0.3, lambda h, p: port.set_result(p)
        )
    # The port is released.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", await port)) != 0


@pytest.mark.parametrize("name", ["garbage", "wrong pre-shared key", "truncated frame"])
async def test_with_wegman_carter_an_attack_leaves_the_pool_alone(
    name: str, tmp_path: Path
) -> None:
    """A stranger never starts Alice's pool session nor uses a pad; Bob then pairs up, and
    checkpoints pass both ways on every worker channel over TCP."""
    psk = os.urandom(MIN_PSK_BYTES)
    link_key, _ = psk_parts(psk)
    alice_pool = AuthPool.open(tmp_path / "keys-alice.authpool", "alice", psk)
    bob_pool = AuthPool.open(tmp_path / "keys-bob.authpool", "bob", psk)
    rejected = asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        accept_channels(
            "127.0.0.1",
            0,
            2,
            link_key,
            10.0,
            lambda h, p: port.set_result(p),
            on_rejected=lambda peer, why: rejected.set(),
            pool=alice_pool,
        )
    )
    attack, _ = ATTACKS[name]
    await attack(await port)
    await asyncio.wait_for(rejected.wait(), 5.0)
    assert not task.done() and alice_pool.slots_used == 0
    with pytest.raises(PoolStateError, match="before a session"):
        alice_pool.take("ab")
    bobs = await connect_channels("127.0.0.1", await port, 2, link_key, 5.0, pool=bob_pool)
    alices = await asyncio.wait_for(task, 5.0)
    for alice, bob in zip(alices, bobs, strict=True):
        await bob.send("ping", os.urandom(1000))
        await alice.recv(expect="ping", timeout_s=5.0)
        await bob.send_checkpoint()
        await alice.recv_checkpoint(5.0)
        await alice.send_checkpoint()
        await bob.recv_checkpoint(5.0)
    assert alice_pool.slots_used == bob_pool.slots_used == 4
    for ch in (*alices, *bobs):
        await ch.close()


async def test_a_bob_without_a_pool_is_refused_naming_qkd_auth(tmp_path: Path) -> None:
    psk = os.urandom(MIN_PSK_BYTES)
    link_key, _ = psk_parts(psk)
    alice_pool = AuthPool.open(tmp_path / "keys-alice.authpool", "alice", psk)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        accept_channels(
            "127.0.0.1", 0, 1, link_key, 10.0, lambda h, p: port.set_result(p), pool=alice_pool
        )
    )
    with pytest.raises(QkdError):
        await connect_channels("127.0.0.1", await port, 1, link_key, 5.0)
    with pytest.raises(PoolStateError, match=r"qkd\.auth"):
        await asyncio.wait_for(task, 5.0)

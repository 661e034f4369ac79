"""W authenticated TCP channels, one per worker, each under its own derived key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os

import pytest

from experiments.keygen.tcp_links import accept_channels, connect_channels, worker_psk
from labctl.qkd.errors import AuthenticationError


def test_worker_keys_are_hmac_of_the_index_and_all_distinct() -> None:
    psk = bytes(range(32))
    keys = [worker_psk(psk, w) for w in range(4)]
    assert len(set(keys)) == 4
    expected = hmac.new(psk, b"labctl keygen worker channel 2", hashlib.sha256).digest()
    assert keys[2] == expected
    with pytest.raises(ValueError):
        worker_psk(psk, -1)


async def test_channels_pair_up_by_worker_index() -> None:
    psk = os.urandom(32)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    alice_task = asyncio.create_task(
        accept_channels("127.0.0.1", 0, 3, psk, 10.0, lambda h, p: port.set_result(p))
    )
    bobs = await connect_channels("127.0.0.1", await port, 3, psk, 10.0)
    alices = await alice_task
    for w, bob in enumerate(bobs):
        await bob.send("hello", f"worker {w}".encode())
    for w, alice in enumerate(alices):
        message = await alice.recv(expect="hello", timeout_s=5.0)
        assert message.payload == f"worker {w}".encode()
        await alice.send("reply", bytes([w]))
    for w, bob in enumerate(bobs):
        assert (await bob.recv(expect="reply", timeout_s=5.0)).payload == bytes([w])
    for ch in (*alices, *bobs):
        await ch.close()


async def test_a_frame_of_one_worker_does_not_verify_on_another() -> None:
    psk = os.urandom(32)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    alice_task = asyncio.create_task(
        accept_channels("127.0.0.1", 0, 2, psk, 10.0, lambda h, p: port.set_result(p))
    )
    bobs = await connect_channels("127.0.0.1", await port, 2, psk, 10.0)
    alices = await alice_task
    # Capture worker 0's next frame (same sequence number as worker 1's next) and deliver
    # it on worker 1's connection.
    sent: list[bytes] = []
    transport0 = bobs[0]._transport

    class Tap:
        async def send_frame(self, frame: bytes) -> None:
            sent.append(frame)

    bobs[0]._transport = Tap()  # type: ignore[assignment]
    await bobs[0].send("hello", b"for worker 0")
    await bobs[1]._transport.send_frame(sent[0])
    with pytest.raises(AuthenticationError):
        await alices[1].recv(timeout_s=5.0)
    bobs[0]._transport = transport0
    for ch in (*alices, *bobs):
        await ch.close()


async def test_a_first_message_naming_no_worker_is_refused() -> None:
    from labctl.qkd.auth import AuthenticatedChannel, TcpTransport
    from labctl.qkd.errors import MessageFormatError

    psk = os.urandom(32)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    alice_task = asyncio.create_task(
        accept_channels("127.0.0.1", 0, 1, psk, 10.0, lambda h, p: port.set_result(p))
    )
    transport = await TcpTransport.connect("127.0.0.1", await port, 10.0)
    channel = AuthenticatedChannel(transport, worker_psk(psk, 0), "bob", 10.0)
    await channel.send("link/worker/7", b"")
    with pytest.raises(MessageFormatError):
        await alice_task
    await channel.close()

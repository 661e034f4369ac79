"""W authenticated TCP channels, one per worker, each under its own derived key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import struct

import pytest

from labctl.link.tcp_links import (
    FrameStream,
    SingleChannelGuard,
    WorkerCountMismatch,
    accept_channels,
    connect_channels,
    worker_psk,
)
from labctl.qkd.auth.channel import MAX_FRAME_BYTES, AuthenticatedChannel
from labctl.qkd.errors import (
    AuthenticationError,
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
)


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


# ---------------------------------------------------------------- FrameStream


async def _stream_pair() -> tuple[FrameStream, FrameStream, asyncio.Server]:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[FrameStream] = loop.create_future()

    def factory() -> FrameStream:
        stream = FrameStream()
        accepted.set_result(stream)
        return stream

    server = await loop.create_server(factory, "127.0.0.1", 0)
    client = await FrameStream.connect("127.0.0.1", server.sockets[0].getsockname()[1], 5.0)
    return await accepted, client, server


async def test_frames_of_every_size_arrive_whole_and_in_order() -> None:
    server_side, client, server = await _stream_pair()
    sizes = [0, 1, 3, 4, 5, 65_536, 3_000_001, 7]  # a big one fills the socket buffer
    frames = [os.urandom(n) for n in sizes]
    sending = asyncio.gather(*(client.send_frame(f) for f in frames))
    got = [await server_side.recv_frame(5.0) for _ in frames]
    await sending
    assert got == frames
    await client.close()
    with pytest.raises(ChannelClosed):
        await server_side.recv_frame(5.0)
    server.close()


async def test_a_large_frame_is_buffered_a_piece_at_a_time() -> None:
    server_side, client, server = await _stream_pair()
    transport = client._transport
    assert transport is not None
    buffered: list[int] = []
    write = transport.write

    def write_and_measure(data: bytes | bytearray | memoryview) -> None:
        write(data)
        buffered.append(transport.get_write_buffer_size())

    transport.write = write_and_measure  # type: ignore[method-assign]
    frame = os.urandom(24 << 20)
    sending = asyncio.create_task(client.send_frame(frame))
    assert await server_side.recv_frame(30.0) == frame
    await sending
    # The socket buffer holds at most about one 1 MiB piece, never the 24 MiB frame.
    assert len(buffered) >= 24 and max(buffered) <= (1 << 20) + (64 << 10)
    await client.close()
    server.close()


async def test_recv_times_out_and_the_stream_stays_usable() -> None:
    server_side, client, server = await _stream_pair()
    with pytest.raises(ChannelTimeout):
        await server_side.recv_frame(0.05)
    await client.send_frame(b"late")
    assert await server_side.recv_frame(5.0) == b"late"
    await client.close()
    server.close()


async def test_the_wire_format_is_a_big_endian_length_then_the_frame() -> None:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[FrameStream] = loop.create_future()

    def factory() -> FrameStream:
        stream = FrameStream()
        accepted.set_result(stream)
        return stream

    server = await loop.create_server(factory, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    stream = await accepted
    writer.write(struct.pack(">I", 10) + b"from a raw")
    await writer.drain()
    assert await stream.recv_frame(5.0) == b"from a raw"
    await stream.send_frame(b"from FrameStream")
    assert await reader.readexactly(4 + 16) == struct.pack(">I", 16) + b"from FrameStream"
    writer.close()
    server.close()


async def test_an_oversized_length_prefix_is_refused() -> None:
    server_side, client, server = await _stream_pair()
    assert client._transport is not None
    client._transport.write(struct.pack(">I", MAX_FRAME_BYTES + 1))
    with pytest.raises(ChannelError, match="exceeds the limit"):
        await server_side.recv_frame(5.0)
    with pytest.raises(ChannelError):
        await server_side.send_frame(b"x" * (MAX_FRAME_BYTES + 1))
    await client.close()
    server.close()


# ---------------------------------------------------------------- worker counts


async def _mismatch(alice_workers: int, bob_workers: int) -> tuple[BaseException, BaseException]:
    psk = os.urandom(32)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    alice_task = asyncio.create_task(
        accept_channels("127.0.0.1", 0, alice_workers, psk, 5.0, lambda h, p: port.set_result(p))
    )
    with pytest.raises(WorkerCountMismatch) as bob_error:
        await connect_channels("127.0.0.1", await port, bob_workers, psk, 5.0)
    with pytest.raises(WorkerCountMismatch) as alice_error:
        await alice_task
    return alice_error.value, bob_error.value


@pytest.mark.parametrize(("alice_workers", "bob_workers"), [(2, 3), (3, 2)])
async def test_different_worker_counts_fail_at_connect_on_both_sides(
    alice_workers: int, bob_workers: int
) -> None:
    alice_error, bob_error = await _mismatch(alice_workers, bob_workers)
    assert str(alice_error) == (
        f"Bob runs --workers {bob_workers}, this Alice --workers {alice_workers}"
    )
    # Alice hangs up on the first channel; Bob names the option and his own count.
    assert "--workers" in str(bob_error) and f"this Bob: {bob_workers}" in str(bob_error)


async def test_a_worker_hello_on_a_single_channel_is_named() -> None:
    server_side, client, server = await _stream_pair()
    alice = AuthenticatedChannel(SingleChannelGuard(server_side, "Bob"), b"k" * 32, "alice", 5.0)
    bob = AuthenticatedChannel(client, worker_psk(b"k" * 32, 0), "bob", 5.0)
    await bob.send("link/worker/0", b'{"workers": 2}')
    with pytest.raises(WorkerCountMismatch, match="runs --workers > 1, this node --workers 1"):
        await alice.recv(timeout_s=5.0)
    with pytest.raises(ChannelClosed):
        await bob.recv(timeout_s=5.0)
    server.close()


async def test_a_single_channel_keeps_the_plain_error_once_the_peer_spoke() -> None:
    server_side, client, server = await _stream_pair()
    guarded = SingleChannelGuard(server_side, "Bob")
    await client.send_frame(b"x" * 16)
    assert await guarded.recv_frame(5.0) == b"x" * 16
    await client.close()
    with pytest.raises(ChannelClosed) as closed:
        await guarded.recv_frame(5.0)
    assert "--workers" not in str(closed.value)
    server.close()

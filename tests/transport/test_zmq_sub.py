"""ZmqSubscriber against real PUB and PUSH sockets."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio

from labctl.interfaces.errors import ConfigError, ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport import ZmqSubscriber, check_zmq_address, make_subscriber


def _bound(kind: int) -> tuple[zmq.asyncio.Socket, str]:
    sock = zmq.asyncio.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    return sock, f"tcp://127.0.0.1:{port}"


async def test_sub_receives_binary_tag_frames_with_topic() -> None:
    pub, address = _bound(zmq.PUB)
    times_ps = np.arange(0, 1000, 7, dtype=np.int64)
    try:
        async with ZmqSubscriber(address, instrument="tagger", topics=(b"tags",)) as sub:
            # A SUB joins late (ZMQ's slow joiner): publish until the first message lands.
            frames: list[bytes] | None = None
            for _ in range(100):
                await pub.send_multipart([b"other", b"ignored"])
                await pub.send_multipart([b"tags", times_ps.tobytes()])
                try:
                    frames = await sub.recv_multipart(timeout_s=0.05)
                    break
                except InstrumentTimeout:
                    continue
            assert frames is not None
            assert frames[0] == b"tags"
            assert np.array_equal(np.frombuffer(frames[1], dtype=np.int64), times_ps)
            with pytest.raises(ProtocolError, match="recv_multipart"):
                await pub.send_multipart([b"tags", b"x"])
                await sub.recv(timeout_s=1.0)
    finally:
        pub.close(linger=0)


async def test_pull_recv_times_out_in_budget_and_loop_keeps_running() -> None:
    push, address = _bound(zmq.PUSH)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    try:
        async with ZmqSubscriber(address, instrument="tagger", pattern="pull", rcvhwm=10) as sub:
            await push.send(b"first")
            assert await sub.recv(timeout_s=1.0) == b"first"
            ticking = asyncio.create_task(ticker())
            started = time.monotonic()
            with pytest.raises(InstrumentTimeout, match=address) as caught:
                await sub.recv(timeout_s=0.5)
            elapsed_s = time.monotonic() - started
            ticking.cancel()
            assert 0.49 <= elapsed_s <= 0.55, elapsed_s
            assert ticks >= 30
            assert caught.value.instrument == "tagger"
    finally:
        push.close(linger=0)


async def test_oversize_message_is_protocol_error() -> None:
    push, address = _bound(zmq.PUSH)
    try:
        async with ZmqSubscriber(
            address, instrument="tagger", pattern="pull", max_message_bytes=100
        ) as sub:
            await push.send(b"z" * 101)
            with pytest.raises(ProtocolError, match="max_message_bytes=100"):
                await sub.recv(timeout_s=1.0)
    finally:
        push.close(linger=0)


async def test_recv_when_closed_is_connection_lost_and_reopen_works() -> None:
    push, address = _bound(zmq.PUSH)
    sub = ZmqSubscriber(address, instrument="tagger", pattern="pull")
    try:
        with pytest.raises(ConnectionLost, match="not open"):
            await sub.recv()
        await sub.open()
        await sub.close()
        assert not sub.is_open
        with pytest.raises(ConnectionLost):
            await sub.recv()
        await sub.open()
        # Until PUSH notices the old connection is gone it may route a message down it.
        received = None
        for _ in range(100):
            await push.send(b"again")
            try:
                received = await sub.recv(timeout_s=0.05)
                break
            except InstrumentTimeout:
                continue
        assert received == b"again"
    finally:
        await sub.close()
        push.close(linger=0)


def test_bad_arguments_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="pattern must be 'sub' or 'pull'"):
        ZmqSubscriber("tcp://127.0.0.1:5556", instrument="t", pattern="pair")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rcvhwm"):
        ZmqSubscriber("tcp://127.0.0.1:5556", instrument="t", rcvhwm=-1)
    with pytest.raises(ValueError, match="expected tcp://host:port"):
        check_zmq_address("127.0.0.1:5556")
    with pytest.raises(ConfigError) as caught:
        make_subscriber("tcp://127.0.0.1", instrument="tagger")
    assert str(caught.value) == (
        "instruments.tagger.transport.options.stream_address: instrument 'tagger': bad zmq "
        "address 'tcp://127.0.0.1': expected host:port, got '127.0.0.1'"
    )

"""ZmqTransport (REQ) against a real REP socket served on the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import zmq
import zmq.asyncio

from labctl.interfaces.build import TransportSpec
from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport import ZmqTransport, make_transport

LATE_REPLY_DELAY_S = 0.6


async def _serve_rep(sock: zmq.asyncio.Socket) -> None:
    """``*IDN?`` -> identity; ``LATE`` -> a reply after 0.6 s; ``BIG`` -> 10 kB; else echo."""
    while True:
        request = await sock.recv()
        if request == b"*IDN?":
            await sock.send(b"ID Quantique,ID1000,0,1.0")
        elif request == b"LATE":
            await asyncio.sleep(LATE_REPLY_DELAY_S)
            await sock.send(b"late reply")
        elif request == b"BIG":
            await sock.send(b"y" * 10_000)
        else:
            await sock.send(b"echo:" + request)


@pytest.fixture
async def rep_address() -> AsyncIterator[str]:
    """Address of a REP socket answering on this loop."""
    sock = zmq.asyncio.Context.instance().socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    serving = asyncio.create_task(_serve_rep(sock))
    try:
        yield f"tcp://127.0.0.1:{port}"
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        sock.close(linger=0)


def _req(address: str, timeout_s: float = 1.0, **options: object) -> ZmqTransport:
    spec = TransportSpec(kind="zmq", address=address, timeout_s=timeout_s, options=dict(options))
    link = make_transport(spec, instrument="tagger")
    assert isinstance(link, ZmqTransport)
    return link


async def test_query_returns_reply_message(rep_address: str) -> None:
    link = _req(rep_address)
    await link.open()
    try:
        assert await link.query(b"*IDN?", command="*IDN?") == b"ID Quantique,ID1000,0,1.0"
        # write + read_until on the same socket: one request, its reply read as bytes.
        async with link.transaction():
            await link.write(b"A,B")
            assert await link.read_until(b",") == b"echo:A"
            assert await link.read_exact(1) == b"B"
    finally:
        await link.close()


async def test_timeout_in_budget_then_next_query_gets_its_own_reply(rep_address: str) -> None:
    timeout_s = 0.3
    link = _req(rep_address, timeout_s=timeout_s)
    await link.open()
    try:
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout) as caught:
            await link.query(b"LATE", command="LATE")
        elapsed_s = time.monotonic() - started
        assert timeout_s * 0.98 <= elapsed_s <= timeout_s * 1.1, elapsed_s
        assert caught.value.command == "LATE"
        assert rep_address in str(caught.value)
        # The REP peer is still busy with LATE; its late reply must not be taken for ours.
        reply = await link.query(b"*IDN?", timeout_s=LATE_REPLY_DELAY_S + 1.0)
        assert reply == b"ID Quantique,ID1000,0,1.0"
    finally:
        await link.close()


async def test_concurrent_queries_each_get_their_reply(rep_address: str) -> None:
    link = _req(rep_address)
    await link.open()
    try:
        payloads = [f"q{i}".encode() for i in range(20)]
        replies = await asyncio.gather(*(link.query(p) for p in payloads))
    finally:
        await link.close()
    assert replies == [b"echo:" + p for p in payloads]


async def test_oversize_reply_is_protocol_error(rep_address: str) -> None:
    link = _req(rep_address, max_reply_bytes=1000)
    await link.open()
    try:
        with pytest.raises(ProtocolError, match="10000-byte message") as caught:
            await link.query(b"BIG", command="BIG")
        assert caught.value.command == "BIG"
        assert await link.query(b"ok") == b"echo:ok"
    finally:
        await link.close()


async def test_query_before_open_and_after_close_is_connection_lost(rep_address: str) -> None:
    link = _req(rep_address)
    with pytest.raises(ConnectionLost, match="not open"):
        await link.query(b"*IDN?")
    await link.open()
    await link.close()
    await link.close()
    with pytest.raises(ConnectionLost, match="not open"):
        await link.query(b"*IDN?")

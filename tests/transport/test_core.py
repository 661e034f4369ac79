"""Behaviour every byte-stream transport shares, checked for TCP, serial socket:// and VISA.

Each test talks to the real line server of conftest.py through a real socket.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import pytest

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport import Transport

TransportFactory = Callable[..., Transport]


async def test_query_round_trip_strips_terminator(stream_transport: TransportFactory) -> None:
    link = stream_transport()
    await link.open()
    try:
        assert link.is_open
        assert await link.query(b"ECHO hello\n", command="ECHO") == b"HELLO"
        assert await link.query(b"CRLF\n", terminator=b"\r\n") == b"crlf"
        assert isinstance(link, Transport)
    finally:
        await link.close()


async def test_read_exact_returns_binary_block_with_newlines(
    stream_transport: TransportFactory,
) -> None:
    link = stream_transport()
    await link.open()
    try:
        await link.write(b"BIN 1000\n")
        block = await link.read_exact(1000, command="BIN")
        assert block == bytes(i % 256 for i in range(1000))
        # The link is still in step: the next exchange gets its own reply.
        assert await link.query(b"ECHO after\n") == b"AFTER"
    finally:
        await link.close()


async def test_silent_peer_times_out_within_budget_plus_ten_percent(
    stream_transport: TransportFactory,
) -> None:
    # 1 s, so the +10 % budget (100 ms) is well above scheduling jitter on a loaded CI box.
    timeout_s = 1.0
    link = stream_transport(timeout_s=timeout_s)
    await link.open()
    try:
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout) as caught:
            await link.query(b"SILENT\n", command="SILENT")
        elapsed_s = time.monotonic() - started
        assert timeout_s * 0.98 <= elapsed_s <= timeout_s * 1.1, elapsed_s
        assert str(caught.value) == (
            f"{link.instrument} [SILENT]: timeout: no reply from {link.resource} within 1 s"
        )
        # A timeout is not a broken link: the next command works.
        assert link.is_open
        assert await link.query(b"ECHO again\n") == b"AGAIN"
    finally:
        await link.close()


async def test_event_loop_keeps_ticking_while_waiting_for_silent_peer(
    stream_transport: TransportFactory,
) -> None:
    tick_s = 0.01
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(tick_s)

    link = stream_transport(timeout_s=1.0)
    await link.open()
    ticking = asyncio.create_task(ticker())
    try:
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout):
            await link.query(b"SILENT\n", timeout_s=1.0)
        elapsed_s = time.monotonic() - started
    finally:
        ticking.cancel()
        await link.close()
    during = [t for t in ticks if started <= t <= started + elapsed_s]
    gaps = [b - a for a, b in itertools.pairwise(during)]
    # A blocked loop would show one tick and a 1 s gap; a free one ~100 ticks 10 ms apart
    # (a busy shared CI core may delay a few of them, hence the slack).
    assert len(during) >= 0.6 * elapsed_s / tick_s, len(during)
    assert max(gaps) < 0.25, max(gaps)


async def test_peer_closing_mid_reply_raises_connection_lost_then_reopens(
    stream_transport: TransportFactory,
) -> None:
    link = stream_transport()
    await link.open()
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionLost) as caught:
            await link.query(b"DROP\n", command="DROP")
        # Detected from the closed socket, not by waiting out the timeout.
        assert time.monotonic() - started < 0.5 * link.timeout_s
        assert caught.value.command == "DROP"
        assert not link.is_open
        with pytest.raises(ConnectionLost, match="not open"):
            await link.query(b"ECHO x\n")
        await link.open()
        assert link.is_open
        assert await link.query(b"ECHO back\n") == b"BACK"
    finally:
        await link.close()
        await link.close()  # idempotent
    assert not link.is_open


async def test_concurrent_queries_never_interleave(stream_transport: TransportFactory) -> None:
    link = stream_transport(timeout_s=5.0)
    await link.open()

    async def worker(worker_id: int) -> list[bytes]:
        replies = []
        for i in range(4):
            tag = f"{worker_id}.{i}"
            replies.append(await link.query(f"SLOW {tag}\n".encode(), command=tag))
        return replies

    try:
        results = await asyncio.gather(*(worker(w) for w in range(6)))
    finally:
        await link.close()
    for worker_id, replies in enumerate(results):
        assert replies == [f"r{worker_id}.{i}-{worker_id}.{i}".encode() for i in range(4)]


async def test_transaction_holds_the_lock_across_write_and_read(
    stream_transport: TransportFactory,
) -> None:
    link = stream_transport()
    await link.open()
    order: list[str] = []

    async def exchange(name: str) -> None:
        async with link.transaction():
            await link.write(f"SLOW {name}\n".encode())
            await asyncio.sleep(0.02)  # another task gets the loop but not the link
            order.append(name)
            assert await link.read_until(b"\n") == f"r{name}-{name}".encode()

    try:
        await asyncio.gather(exchange("a"), exchange("b"), exchange("c"))
    finally:
        await link.close()
    assert sorted(order) == ["a", "b", "c"]


async def test_unterminated_flood_raises_protocol_error(
    stream_transport: TransportFactory,
) -> None:
    link = stream_transport(timeout_s=2.0, max_reply_bytes=4096)
    await link.open()
    try:
        with pytest.raises(ProtocolError, match="max_reply_bytes=4096") as caught:
            await link.query(b"FLOOD\n", command="FLOOD")
        assert caught.value.command == "FLOOD"
        with pytest.raises(ProtocolError, match="max_reply_bytes=4096"):
            await link.read_exact(5000)
    finally:
        await link.close()


async def test_open_refused_raises_connection_lost_naming_the_resource(
    refused_transport: TransportFactory,
) -> None:
    link = refused_transport(timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ConnectionLost) as caught:
        await link.open()
    assert time.monotonic() - started < 1.1
    assert caught.value.command == "open"
    assert link.resource in str(caught.value)
    assert not link.is_open
    await link.close()


async def test_open_to_a_peer_that_never_accepts_times_out_in_budget(
    stalled_transport: TransportFactory,
) -> None:
    link = stalled_transport(timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(InstrumentTimeout, match="could not open") as caught:
        await link.open()
    elapsed_s = time.monotonic() - started
    assert 0.49 <= elapsed_s <= 0.55, elapsed_s
    assert caught.value.command == "open"
    assert not link.is_open
    await link.close()


async def test_traffic_is_logged_at_debug_truncated(
    stream_transport: TransportFactory, caplog: pytest.LogCaptureFixture
) -> None:
    link = stream_transport()
    await link.open()
    try:
        with caplog.at_level(logging.DEBUG, logger="labctl.transport"):
            await link.write(b"BIN 5000\n")
            await link.read_exact(5000)
    finally:
        await link.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "labctl.transport"]
    assert any("-> b'BIN 5000\\n'" in line for line in lines), lines
    received = [line for line in lines if "<- " in line]
    assert received and received[0].endswith("... (5000 bytes)")
    assert max(len(line) for line in lines) < 1000

"""Reconnect policy (config option, backoff schedule), input flush, ZMQ peer watching."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import zmq
import zmq.asyncio

from labctl.interfaces.build import Source, TransportSpec
from labctl.interfaces.errors import ConfigError, ConnectionLost
from labctl.transport import (
    ReconnectPolicy,
    ZmqSubscriber,
    make_transport,
    policy_of,
)
from labctl.transport.core import BufferedTransport


def _spec(kind: str, address: str, **options: Any) -> TransportSpec:
    return TransportSpec(kind=kind, address=address, timeout_s=1.0, options=options)  # type: ignore[arg-type]


def test_backoff_schedule_is_exponential_capped_and_bounded() -> None:
    policy = ReconnectPolicy(attempts=6, first_delay_s=0.1, factor=2.0, max_delay_s=0.5)
    assert list(policy.schedule_s()) == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert list(ReconnectPolicy(attempts=0).schedule_s()) == []


def test_reconnect_option_reaches_the_transport() -> None:
    options = {"attempts": 3, "total_s": 4.0, "garbled_retries": 1}
    link = make_transport(_spec("tcp", "127.0.0.1:7001", reconnect=options), instrument="laser")
    assert policy_of(link) == ReconnectPolicy(attempts=3, total_s=4.0, garbled_retries=1)
    default = make_transport(_spec("zmq", "tcp://127.0.0.1:5555"), instrument="tagger")
    assert policy_of(default) == ReconnectPolicy()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"atempts": 3}, "unknown reconnect field 'atempts'"),
        ({"attempts": -1}, "reconnect.attempts must be an integer >= 0"),
        ({"factor": 0.5}, "reconnect.factor must be >= 1"),
        ({"total_s": float("inf")}, "reconnect.total_s must be finite"),
        (5, "reconnect must be a mapping"),
    ],
)
def test_bad_reconnect_option_names_the_field(value: object, message: str) -> None:
    spec = _spec("serial", "/dev/ttyUSB0", reconnect=value)
    with pytest.raises(ConfigError, match=message) as caught:
        make_transport(spec, instrument="epc", source=Source(file="lab.yaml", line=7))
    assert caught.value.field == "instruments.epc.transport.options.reconnect"


async def test_discard_input_drops_the_rest_of_a_garbled_reply(line_server: int) -> None:
    link = make_transport(_spec("tcp", f"127.0.0.1:{line_server}"), instrument="dut")
    assert isinstance(link, BufferedTransport)
    await link.open()
    try:
        await link.write(b"SLOW 7\n")  # "r7-" now, "7\n" 5 ms later: a reply in two parts
        assert await link.read_exact(1) == b"r"
        assert await link.discard_input(0.05) == len(b"7-7\n")
        assert await link.query(b"ECHO ok\n") == b"OK"
    finally:
        await link.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_zmq_open_without_a_peer_is_connection_lost_at_once() -> None:
    link = make_transport(_spec("zmq", f"tcp://127.0.0.1:{_free_port()}"), instrument="tagger")
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="refused"):
        await link.open()
    assert time.monotonic() - started < 0.5  # refused, not a timeout


async def _serve_rep(sock: zmq.asyncio.Socket) -> None:
    while True:
        await sock.send(b"echo:" + await sock.recv())


async def test_zmq_peer_restarted_between_requests_is_connection_lost() -> None:
    context = zmq.asyncio.Context.instance()
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"

    def bound() -> zmq.asyncio.Socket:
        rep = context.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.bind(address)
        return rep

    rep = bound()
    serving = asyncio.create_task(_serve_rep(rep))
    link = make_transport(_spec("zmq", address), instrument="tagger")
    await link.open()
    try:
        assert await link.query(b"a") == b"echo:a"
        serving.cancel()
        rep.close(linger=0)
        await asyncio.sleep(0.2)
        rep = bound()  # the device is back: same address, none of our state
        serving = asyncio.create_task(_serve_rep(rep))
        with pytest.raises(ConnectionLost, match="disconnected since the last exchange"):
            await link.query(b"b")
        assert not link.is_open
        await link.open()  # a driver reconnects (and re-applies its settings) here
        assert await link.query(b"c") == b"echo:c"
    finally:
        serving.cancel()
        await link.close()
        rep.close(linger=0)


async def test_zmq_stream_whose_sender_left_is_connection_lost_quickly() -> None:
    push = zmq.asyncio.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    sub = ZmqSubscriber(f"tcp://127.0.0.1:{port}", instrument="tagger", pattern="pull")
    await sub.open()
    try:
        await push.send(b"frame")
        assert await sub.recv(timeout_s=2.0) == b"frame"
        push.close(linger=0)
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match="sender disconnected"):
            await sub.recv(timeout_s=5.0)
        assert time.monotonic() - started < 1.0
        assert not sub.is_open
    finally:
        await sub.close()


async def test_zmq_peer_gone_while_a_request_waits_is_connection_lost_quickly() -> None:
    rep = zmq.asyncio.Context.instance().socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    spec = TransportSpec(kind="zmq", address=f"tcp://127.0.0.1:{port}", timeout_s=5.0)
    link = make_transport(spec, instrument="tagger")
    await link.open()
    try:
        asyncio.get_running_loop().call_later(0.2, rep.close, 0)  # takes it, never answers
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match="went away before replying"):
            await link.query(b"*IDN?", command="*IDN?")
        assert time.monotonic() - started < 1.0  # not the 5 s timeout
    finally:
        await link.close()
        rep.close(linger=0)

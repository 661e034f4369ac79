"""Clients labctl makes turn Nagle's algorithm off, also on a broker that leaves it on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings


@pytest.fixture
def stock_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "broker", stock=True)  # no set_tcp_nodelay at the broker
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _nodelay(client: aiomqtt.Client) -> int:
    # The connected TCP socket under aiomqtt (paho's client object is aiomqtt's _client).
    sock = client._client.socket()
    assert isinstance(sock, socket.socket)
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_publisher_socket_has_tcp_nodelay(stock_mosquitto: Mosquitto, tmp_path: Path) -> None:
    publisher = MqttPublisher(
        MqttSettings.from_url(stock_mosquitto.url), lab="lab", node="nagle", outbox_dir=tmp_path
    )
    async with publisher._client() as client:
        assert _nodelay(client) != 0
        await client.publish("labctl/v1/lab/nagle/run/r/primary", b"{}", qos=1)
    # A client with aiomqtt's defaults keeps Nagle on: the option is what labctl adds.
    host, port = stock_mosquitto.url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as bare:
        assert _nodelay(bare) == 0
    publisher.outbox.close()

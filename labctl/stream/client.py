"""Build aiomqtt clients from MqttSettings (credentials, TLS, last will)."""

from __future__ import annotations

import socket

import aiomqtt

from labctl.stream.settings import MqttSettings

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Small QoS 1 publishes and their PUBACKs must not wait for Nagle's algorithm: on a broker
that does not set TCP_NODELAY itself (Mosquitto's default), each acknowledgement would
otherwise wait on a delayed ACK."""

CALL_TIMEOUT_S = 5.0
"""How long one publish/subscribe may wait for the broker before the link is declared dead."""


def make_client(
    settings: MqttSettings,
    identifier: str,
    *,
    clean_session: bool = True,
    will: aiomqtt.Will | None = None,
    max_inflight: int = 256,
) -> aiomqtt.Client:
    """An (unconnected) aiomqtt client for ``settings``; use it as ``async with``."""
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        clean_session=clean_session,
        will=will,
        keepalive=settings.keepalive_s,
        timeout=CALL_TIMEOUT_S,
        tls_context=settings.tls.context() if settings.tls is not None else None,
        max_inflight_messages=max_inflight,
        socket_options=NODELAY,
    )
    # We pipeline a window of publishes on purpose; aiomqtt warns above this threshold.
    client.pending_calls_threshold = max_inflight + 16
    return client

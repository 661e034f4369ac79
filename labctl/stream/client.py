"""Build aiomqtt clients from MqttSettings (credentials, TLS, last will).

Client ids: a broker keeps one connection per client id and disconnects the older one
when a second client connects with the same id (publishing the older one's last will).
Two processes of the same lab/node (``labctl node alice`` and ``labctl node bob`` share
the station file, so they share lab and node) would evict each other in a loop, so every
client labctl makes gets an id unique to its process and instance:
``{prefix}-{pid}-{random}`` (:func:`unique_client_id`). The id stays the same across that
client's own reconnections.
"""

from __future__ import annotations

import os
import secrets
import socket

import aiomqtt

from labctl.stream.settings import MqttSettings

NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Small QoS 1 publishes and their PUBACKs must not wait for Nagle's algorithm: on a broker
that does not set TCP_NODELAY itself (Mosquitto's default), each acknowledgement would
otherwise wait on a delayed ACK."""

CALL_TIMEOUT_S = 5.0
"""How long one publish/subscribe may wait for the broker before the link is declared dead."""


def unique_client_id(prefix: str) -> str:
    """``{prefix}-{pid}-{6 hex digits}``: no other process (or client here) uses it."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"


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

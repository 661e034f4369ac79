"""Embedded MQTT broker for a station with no broker configured: loopback only.

We use amqtt (pure Python, MQTT 3.1.1, QoS 0-2, retained messages, last will, persistent
sessions) rather than writing a broker: it runs in labctl's own event loop, needs no binary
on a fresh machine, and it binds exactly the address we give it. It listens on 127.0.0.1
(never 0.0.0.0) on a free port, anonymous access only from this machine. Field trials and
tests use Mosquitto; the embedded broker is for the default run on a laptop.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from labctl.stream.mosquitto import free_port

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def _config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@contextlib.asynccontextmanager
async def embedded_broker(port: int | None = None) -> AsyncIterator[str]:
    """Run an MQTT broker on 127.0.0.1 in this event loop; yields its ``mqtt://`` URL."""
    from amqtt.broker import Broker  # imported here: only the embedded case needs it

    for level in ("amqtt", "transitions"):
        logging.getLogger(level).setLevel(logging.WARNING)
    chosen = port or free_port()
    broker = Broker(_config(chosen))
    await broker.start()
    url = f"mqtt://{LOOPBACK}:{chosen}"
    log.info("embedded MQTT broker on %s", url)
    try:
        yield url
    finally:
        await broker.shutdown()

"""Embedded MQTT broker for a station with no broker configured: loopback only.

We use amqtt (pure Python, MQTT 3.1.1, QoS 0-2, retained messages, last will, persistent
sessions) rather than writing a broker: it runs in labctl's own event loop, needs no binary
on a fresh machine, and it binds exactly the address we give it. It listens on 127.0.0.1
(never 0.0.0.0) on a free port. Field trials and tests use Mosquitto; the embedded broker is
for the default run on a laptop.

Who may do what: labctl's own clients log in as ``labctl`` with a password drawn at random
when the broker starts (it lives only in this process and is registered as a secret, so it
never reaches a log). Anyone else on the machine may connect anonymously and *read*
everything (``labctl watch``), and publish elsewhere, but not to a ``$state`` or ``$meta``
topic nor under ``cmd/``: a local process cannot fake the run's state, its metadata, a
command or a command's reply. Such a publish is dropped by the broker. A wrong password for
``labctl`` is refused at connect. To send remote commands, configure your own broker
(``mqtt.url``) with credentials and ``mqtt.commands``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from labctl import log as labctl_log
from labctl.stream.mosquitto import free_port

if TYPE_CHECKING:
    from amqtt.session import Session

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LABCTL_USER = "labctl"
"""The user labctl's own publisher and command listener log in as."""
PROTECTED_SEGMENTS = ("$state", "$meta", "cmd")
"""Topic segments only ``labctl`` may publish under."""


@dataclass(frozen=True, repr=False)
class BrokerAccess:
    """Where the embedded broker listens and the credentials of labctl's own clients."""

    url: str
    username: str
    password: str

    def __repr__(self) -> str:  # the password never reaches a log
        return f"BrokerAccess(url={self.url!r}, username={self.username!r})"


def is_protected(topic: str) -> bool:
    """True for topics only labctl may publish: any ``$state``/``$meta``/``cmd`` segment."""
    return any(segment in PROTECTED_SEGMENTS for segment in topic.split("/"))


def _is_labctl(session: Session | None) -> bool:
    # Only a session that passed LabctlAuth's password check carries this username.
    return session is not None and session.username == LABCTL_USER


class LabctlAuth(BaseAuthPlugin):  # type: ignore[misc]  # amqtt is untyped
    """``labctl`` needs the broker's password; every other client is anonymous."""

    @dataclass
    class Config:
        """The password of the ``labctl`` user (drawn by :func:`embedded_broker`)."""

        password: str = field(default="")

    async def authenticate(self, *, session: Session) -> bool | None:
        """Refuse ``labctl`` with a wrong password; let everyone else in as anonymous."""
        if session.username != LABCTL_USER:
            return True
        expected = str(self._get_config_option("password", ""))
        given = session.password or ""
        return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class LabctlTopics(BaseTopicPlugin):  # type: ignore[misc]  # amqtt is untyped
    """Anyone may subscribe and receive; only ``labctl`` may publish protected topics."""

    @dataclass
    class Config:
        """No options."""

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        """False for a publish to a protected topic by anyone but ``labctl``."""
        if action == Action.PUBLISH and (topic is None or is_protected(topic)):
            return _is_labctl(session)
        return True


def _config(port: int, password: str) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
        "plugins": {
            f"{__name__}.LabctlAuth": {"password": password},
            f"{__name__}.LabctlTopics": {},
        },
    }


@contextlib.asynccontextmanager
async def embedded_broker(port: int | None = None) -> AsyncIterator[BrokerAccess]:
    """Run an MQTT broker on 127.0.0.1 in this event loop; yields its URL and credentials."""
    from amqtt.broker import Broker  # imported here: only the embedded case needs it

    for level in ("amqtt", "transitions"):
        logging.getLogger(level).setLevel(logging.WARNING)
    chosen = port or free_port()
    password = secrets.token_urlsafe(24)
    labctl_log.register_secret(password)
    broker = Broker(_config(chosen, password))
    await broker.start()
    url = f"mqtt://{LOOPBACK}:{chosen}"
    log.info("embedded MQTT broker on %s", url)
    try:
        yield BrokerAccess(url, LABCTL_USER, password)
    finally:
        await broker.shutdown()

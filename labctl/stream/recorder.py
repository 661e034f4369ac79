"""A subscriber that records everything under a topic filter, surviving broker restarts.

It uses a persistent session (clean_session False, QoS 1), so messages published while it
was cut off are delivered when it reconnects. Documents are de-duplicated on
``(run_id, seq)``: the first copy wins, later copies (re-sends after a reconnect) are
counted as duplicates. Used by tests, benchmarks and the key-leak scan of a real run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from labctl.secrets import SecretRegistry
from labctl.stream.client import make_client
from labctl.stream.settings import MqttSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RunLog:
    """De-duplicated documents of every run seen (kept in order of first arrival)."""

    documents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    duplicates: int = 0
    _seen: set[tuple[str, int]] = field(default_factory=set)

    def add(self, document: dict[str, Any]) -> bool:
        """Record a document; False when ``(run_id, seq)`` was already seen."""
        key = (str(document["run_id"]), int(document["seq"]))
        if key in self._seen:
            self.duplicates += 1
            return False
        self._seen.add(key)
        self.documents.setdefault(key[0], []).append(document)
        return True

    def seqs(self, run_id: str) -> list[int]:
        """The seq numbers of a run, de-duplicated and in seq order."""
        return sorted(int(d["seq"]) for d in self.documents.get(run_id, []))

    def arrival_seqs(self, run_id: str) -> list[int]:
        """The seq numbers of a run in order of first arrival."""
        return [int(d["seq"]) for d in self.documents.get(run_id, [])]


class Recorder:
    """Records every (topic, payload) under ``topic_filter``; run it as a task."""

    def __init__(
        self,
        settings: MqttSettings,
        topic_filter: str,
        *,
        client_id: str = "labctl-recorder",
        clean_session: bool = False,
    ) -> None:
        self.settings = settings
        self.topic_filter = topic_filter
        self.client_id = client_id
        self.clean_session = clean_session
        self.messages: list[tuple[str, bytes]] = []
        self.runs = RunLog()
        self.connected = asyncio.Event()
        self.reconnects = 0

    def _record(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))
        if "/run/" in topic:
            try:
                doc = json.loads(payload)
                self.runs.add(doc)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("recorder: bad run document on %s: %s", topic, exc)

    async def run(self) -> None:
        """Subscribe and record until cancelled, reconnecting whenever the link drops."""
        while True:
            try:
                client = make_client(
                    self.settings, self.client_id, clean_session=self.clean_session
                )
                async with client:
                    await client.subscribe(self.topic_filter, qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        self._record(message.topic.value, data)
            except aiomqtt.MqttError:
                self.connected.clear()
                self.reconnects += 1
                await asyncio.sleep(0.1)

    async def wait_for(self, predicate: Any, timeout_s: float) -> bool:
        """Poll ``predicate()`` until true or ``timeout_s`` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate():
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True


def find_leaks(messages: Iterable[tuple[str, bytes]], keys: Iterable[bytes]) -> list[str]:
    """Topics whose payload contains any key in raw, hex, base64 or bit form."""
    registry = SecretRegistry()
    for key in keys:
        registry.register(key)
    return [topic for topic, payload in messages if registry.find(topic.encode() + payload)]


@contextlib.asynccontextmanager
async def recording(
    settings: MqttSettings,
    topic_filter: str,
    client_id: str = "labctl-recorder",
    connect_timeout_s: float = 10.0,
) -> AsyncIterator[Recorder]:
    """Run a persistent-session Recorder in the background for the duration of the block."""
    recorder = Recorder(settings, topic_filter, client_id=client_id)
    task = asyncio.ensure_future(recorder.run())
    try:
        await asyncio.wait_for(recorder.connected.wait(), connect_timeout_s)
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

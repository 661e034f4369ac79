"""The MQTT publisher: a DocumentSink plus telemetry, link metrics, ``$state`` and ``$meta``.

Producers call synchronous methods that never wait on the network: QoS 1 messages go
through the durable Outbox (one disk append), QoS 0 telemetry into a small ring that drops
its oldest entries when the broker is away. One background task in the caller's event loop
owns the connection: it (re)connects with backoff, publishes retained ``$state``/``$meta``
after every connect, then pumps the outbox through a sliding window: up to ``window`` QoS 1
publishes are in flight at once, and each one that completes makes room for the next.

Order: messages are handed to the client in outbox order on one connection, so the broker
receives them in that order. Acknowledgement: the outbox is committed only up to the
oldest publish still waiting for its PUBACK (a message leaves the outbox once it and every
message before it are acknowledged). A disconnect fails what is in flight; it stays in the
outbox and is sent again after reconnecting (at-least-once; subscribers de-duplicate on
``(run_id, seq)``). Every payload passes the SecretRegistry guard first.

A broker acknowledges a QoS 1 message before it has saved or forwarded it, so a broker that
is SIGKILLed can lose what it just acknowledged. After every reconnection the publisher
therefore re-sends what was acknowledged in the last ``replay_window_s`` (default 3 s,
longer than Mosquitto's autosave) ahead of the backlog; subscribers drop the duplicates
and order a run by ``seq``.

Who owns ``$state``: one process per node. The publisher made with ``owns_state=True`` (the
default: the process running the node's run) publishes the retained ``$state`` and
``$meta`` and registers the last will ``$state = lost``, so the broker marks the node lost
when that process vanishes without closing. A second process of the same lab/node (e.g.
Alice's ``labctl node`` beside Bob's, which share the station file's lab and node) passes
``owns_state=False``: it streams its run documents, telemetry and link metrics, but never
writes ``$state``/``$meta`` and has no last will, so its start, end or crash cannot
overwrite what the owner says. Each publisher connects under its own client id
(:func:`~labctl.stream.client.unique_client_id`; ``mqtt.client_id`` is its prefix), so
processes never evict each other, and an eviction can no longer fire a false ``lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt

from labctl.documents import Document
from labctl.interfaces.clock import Clock, WallClock
from labctl.interfaces.errors import ConfigError
from labctl.secrets import SecretLeakError, SecretRegistry, default_registry
from labctl.stream.client import make_client, unique_client_id
from labctl.stream.outbox import Message, Outbox, Position
from labctl.stream.payloads import document_payload, link_payload, meta_payload, telemetry_payload
from labctl.stream.settings import MqttSettings
from labctl.stream.topics import STATES, Topics

log = logging.getLogger(__name__)

_RUN_TOPIC_CACHE = 256


class MqttPublisher:
    """Publishes one node's documents and measurements; use as ``async with``."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        lab: str,
        node: str,
        outbox_dir: str | Path,
        secrets: SecretRegistry | None = None,
        clock: Clock | None = None,
        memory_capacity: int = 10_000,
        telemetry_capacity: int = 1_000,
        window: int = 64,
        fsync_interval_s: float = 1.0,
        replay_window_s: float = 3.0,
        owns_state: bool = True,
    ) -> None:
        self.settings = settings
        self.owns_state = owns_state
        """Whether this process publishes the node's ``$state``/``$meta`` and last will."""
        self.topics = Topics(lab, node)
        # (run_id, stream) -> topic: validating both names costs more than the rest of
        # emit's bookkeeping, and a run reuses a handful of streams for all its documents.
        self._run_topics: dict[tuple[str, str], str] = {}
        self.outbox = Outbox(
            outbox_dir, memory_capacity=memory_capacity, fsync_interval_s=fsync_interval_s
        )
        self._secrets = secrets if secrets is not None else default_registry()
        self._clock = clock if clock is not None else WallClock()
        self._telemetry: deque[Message] = deque(maxlen=telemetry_capacity)
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}", field="window")
        self._window = window
        # Refill as soon as one slot is free, as a bare client does: waiting for a chunk of
        # free slots leaves the socket silent, so the broker's PUBACKs (Nagle on at a stock
        # Mosquitto) wait for our delayed TCP ACK instead of riding on our next PUBLISH.
        self._refill = 1
        self._replay_window_s = replay_window_s
        self._recent: deque[tuple[float, Message]] = deque()
        self._connects = 0
        self._state = "init"
        self._meta = meta_payload({})
        self._retained_dirty = True
        self._retained_unsent = True  # set_state/set_meta not yet acknowledged by the broker
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        prefix = settings.client_id or f"labctl-{self.topics.lab}-{self.topics.node}-pub"
        self.client_id = unique_client_id(prefix)
        """This publisher's MQTT client id (the same on every reconnection)."""
        self.connects = 0
        """Connections made so far (1 on a link that never dropped)."""
        self.connected = False
        self._up = asyncio.Event()
        self.refused = 0
        """Messages refused because they contained key material."""
        self.dropped = 0
        """Documents that could not be encoded or stored, and telemetry that overflowed."""
        self.published = 0
        """QoS 1 messages acknowledged by the broker."""

    # -- producer side (synchronous, never waits on the network) ----------------------
    def _guard(self, topic: str, payload: bytes) -> None:
        try:
            self._secrets.check(payload, topic)
        except SecretLeakError:
            self.refused += 1
            raise

    def emit(self, document: Document) -> None:
        """DocumentSink: queue a run document for ``run/{run_id}/{stream}`` (QoS 1)."""
        try:
            topic = self._run_topic(document.run_id, document.stream)
            payload = document_payload(document)
            self._guard(topic, payload)
            self.outbox.put(Message(topic, payload, 1, False))
        except SecretLeakError as exc:
            log.error("mqtt: %s", exc)
            return
        except (ConfigError, ValueError, OSError) as exc:
            self.dropped += 1
            log.error(
                "mqtt: dropped document seq %s of run %r: %s", document.seq, document.run_id, exc
            )
            return
        self._wake.set()

    def _run_topic(self, run_id: str, stream: str) -> str:
        topic = self._run_topics.get((run_id, stream))
        if topic is None:
            topic = self.topics.run(run_id, stream)  # raises ConfigError on a bad name
            if len(self._run_topics) >= _RUN_TOPIC_CACHE:
                self._run_topics.clear()  # a long-lived node goes through many runs
            self._run_topics[(run_id, stream)] = topic
        return topic

    def publish_telemetry(
        self,
        instrument: str,
        quantity: str,
        value: float | int | str | bool,
        ts: float | None = None,
    ) -> None:
        """Queue ``tele/{instrument}/{quantity}`` (QoS 0; oldest dropped while offline)."""
        topic = self.topics.tele(instrument, quantity)
        payload = telemetry_payload(quantity, value, self._clock.now_s() if ts is None else ts)
        self._guard(topic, payload)
        if len(self._telemetry) == self._telemetry.maxlen:
            self.dropped += 1
        self._telemetry.append(Message(topic, payload, 0, False))
        self._wake.set()

    def publish_link_metric(
        self, link_id: str, metric: str, values: Mapping[str, Any], ts: float | None = None
    ) -> None:
        """Queue ``link/{link_id}/{metric}`` (QoS 1, retained, durable)."""
        topic = self.topics.link(link_id, metric)
        payload = link_payload(link_id, metric, values, self._clock.now_s() if ts is None else ts)
        self._guard(topic, payload)
        self.outbox.put(Message(topic, payload, 1, True))
        self._wake.set()

    def set_state(self, state: str) -> None:
        """Set the retained ``$state`` (init, ready, running, suspended, error)."""
        if state not in STATES or state == "lost":
            allowed = ", ".join(s for s in STATES if s != "lost")
            raise ConfigError(f"unknown node state {state!r}; allowed: {allowed}", field="state")
        self._state = state
        self._retained_dirty = self._retained_unsent = True
        self._wake.set()

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        """Set the retained ``$meta`` (versions, instruments, simulated or real)."""
        payload = meta_payload(meta)
        self._guard(self.topics.meta, payload)
        self._meta = payload
        self._retained_dirty = self._retained_unsent = True
        self._wake.set()

    @property
    def state(self) -> str:
        """The node state last set."""
        return self._state

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Start the background connection task in the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-publisher")

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued QoS 1 message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.outbox.pending or self._telemetry or self._retained_unsent:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Wait until the broker link is up; False on timeout."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def aclose(self, drain_timeout_s: float = 5.0) -> None:
        """Try to send what is queued (bounded wait), then stop; the rest stays on disk."""
        if self._task is not None and self.connected:
            await self.flush(drain_timeout_s)
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.outbox.close()

    async def __aenter__(self) -> MqttPublisher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- connection task ---------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        will = None
        if self.owns_state:
            will = aiomqtt.Will(self.topics.state, b"lost", qos=1, retain=True)
        return make_client(self.settings, self.client_id, will=will, max_inflight=self._window)

    async def _run(self) -> None:
        backoff_s = 0.1
        while not self._closing:
            try:
                async with self._client() as client:
                    self.connects += 1
                    self.connected = True
                    self._up.set()
                    backoff_s = 0.1
                    log.info("mqtt: connected to %s", self.settings.url)
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("mqtt: lost %s: %s", self.settings.url, exc)
            except OSError as exc:
                log.warning("mqtt: %s: %s", self.settings.url, exc)
            except Exception:  # the link task must outlive any surprise; the outbox keeps data
                log.exception("mqtt: unexpected error in the publisher task; reconnecting")
            finally:
                self.connected = False
                self._up.clear()
            self.outbox.sync()
            await asyncio.sleep(backoff_s)
            backoff_s = min(2.0, backoff_s * 2)

    async def _serve(self, client: aiomqtt.Client) -> None:
        # The watcher ends (raises) as soon as aiomqtt sees the connection drop.
        watcher = asyncio.ensure_future(self._watch(client))
        pump = asyncio.ensure_future(self._pump(client))
        try:
            await asyncio.wait({watcher, pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, pump):
                task.cancel()
            results = await asyncio.gather(watcher, pump, return_exceptions=True)
        for result in results:
            if isinstance(result, aiomqtt.MqttError | OSError):
                raise result

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass

    async def _replay(self, client: aiomqtt.Client) -> None:
        horizon = time.monotonic() - self._replay_window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        replay = [m for _, m in self._recent]
        if replay:
            log.info("mqtt: re-sending %d recently acknowledged messages", len(replay))
        for start in range(0, len(replay), self._window):
            chunk = replay[start : start + self._window]
            await _all(
                client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in chunk
            )

    def _remember(self, batch: list[Message]) -> None:
        now = time.monotonic()
        horizon = now - self._replay_window_s
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        if self._replay_window_s > 0:
            self._recent.extend((now, m) for m in batch)

    async def _pump(self, client: aiomqtt.Client) -> None:
        self._retained_dirty = True
        self._connects += 1
        if self._connects > 1:
            await self._replay(client)
        flight = _Flight(self._wake)
        try:
            while True:
                self._wake.clear()
                flight.raise_failure()
                busy = False
                if self._retained_dirty and not self.owns_state:
                    self._retained_dirty = self._retained_unsent = False  # the owner's topics
                if self._retained_dirty:
                    self._retained_dirty = False
                    await client.publish(self.topics.meta, self._meta, qos=1, retain=True)
                    await client.publish(
                        self.topics.state, self._state.encode(), qos=1, retain=True
                    )
                    # Only now (acknowledged) may flush() count the final state as sent.
                    self._retained_unsent = self._retained_dirty
                if self._telemetry:
                    tele = list(self._telemetry)
                    self._telemetry.clear()
                    await _all(client.publish(m.topic, m.payload, qos=0) for m in tele)
                    busy = True
                acked = flight.settle()
                if acked:
                    self.outbox.commit(acked[-1][1], len(acked))
                    self._remember([m for m, _ in acked])
                    self.published += len(acked)
                waiting = self.outbox.pending - len(flight)  # queued, not yet sent
                if waiting > 0 and self._window - len(flight) >= min(self._refill, waiting):
                    # peek() starts at the cursor: skip what is already in flight.
                    fresh = self.outbox.peek(self._window)[len(flight) :]
                    for message, position in fresh:
                        flight.send(client, message, position)
                    busy = busy or bool(fresh)
                self.outbox.sync()
                if not busy:
                    # A timer instead of asyncio.wait_for: on 3.11 wait_for can swallow a
                    # cancellation that races with its timeout, and then close() would hang.
                    timer = asyncio.get_running_loop().call_later(
                        self.outbox.fsync_interval_s or 0.5, self._wake.set
                    )
                    try:
                        await self._wake.wait()
                    finally:
                        timer.cancel()
                else:
                    await asyncio.sleep(0)  # let completions (and producers) run
        finally:
            await flight.cancel()

    def stats(self) -> dict[str, int | bool]:
        """Counters for health reports and benchmarks."""
        return {
            "connected": self.connected,
            "pending": self.outbox.pending,
            "published": self.published,
            "spilled": self.outbox.spilled,
            "disk_reads": self.outbox.disk_reads,
            "recovered": self.outbox.recovered,
            "refused": self.refused,
            "dropped": self.dropped,
        }


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Await pipelined calls; raise the first failure once none is left running."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class _Flight:
    """QoS 1 publishes in flight, oldest first; completions wake the pump."""

    def __init__(self, wake: asyncio.Event) -> None:
        self._wake = wake
        self._queue: deque[tuple[Message, Position, asyncio.Task[None]]] = deque()
        self._failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, client: aiomqtt.Client, message: Message, position: Position) -> None:
        """Start publishing ``message`` (the client sends in the order of these calls)."""
        task = asyncio.ensure_future(
            client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        )
        task.add_done_callback(self._done)
        self._queue.append((message, position, task))

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()
        self._wake.set()

    def raise_failure(self) -> None:
        """Raise the first publish failure (the link is gone; what is in flight is re-sent)."""
        if self._failure is not None:
            raise self._failure

    def settle(self) -> list[tuple[Message, Position]]:
        """Pop and return the acknowledged head: every completed publish before the oldest
        one still waiting (a later PUBACK never commits past an earlier missing one)."""
        acked = []
        while self._queue and self._queue[0][2].done():
            message, position, task = self._queue.popleft()
            if task.cancelled() or task.exception() is not None:
                self._queue.appendleft((message, position, task))
                break
            acked.append((message, position))
        return acked

    async def cancel(self) -> None:
        """Stop waiting for what is in flight (it stays in the outbox)."""
        tasks = [task for _, _, task in self._queue]
        self._queue.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

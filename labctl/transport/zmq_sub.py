"""ZMQ receiver for binary streams (a time tagger's tag stream): SUB or PULL.

Behaviour a driver can rely on:

* ``recv``/``recv_multipart`` wait at most ``timeout_s`` and raise InstrumentTimeout
  naming the instrument and address when the sender is connected but silent.
* A connecting receiver watches its socket's monitor events (``zmq_peer.PeerWatch``):
  once the sender has disconnected (a device that went away or restarted: its stream is
  not running any more) and nothing is left queued, ``recv`` raises ConnectionLost
  within ``PEER_CHECK_S`` instead of waiting out its timeout; the driver then restarts
  the stream (``close()`` and ``open()`` again re-create the socket).
* ConnectionLost is raised when the subscriber is not open (never opened, closed, or the
  socket failed).
* ``rcvhwm`` bounds how many messages queue in memory; beyond it a SUB socket drops new
  messages (the driver sees the gap in its own sequence numbers) and a PULL socket
  pushes back on the sender.
* A message larger than ``max_message_bytes`` raises ProtocolError.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Literal, Self

import zmq
import zmq.asyncio

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES, check_timeout_s, log, preview
from labctl.transport.zmq_peer import PEER_CHECK_S, PeerWatch

Pattern = Literal["sub", "pull"]


class ZmqSubscriber:
    """Receives messages from a PUB or PUSH socket; one instance per stream."""

    def __init__(
        self,
        address: str,
        *,
        instrument: str,
        timeout_s: float = 2.0,
        pattern: Pattern = "sub",
        topics: tuple[bytes, ...] = (b"",),
        rcvhwm: int = 1000,
        bind: bool = False,
        max_message_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if pattern not in ("sub", "pull"):
            raise ValueError(f"pattern must be 'sub' or 'pull', got {pattern!r}")
        if isinstance(rcvhwm, bool) or not isinstance(rcvhwm, int) or rcvhwm < 0:
            raise ValueError(f"rcvhwm must be an integer >= 0 (0 = unbounded), got {rcvhwm!r}")
        if max_message_bytes < 1:
            raise ValueError(f"max_message_bytes must be at least 1, got {max_message_bytes}")
        self._address = address
        self._instrument = instrument
        self._timeout_s = check_timeout_s(timeout_s, "timeout_s")
        self._pattern = pattern
        self._topics = topics
        self._rcvhwm = rcvhwm
        self._bind = bind
        self._max_message_bytes = max_message_bytes
        self._socket: zmq.asyncio.Socket | None = None
        self._peer: PeerWatch | None = None

    @property
    def resource(self) -> str:
        """The address this subscriber listens to (for messages)."""
        return self._address

    @property
    def instrument(self) -> str:
        """The station name of the instrument, used in error messages."""
        return self._instrument

    @property
    def timeout_s(self) -> float:
        """Default timeout of every receive, in seconds."""
        return self._timeout_s

    @property
    def is_open(self) -> bool:
        """True while the socket exists."""
        return self._socket is not None

    async def open(self) -> None:
        """Create the socket and connect (or bind); idempotent."""
        if self._socket is not None:
            return
        kind = zmq.SUB if self._pattern == "sub" else zmq.PULL
        sock = zmq.asyncio.Context.instance().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
        if kind == zmq.SUB:
            for topic in self._topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic)
        # Watch before connect(), or the first events are missed.
        peer = None if self._bind else PeerWatch(sock)
        try:
            if self._bind:
                sock.bind(self._address)
            else:
                sock.connect(self._address)
        except zmq.ZMQError as exc:
            if peer is not None:
                peer.close()
            sock.close(linger=0)
            raise ConnectionLost(
                f"cannot {'bind' if self._bind else 'connect'} {self._address}: {exc}",
                instrument=self._instrument,
                command="open",
            ) from exc
        self._socket = sock
        self._peer = peer
        log.debug("%s: %s socket on %s", self._instrument, self._pattern, self._address)

    async def close(self) -> None:
        """Close the socket, dropping queued messages; idempotent."""
        sock, self._socket = self._socket, None
        peer, self._peer = self._peer, None
        if peer is not None:
            peer.close()
        if sock is not None:
            sock.close(linger=0)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def recv(self, timeout_s: float | None = None) -> bytes:
        """The next single-frame message; ProtocolError if it has several frames."""
        frames = await self.recv_multipart(timeout_s)
        if len(frames) != 1:
            raise ProtocolError(
                f"expected a single-frame message on {self._address}, got {len(frames)} "
                "frames (use recv_multipart)",
                instrument=self._instrument,
                command="recv",
            )
        return frames[0]

    async def recv_multipart(self, timeout_s: float | None = None) -> list[bytes]:
        """The next message as its list of frames (topic first for a PUB with topics)."""
        sock = self._socket
        if sock is None:
            raise ConnectionLost(
                f"{self._address} is not open (call open())",
                instrument=self._instrument,
                command="recv",
            )
        budget_s = self._timeout_s if timeout_s is None else check_timeout_s(timeout_s, "timeout_s")
        try:
            ready = await self._wait_readable(sock, budget_s)
            if not ready:
                raise InstrumentTimeout(
                    f"no message on {self._address} within {budget_s:g} s",
                    instrument=self._instrument,
                    command="recv",
                )
            frames = await sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
        except zmq.ZMQError as exc:
            await self.close()
            raise ConnectionLost(
                f"{self._address}: {exc}", instrument=self._instrument, command="recv"
            ) from exc
        size = sum(len(frame) for frame in frames)
        if size > self._max_message_bytes:
            raise ProtocolError(
                f"a {size}-byte message on {self._address} exceeds "
                f"max_message_bytes={self._max_message_bytes}",
                instrument=self._instrument,
                command="recv",
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: <- %s", self._instrument, preview(b"|".join(frames)))
        return frames

    async def _wait_readable(self, sock: zmq.asyncio.Socket, budget_s: float) -> bool:
        """True once a message is queued; False after ``budget_s``; ConnectionLost if gone."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget_s
        while True:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                return False
            slice_s = remaining_s if self._peer is None else min(PEER_CHECK_S, remaining_s)
            if await sock.poll(max(1, round(slice_s * 1000))):  # POLLIN by default
                return True
            peer = self._peer
            if peer is not None:
                peer.update()
                if peer.dropped:
                    await self.close()
                    raise ConnectionLost(
                        f"{self._address}: the sender disconnected (stream stopped)",
                        instrument=self._instrument,
                        command="recv",
                    )

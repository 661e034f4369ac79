"""ZMQ receiver for binary streams (a time tagger's tag stream): SUB or PULL.

Behaviour a driver can rely on:

* ``recv``/``recv_multipart`` wait at most ``timeout_s`` and raise InstrumentTimeout
  naming the instrument and address. A publisher that went away looks exactly like a
  silent one (ZMQ reconnects on its own and reports nothing), so silence is a timeout.
* ConnectionLost is raised when the subscriber is not open (never opened, closed, or the
  socket failed); ``open()`` again re-creates the socket.
* ``rcvhwm`` bounds how many messages queue in memory; beyond it a SUB socket drops new
  messages (the driver sees the gap in its own sequence numbers) and a PULL socket
  pushes back on the sender.
* A message larger than ``max_message_bytes`` raises ProtocolError.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Literal, Self

import zmq
import zmq.asyncio

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES, check_timeout_s, log, preview

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
        try:
            if self._bind:
                sock.bind(self._address)
            else:
                sock.connect(self._address)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise ConnectionLost(
                f"cannot {'bind' if self._bind else 'connect'} {self._address}: {exc}",
                instrument=self._instrument,
                command="open",
            ) from exc
        self._socket = sock
        log.debug("%s: %s socket on %s", self._instrument, self._pattern, self._address)

    async def close(self) -> None:
        """Close the socket, dropping queued messages; idempotent."""
        sock, self._socket = self._socket, None
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
            ready = await sock.poll(max(1, round(budget_s * 1000)))  # POLLIN by default
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

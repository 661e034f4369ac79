"""A scripted transport for exact-exchange driver tests (in the spirit of PyMeasure's
``expected_protocol``).

The test lists every exchange as ``(bytes the driver must send, bytes the device replies)``.
The transport fails the test at once when the driver sends anything else, and
``assert_complete()`` fails when scripted exchanges or reply bytes are left over. Two
markers script the failure kinds a real link shows:

- ``SILENCE`` as a reply: the device stays silent, so the next read raises
  InstrumentTimeout (immediately: no test waits for a real timeout).
- ``DISCONNECT`` as a reply: the peer drops the link, so the next read raises
  ConnectionLost and the transport is closed until ``open()`` is called again.

An exchange whose sent bytes are ``b""`` is unsolicited: the device pushes the reply
without being asked (a broadcast, a counts line). Message-based links (ZMQ REQ/REP) set
``message_based=True``: each reply is one message and ``query`` returns it whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout


class Marker(Enum):
    """Scripted link events that are not bytes."""

    SILENCE = "silence"
    DISCONNECT = "disconnect"


SILENCE = Marker.SILENCE
DISCONNECT = Marker.DISCONNECT

Reply: TypeAlias = bytes | Marker
Step: TypeAlias = tuple[bytes, Reply]


class ExchangeMismatch(AssertionError):
    """The driver did not follow the script (wrong bytes, leftovers, unscripted read)."""


@dataclass
class _Pending:
    """Reply bytes (or one marker) waiting to be read, in arrival order."""

    data: bytearray
    marker: Marker | None = None


class ScriptedTransport:
    """A Transport that replays a fixed script of (sent, reply) exchanges."""

    def __init__(
        self,
        script: Iterable[Step],
        *,
        instrument: str = "dut",
        resource: str = "scripted://",
        timeout_s: float = 1.0,
        message_based: bool = False,
    ) -> None:
        self._script: list[Step] = list(script)
        for index, (sent, reply) in enumerate(self._script):
            if not isinstance(sent, bytes) or not isinstance(reply, bytes | Marker):
                raise TypeError(f"script step {index} must be (bytes, bytes | Marker)")
        self._instrument = instrument
        self._resource = resource
        self._timeout_s = timeout_s
        self._message_based = message_based
        self._position = 0
        self._written = bytearray()
        self._messages: list[_Pending] = []
        self._open = False
        self.open_count = 0
        self.close_count = 0

    # -- Transport protocol -------------------------------------------------------------

    @property
    def resource(self) -> str:
        """The scripted address (for messages)."""
        return self._resource

    @property
    def instrument(self) -> str:
        """The instrument name used in raised errors."""
        return self._instrument

    @property
    def timeout_s(self) -> float:
        """Nominal timeout; silence is reported at once rather than waited for."""
        return self._timeout_s

    @property
    def is_open(self) -> bool:
        """True between open() and close() or a scripted disconnect."""
        return self._open

    async def open(self) -> None:
        """Open (or re-open) the scripted link; stale reply bytes are dropped."""
        self._open = True
        self._messages.clear()
        self._written.clear()
        self.open_count += 1

    async def close(self) -> None:
        """Close the link; idempotent."""
        if self._open:
            self.close_count += 1
        self._open = False

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """No lock is needed: the script is consumed by one task."""
        yield

    async def write(self, data: bytes, *, command: str | None = None) -> None:
        """Check ``data`` against the script; a completed exchange queues its reply."""
        self._require_open(command)
        self._written.extend(data)
        while self._written:
            self._deliver_unsolicited()
            if self._position >= len(self._script):
                raise ExchangeMismatch(
                    f"{self._instrument}: driver sent {bytes(self._written)!r} "
                    f"after the script ended"
                )
            expected, reply = self._script[self._position]
            got = bytes(self._written[: len(expected)])
            if not expected.startswith(got) or not got:
                raise ExchangeMismatch(
                    f"{self._instrument}: exchange {self._position}: expected "
                    f"{expected!r}, driver sent {bytes(self._written)!r}"
                )
            if len(got) < len(expected):
                return  # the rest of this command comes in a later write
            del self._written[: len(expected)]
            self._position += 1
            self._queue(reply)

    async def read_until(
        self, terminator: bytes, *, command: str | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Return the next reply bytes up to ``terminator`` (stripped)."""
        if self._message_based:
            return await self._read_message(command)
        while True:
            buffer = self._buffer(command)
            index = buffer.find(terminator)
            if index >= 0:
                line = bytes(buffer[:index])
                del buffer[: index + len(terminator)]
                self._drop_empty()
                return line
            self._need_more(command, f"a reply ending {terminator!r}")

    async def read_exact(
        self, n_bytes: int, *, command: str | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Return exactly ``n_bytes`` scripted reply bytes."""
        if n_bytes < 0:
            raise ValueError(f"read_exact: n_bytes must be >= 0, got {n_bytes}")
        while True:
            buffer = self._buffer(command)
            if len(buffer) >= n_bytes:
                chunk = bytes(buffer[:n_bytes])
                del buffer[:n_bytes]
                self._drop_empty()
                return chunk
            self._need_more(command, f"{n_bytes} bytes")

    async def query(
        self,
        data: bytes,
        *,
        terminator: bytes = b"\n",
        command: str | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Write ``data`` and read one reply (one message when message-based)."""
        await self.write(data, command=command)
        return await self.read_until(terminator, command=command, timeout_s=timeout_s)

    # -- test helpers -------------------------------------------------------------------

    @property
    def remaining(self) -> Sequence[Step]:
        """Exchanges the driver has not performed yet."""
        return self._script[self._position :]

    def assert_complete(self) -> None:
        """Fail when exchanges, partial writes or unread reply bytes are left over."""
        problems: list[str] = []
        if self._position < len(self._script):
            problems.append(f"{len(self.remaining)} exchange(s) not performed: {self.remaining!r}")
        if self._written:
            problems.append(f"partial command never completed: {bytes(self._written)!r}")
        unread = [bytes(m.data) for m in self._messages if m.data]
        if unread:
            problems.append(f"reply bytes never read: {unread!r}")
        if problems:
            raise ExchangeMismatch(f"{self._instrument}: " + "; ".join(problems))

    # -- internals ----------------------------------------------------------------------

    def _require_open(self, command: str | None) -> None:
        if not self._open:
            raise ConnectionLost("link is not open", instrument=self._instrument, command=command)

    def _queue(self, reply: Reply) -> None:
        if isinstance(reply, Marker):
            self._messages.append(_Pending(bytearray(), reply))
        elif reply or self._message_based:
            self._messages.append(_Pending(bytearray(reply)))

    def _deliver_unsolicited(self) -> bool:
        """Queue the next exchange if the device sends it unasked; True when one was."""
        if self._position < len(self._script) and self._script[self._position][0] == b"":
            self._queue(self._script[self._position][1])
            self._position += 1
            return True
        return False

    def _drop_empty(self) -> None:
        while self._messages and not self._messages[0].data and self._messages[0].marker is None:
            self._messages.pop(0)

    def _buffer(self, command: str | None) -> bytearray:
        """The byte-stream view: all queued bytes before the first marker, merged."""
        self._require_open(command)
        merged = bytearray()
        while self._messages and self._messages[0].marker is None:
            merged.extend(self._messages.pop(0).data)
        self._messages.insert(0, _Pending(merged))
        return self._messages[0].data

    def _need_more(self, command: str | None, what: str) -> None:
        """More bytes are needed: deliver a marker, an unsolicited reply, or fail."""
        if len(self._messages) > 1 and self._messages[1].marker is not None:
            marker = self._messages.pop(1).marker
            assert marker is not None
            self._raise_marker(marker, command)
        if self._deliver_unsolicited():
            return
        raise ExchangeMismatch(
            f"{self._instrument}: driver waits for {what} but the script has no reply "
            f"(next exchange: {self.remaining[:1]!r})"
        )

    async def _read_message(self, command: str | None) -> bytes:
        self._require_open(command)
        if not self._messages:
            self._deliver_unsolicited()
        if not self._messages:
            raise ExchangeMismatch(
                f"{self._instrument}: driver waits for a message but none is scripted"
            )
        message = self._messages.pop(0)
        if message.marker is not None:
            self._raise_marker(message.marker, command)
        return bytes(message.data)

    def _raise_marker(self, marker: Marker, command: str | None) -> None:
        if marker is Marker.SILENCE:
            raise InstrumentTimeout(
                f"no reply within {self._timeout_s} s",
                instrument=self._instrument,
                command=command,
            )
        self._open = False
        self._messages.clear()
        raise ConnectionLost("peer closed the link", instrument=self._instrument, command=command)


class ScriptedFrames:
    """A scripted binary stream source (``recv(timeout_s) -> bytes``) for tag streams."""

    def __init__(self, frames: Iterable[bytes | Marker], *, instrument: str = "dut") -> None:
        self._frames: list[bytes | Marker] = list(frames)
        self._instrument = instrument
        self._open = False
        self.open_count = 0

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._open

    async def open(self) -> None:
        """Start receiving."""
        self._open = True
        self.open_count += 1

    async def close(self) -> None:
        """Stop receiving; idempotent."""
        self._open = False

    async def recv(self, timeout_s: float) -> bytes:
        """The next scripted frame; SILENCE -> InstrumentTimeout, DISCONNECT -> ConnectionLost."""
        if not self._open:
            raise ConnectionLost("stream is not open", instrument=self._instrument)
        if not self._frames:
            raise ExchangeMismatch(f"{self._instrument}: driver waits for a frame, none scripted")
        frame = self._frames.pop(0)
        if frame is Marker.SILENCE:
            raise InstrumentTimeout(f"no frame within {timeout_s} s", instrument=self._instrument)
        if frame is Marker.DISCONNECT:
            self._open = False
            raise ConnectionLost("stream publisher went away", instrument=self._instrument)
        assert isinstance(frame, bytes)
        return frame

    def assert_complete(self) -> None:
        """Fail when scripted frames were never received."""
        if self._frames:
            raise ExchangeMismatch(f"{self._instrument}: {len(self._frames)} frame(s) never read")


@contextmanager
def expect_exchange(
    script: Iterable[Step], *, instrument: str = "dut", message_based: bool = False
) -> Iterator[ScriptedTransport]:
    """Yield a ScriptedTransport and check it was consumed exactly when the block ends."""
    transport = ScriptedTransport(script, instrument=instrument, message_based=message_based)
    yield transport
    transport.assert_complete()

"""Behaviour every byte transport shares: lock, deadlines, bounded buffer, error mapping.

A concrete transport only supplies four primitives (connect, disconnect, send, receive
some bytes); this module turns them into the ``Transport`` contract so that TCP, serial
and VISA time out, lose connections and cap replies in exactly the same way.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout, ProtocolError
from labctl.transport.recovery import FLUSH_QUIET_S, ReconnectPolicy

log = logging.getLogger("labctl.transport")

DEFAULT_MAX_REPLY_BYTES = 1 << 20
"""Largest reply accepted by default (1 MiB): enough for a SCPI binary block of tags."""

_LOG_PREVIEW_BYTES = 120
_RECV_CHUNK_BYTES = 65536


class ReplyTooLarge(Exception):
    """Raised by a primitive that received one message larger than max_reply_bytes."""


def preview(data: bytes) -> str:
    """A short printable rendering of ``data`` for DEBUG logs (truncated, never huge)."""
    if len(data) <= _LOG_PREVIEW_BYTES:
        return repr(data)
    return f"{data[:_LOG_PREVIEW_BYTES]!r}... ({len(data)} bytes)"


def check_timeout_s(value: float, what: str) -> float:
    """Return ``value`` if it is a usable timeout in seconds, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number of seconds, got {value!r}")
    return float(value)


class TaskLock:
    """An asyncio lock the holding task may re-enter (a transaction wrapping a query)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._depth = 0

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold the lock for the body; nested use by the same task does not deadlock."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        async with self._lock:
            self._owner = task
            self._depth = 1
            try:
                yield
            finally:
                self._owner = None
                self._depth = 0


class BufferedTransport(abc.ABC):
    """A byte-stream transport built on four primitives; implements ``Transport``.

    Primitives raise ``TimeoutError`` when time runs out and ``OSError``/``EOFError``
    when the link breaks; this class converts them to InstrumentTimeout/ConnectionLost
    naming the instrument, the resource and the command.
    """

    def __init__(
        self,
        *,
        instrument: str,
        resource: str,
        timeout_s: float = 2.0,
        open_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(max_reply_bytes, bool) or not isinstance(max_reply_bytes, int):
            raise ValueError(f"max_reply_bytes must be an integer, got {max_reply_bytes!r}")
        if max_reply_bytes < 1:
            raise ValueError(f"max_reply_bytes must be at least 1, got {max_reply_bytes}")
        self._instrument = instrument
        self._resource = resource
        self._timeout_s = check_timeout_s(timeout_s, "timeout_s")
        self._open_timeout_s = check_timeout_s(
            timeout_s if open_timeout_s is None else open_timeout_s, "open_timeout_s"
        )
        self._max_reply_bytes = max_reply_bytes
        self._reconnect = ReconnectPolicy.from_options(reconnect)
        self._lock = TaskLock()
        self._buffer = bytearray()
        self._open = False
        self._cleanups: set[asyncio.Future[None]] = set()

    # -- primitives a concrete transport supplies ---------------------------------------

    @abc.abstractmethod
    async def _connect(self) -> None:
        """Establish the link (may block up to the open timeout, enforced by the caller)."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Tear the link down; must not raise for an already broken link."""

    @abc.abstractmethod
    async def _send(self, data: bytes) -> None:
        """Send all of ``data``."""

    @abc.abstractmethod
    async def _recv_some(self, max_bytes: int, timeout_s: float, stop_byte: int | None) -> bytes:
        """Return 1..max_bytes bytes; ``stop_byte`` hints where a reply ends (may be ignored)."""

    # -- Transport contract ---------------------------------------------------------------

    @property
    def resource(self) -> str:
        """The address this transport talks to (for messages)."""
        return self._resource

    @property
    def instrument(self) -> str:
        """The station name of the instrument, used in error messages."""
        return self._instrument

    @property
    def timeout_s(self) -> float:
        """Default timeout of every read, in seconds."""
        return self._timeout_s

    @property
    def max_reply_bytes(self) -> int:
        """Largest reply (or unterminated run of bytes) accepted before ProtocolError."""
        return self._max_reply_bytes

    @property
    def is_open(self) -> bool:
        """True while the link is up."""
        return self._open

    @property
    def reconnect_policy(self) -> ReconnectPolicy:
        """Bounds of the driver's reconnects and re-sends over this transport."""
        return self._reconnect

    async def discard_input(self, quiet_s: float = FLUSH_QUIET_S) -> int:
        """Drop buffered and arriving bytes until the line is quiet; bytes dropped.

        Used before re-sending a query whose reply did not parse: the rest of a garbled
        reply must not be taken for the answer to the re-sent query.
        """
        async with self._lock.hold():
            dropped = len(self._buffer)
            self._buffer.clear()
            if not self._open:
                return dropped
            while True:
                try:
                    chunk = await self._recv_some(_RECV_CHUNK_BYTES, quiet_s, None)
                except TimeoutError:
                    break
                except (OSError, EOFError) as exc:
                    raise await self._lost("flush", exc) from exc
                except ReplyTooLarge:
                    continue
                dropped += len(chunk)
            if dropped:
                log.debug("%s: flushed %d byte(s) of input", self._instrument, dropped)
            return dropped

    async def open(self) -> None:
        """Open (or re-open after ConnectionLost) the link; InstrumentTimeout if it cannot."""
        async with self._lock.hold():
            if self._open:
                return
            self._buffer.clear()
            try:
                await asyncio.wait_for(self._connect(), self._open_timeout_s)
            except TimeoutError:
                # Tear down in the background: a library call that outlives our deadline
                # (a blocking connect in a worker thread) must not stretch open()'s timeout.
                cleanup = asyncio.ensure_future(self._disconnect())
                self._cleanups.add(cleanup)
                cleanup.add_done_callback(self._cleanups.discard)
                raise InstrumentTimeout(
                    f"could not open {self._resource} within {self._open_timeout_s:g} s",
                    instrument=self._instrument,
                    command="open",
                ) from None
            except (OSError, EOFError) as exc:
                await self._disconnect()
                raise ConnectionLost(
                    f"could not open {self._resource}: {exc}",
                    instrument=self._instrument,
                    command="open",
                ) from exc
            self._open = True
            log.debug("%s: opened %s", self._instrument, self._resource)

    async def close(self) -> None:
        """Close the link; idempotent."""
        # No lock: closing must work even while another task waits on a silent peer.
        was_open = self._open
        self._open = False
        self._buffer.clear()
        await self._disconnect()
        if was_open:
            log.debug("%s: closed %s", self._instrument, self._resource)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """Hold the per-resource lock across several writes/reads (one command exchange)."""
        return self._lock.hold()

    async def write(self, data: bytes, *, command: str | None = None) -> None:
        """Send bytes; ``command`` names the command for error messages."""
        async with self._lock.hold():
            self._require_open(command)
            log.debug("%s: -> %s", self._instrument, preview(data))
            try:
                await asyncio.wait_for(self._send(data), self._timeout_s)
            except TimeoutError:
                raise self._timeout_error(
                    command, self._timeout_s, "write not accepted by"
                ) from None
            except (OSError, EOFError) as exc:
                raise await self._lost(command, exc) from exc

    async def read_until(
        self, terminator: bytes, *, command: str | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Read up to and including ``terminator``; the terminator is stripped from the result."""
        if not terminator:
            raise ValueError("read_until needs a non-empty terminator")
        async with self._lock.hold():
            self._require_open(command)
            budget_s = self._budget(timeout_s)
            deadline = asyncio.get_running_loop().time() + budget_s
            searched = 0
            while True:
                index = self._buffer.find(terminator, max(0, searched - len(terminator) + 1))
                if index >= 0:
                    reply = bytes(self._buffer[:index])
                    del self._buffer[: index + len(terminator)]
                    log.debug("%s: <- %s", self._instrument, preview(reply))
                    return reply
                searched = len(self._buffer)
                if searched > self._max_reply_bytes:
                    self._buffer.clear()
                    raise self._too_large(command, f"{searched} bytes without {terminator!r}")
                room = self._max_reply_bytes + len(terminator) - searched
                await self._fill(
                    min(room, _RECV_CHUNK_BYTES), deadline, budget_s, command, terminator[-1]
                )

    async def read_exact(
        self, n_bytes: int, *, command: str | None = None, timeout_s: float | None = None
    ) -> bytes:
        """Read exactly ``n_bytes`` bytes."""
        if n_bytes < 0:
            raise ValueError(f"read_exact needs n_bytes >= 0, got {n_bytes}")
        if n_bytes > self._max_reply_bytes:
            raise self._too_large(command, f"a read of {n_bytes} bytes")
        async with self._lock.hold():
            self._require_open(command)
            budget_s = self._budget(timeout_s)
            deadline = asyncio.get_running_loop().time() + budget_s
            while len(self._buffer) < n_bytes:
                missing = n_bytes - len(self._buffer)
                await self._fill(min(missing, _RECV_CHUNK_BYTES), deadline, budget_s, command, None)
            data = bytes(self._buffer[:n_bytes])
            del self._buffer[:n_bytes]
            log.debug("%s: <- %s", self._instrument, preview(data))
            return data

    async def query(
        self,
        data: bytes,
        *,
        terminator: bytes = b"\n",
        command: str | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Write ``data`` then read one reply ending in ``terminator``, under the lock."""
        async with self._lock.hold():
            if self._buffer:
                # Leftovers of an exchange that timed out: they are not this reply.
                log.debug("%s: dropping stale %s", self._instrument, preview(bytes(self._buffer)))
                self._buffer.clear()
            await self.write(data, command=command)
            return await self.read_until(terminator, command=command, timeout_s=timeout_s)

    # -- helpers ----------------------------------------------------------------------------

    def _budget(self, timeout_s: float | None) -> float:
        return self._timeout_s if timeout_s is None else check_timeout_s(timeout_s, "timeout_s")

    async def _fill(
        self,
        max_bytes: int,
        deadline: float,
        budget_s: float,
        command: str | None,
        stop_byte: int | None,
    ) -> None:
        remaining_s = deadline - asyncio.get_running_loop().time()
        try:
            if remaining_s <= 0:
                raise TimeoutError
            chunk = await self._recv_some(max_bytes, remaining_s, stop_byte)
        except TimeoutError:
            # A late reply would otherwise be taken for the answer to the next command.
            self._buffer.clear()
            raise self._timeout_error(command, budget_s, "no reply from") from None
        except (OSError, EOFError) as exc:
            raise await self._lost(command, exc) from exc
        except ReplyTooLarge as exc:
            self._buffer.clear()
            raise self._too_large(command, str(exc)) from None
        self._buffer += chunk

    def _too_large(self, command: str | None, what: str) -> ProtocolError:
        return ProtocolError(
            f"{what} from {self._resource} exceeds max_reply_bytes={self._max_reply_bytes}",
            instrument=self._instrument,
            command=command,
        )

    def _require_open(self, command: str | None) -> None:
        if not self._open:
            raise ConnectionLost(
                f"{self._resource} is not open (call open() to connect or reconnect)",
                instrument=self._instrument,
                command=command,
            )

    def _timeout_error(self, command: str | None, budget_s: float, what: str) -> InstrumentTimeout:
        return InstrumentTimeout(
            f"{what} {self._resource} within {budget_s:g} s",
            instrument=self._instrument,
            command=command,
        )

    async def _lost(self, command: str | None, exc: BaseException) -> ConnectionLost:
        self._open = False
        self._buffer.clear()
        await self._disconnect()
        reason = str(exc) or type(exc).__name__
        log.debug("%s: lost %s: %s", self._instrument, self._resource, reason)
        return ConnectionLost(
            f"{self._resource}: {reason}", instrument=self._instrument, command=command
        )

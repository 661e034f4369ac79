"""What every wire twin shares: calling the twin, mapping its faults to the wire, servers.

A wire twin serves one twin object behind its real device's protocol. The twin raises the
typed errors a driver would; the wire turns each into what a real device does on the line:

=====================  =========================================================
twin raises            on the wire
=====================  =========================================================
InstrumentFault        the device's own error reply (``Error!``, an error label...)
InstrumentTimeout      silence: no reply at all (the driver's own timeout fires)
ProtocolError          garbage bytes in place of the reply
ConnectionLost         the connection is closed (TCP) or the line goes dead (serial)
=====================  =========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from labctl.interfaces.errors import (
    ConnectionLost,
    InstrumentFault,
    InstrumentTimeout,
    ProtocolError,
)

log = logging.getLogger("sims.wire")
T = TypeVar("T")

GARBAGE = b"\xfe\xff\x00\x9c"  # not ASCII, not JSON, not a frame header: garbled on the line


class Fate(Enum):
    """What happened to one call into the twin, as the wire must show it."""

    OK = "ok"
    REFUSED = "refused"
    SILENT = "silent"
    GARBLED = "garbled"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The value a twin call returned, or how it failed (``message`` for refusals)."""

    fate: Fate
    value: Any = None
    message: str = ""


async def attempt(call: Awaitable[Any]) -> Outcome:
    """Await one twin call and classify it (never raises an InstrumentError)."""
    try:
        return Outcome(Fate.OK, await call)
    except InstrumentFault as exc:
        return Outcome(Fate.REFUSED, message=exc.message)
    except InstrumentTimeout:
        return Outcome(Fate.SILENT)
    except ProtocolError:
        return Outcome(Fate.GARBLED)
    except ConnectionLost:
        return Outcome(Fate.LOST)


async def ensure_link(twin: Any) -> bool:
    """(Re)connect the twin's simulated link; False while a scheduled disconnect lasts."""
    is_connected = getattr(twin, "is_connected", True)
    if is_connected:
        return True
    try:
        await twin.connect()
    except ConnectionLost:
        return False
    return True


class WireServer(Protocol):
    """One twin served on its device's protocol: start, stop, and where to reach it."""

    name: str

    async def start(self) -> None:
        """Bind/open every endpoint and start serving."""
        ...

    async def stop(self) -> None:
        """Close every endpoint and connection; idempotent."""
        ...

    def endpoints(self) -> dict[str, str]:
        """What a driver connects to, by role (``control``, ``stream``, ``serial``...)."""
        ...


ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TcpEndpoint:
    """A TCP listener that remembers its connections so stop() can close every one."""

    def __init__(self, host: str, port: int, handler: ConnectionHandler) -> None:
        self.host = host
        self.port = port
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """``host:port`` as bound (the real port when 0 was asked for)."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0 picks a free port, read back into ``port``)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the driver went away: nothing to answer
        except asyncio.LimitOverrunError:
            log.warning("%s: a request without terminator filled the buffer", self.address)
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    def drop_connections(self) -> None:
        """Close every open connection (a device that dropped its link); keep listening."""
        for writer in list(self._writers):
            writer.close()

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for their handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.drop_connections()
        # Closed connections end their handlers (EOF); cancel only what is still stuck,
        # since cancelling a connection task makes asyncio log it as an error.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)


class PtyEndpoint:
    """A pseudo-terminal: the driver opens ``slave_path``; the server reads the master side.

    The server keeps its own handle on the slave open, so the master never sees EIO while
    no driver has the port open (a cable with nobody on the other end is just silent).
    ``link`` (optional) is a stable symlink to the slave path, created at start and removed
    at stop, because /dev/pts/N changes on every start.
    """

    def __init__(self, on_bytes: Callable[[bytes], None], *, link: Path | None = None) -> None:
        self._on_bytes = on_bytes
        self._link = link
        self._master: int | None = None
        self._slave: int | None = None
        self.slave_path = ""
        self._linked = False
        self._made_dir = False

    @property
    def path(self) -> str:
        """What a driver opens: the symlink when there is one, else the slave path."""
        return str(self._link) if self._link is not None else self.slave_path

    def start(self) -> None:
        """Open the pty in raw mode, start reading, create the symlink."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: bytes pass as sent
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_path = os.ttyname(slave)
        asyncio.get_running_loop().add_reader(master, self._readable)
        if self._link is not None:
            self._made_dir = not self._link.parent.exists()
            self._link.parent.mkdir(parents=True, exist_ok=True)
            if self._link.is_symlink():
                self._link.unlink()  # a stale link from a server that was killed
            self._link.symlink_to(self.slave_path)
            self._linked = True

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:
            return  # EIO between openers on some kernels: nothing to read
        if data:
            self._on_bytes(data)

    def write(self, data: bytes) -> None:
        """Send bytes towards the driver (dropped when the pty is closed)."""
        if self._master is None or not data:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                log.warning("pty %s: driver side full, dropping %d bytes", self.path, len(view))
                return
            view = view[written:]

    def stop(self) -> None:
        """Stop reading, close both sides and remove the symlink we created."""
        master, slave, self._master, self._slave = self._master, self._slave, None, None
        if master is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(master)
            os.close(master)
        if slave is not None:
            os.close(slave)
        if self._linked and self._link is not None:
            with contextlib.suppress(FileNotFoundError):
                if self._link.is_symlink() and os.readlink(self._link) == self.slave_path:
                    self._link.unlink()
            self._linked = False
            if self._made_dir:
                with contextlib.suppress(OSError):  # still holds another server's links
                    self._link.parent.rmdir()


def split_lines(buffer: bytearray, terminator: bytes) -> list[bytes]:
    """Pop every complete line (terminator removed) from ``buffer``."""
    lines: list[bytes] = []
    while True:
        index = buffer.find(terminator)
        if index < 0:
            return lines
        lines.append(bytes(buffer[:index]))
        del buffer[: index + len(terminator)]


class SerialDevice:
    """A device on a pseudo-terminal: bytes in, one request at a time through ``handle``.

    Subclasses implement ``take(buffer)`` (pop one complete request or None) and
    ``handle(request)`` (the reply bytes, empty for silence). A LOST outcome on a serial
    line is silence too: an RS-232 cable cannot be "closed" by the device.
    """

    name: str

    def __init__(self, *, link: Path | None = None) -> None:
        self._pty = PtyEndpoint(self._received, link=link)
        self._buffer = bytearray()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        """The serial port a driver opens (stable symlink, or the pty's slave path)."""
        return self._pty.path

    @property
    def slave_path(self) -> str:
        """The pseudo-terminal's /dev/pts/N."""
        return self._pty.slave_path

    async def start(self) -> None:
        """Open the pty and start answering."""
        self._pty.start()
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop answering and close the pty (removing the symlink)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._pty.stop()

    def endpoints(self) -> dict[str, str]:
        """``serial``: the port path; ``pty``: the slave device it points at."""
        return {"serial": self.path, "pty": self.slave_path}

    def _received(self, data: bytes) -> None:
        self._buffer += data
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (request := self.take(self._buffer)) is not None:
                try:
                    reply = await self.handle(request)
                except Exception:  # a bug in one reply must not kill the port
                    log.exception("%s: request %r failed", self.name, request)
                    continue
                self._pty.write(reply)

    def take(self, buffer: bytearray) -> bytes | None:  # pragma: no cover - overridden
        """Pop one complete request from ``buffer`` (None until one is complete)."""
        raise NotImplementedError

    async def handle(self, request: bytes) -> bytes:  # pragma: no cover - overridden
        """The reply to one request (b"" = say nothing)."""
        raise NotImplementedError

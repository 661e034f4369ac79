"""A real local TCP instrument for the transport tests: an asyncio server speaking lines.

Commands it understands (one per line):
  ``ECHO x``  -> ``X`` upper-cased, newline-terminated
  ``SLOW n``  -> ``r{n}-`` then, 5 ms later, ``{n}\\n`` (an interleaving detector)
  ``CRLF``    -> ``crlf\\r\\n``
  ``BIN n``   -> n bytes 0,1,2,...,255,0,... (newlines included), no terminator
  ``SILENT``  -> nothing, ever
  ``DROP``    -> ``part`` of a reply, then the server closes the connection
  ``FLOOD``   -> 64 KiB chunks of ``x`` without a terminator, up to 2 MiB
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from labctl.interfaces.build import TransportSpec
from labctl.transport import Transport, make_transport

FLOOD_LIMIT_BYTES = 2 << 20


async def _serve_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            command, _, arg = line.strip().decode().partition(" ")
            if command == "ECHO":
                writer.write(arg.upper().encode() + b"\n")
            elif command == "SLOW":
                writer.write(f"r{arg}-".encode())
                await writer.drain()
                await asyncio.sleep(0.005)
                writer.write(f"{arg}\n".encode())
            elif command == "CRLF":
                writer.write(b"crlf\r\n")
            elif command == "BIN":
                writer.write(bytes(i % 256 for i in range(int(arg))))
            elif command == "DROP":
                writer.write(b"part")
                await writer.drain()
                break
            elif command == "FLOOD":
                for _ in range(FLOOD_LIMIT_BYTES // 65536):
                    writer.write(b"x" * 65536)
                    await writer.drain()
            # SILENT and anything unknown: no reply at all
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.fixture
async def line_server() -> AsyncIterator[int]:
    """Port of a running line server on 127.0.0.1."""
    server = await asyncio.start_server(_serve_lines, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    async with server:
        yield port
        server.close()


TransportFactory = Callable[..., Transport]

# The same server reached three ways: raw asyncio TCP, pyserial socket://, pyvisa SOCKET.
ADDRESS_FORMS = {
    "tcp": ("tcp", "127.0.0.1:{port}"),
    "serial-socket": ("serial", "socket://127.0.0.1:{port}"),
    "visa-socket": ("visa", "TCPIP::127.0.0.1::{port}::SOCKET"),
}


@pytest.fixture(params=sorted(ADDRESS_FORMS))
def stream_kind(request: pytest.FixtureRequest) -> str:
    """Each byte-stream flavour in turn: tcp, serial-socket, visa-socket."""
    return str(request.param)


def _factory(stream_kind: str, port: int) -> TransportFactory:
    kind, template = ADDRESS_FORMS[stream_kind]

    def build(timeout_s: float = 1.0, **options: object) -> Transport:
        spec = TransportSpec(
            kind=kind,  # type: ignore[arg-type]
            address=template.format(port=port),
            timeout_s=timeout_s,
            options=dict(options),
        )
        return make_transport(spec, instrument=f"dut-{stream_kind}")

    return build


@pytest.fixture
def stream_transport(stream_kind: str, line_server: int) -> TransportFactory:
    """A factory of (unopened) transports of one byte-stream kind to the line server."""
    return _factory(stream_kind, line_server)


@pytest.fixture
def refused_transport(stream_kind: str) -> TransportFactory:
    """A factory of transports of one byte-stream kind to a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return _factory(stream_kind, port)


@pytest.fixture
def stalled_transport(stream_kind: str) -> Iterator[TransportFactory]:
    """A factory of transports to a listener whose backlog is full: connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    # With backlog 0 the kernel completes one handshake; later SYNs go unanswered.
    filler = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    try:
        yield _factory(stream_kind, port)
    finally:
        filler.close()
        listener.close()

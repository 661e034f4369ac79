"""JSON-RPC 2.0 over HTTP/1.1 POST on one keep-alive TCP connection (asyncio streams).

Each call is one ``POST <path>`` whose body is a JSON-RPC request; the reply body is the
JSON-RPC response. The connection is reused between calls (HTTP/1.1 keep-alive); when the
server announced ``Connection: close`` or closed an idle connection, the next call opens a
fresh one. A connection that breaks *during* a call raises ConnectionLost, as every other
transport does, and the caller decides whether to retry.

Request bodies are never logged (a body may carry secret pattern data): DEBUG lines show
the method name and the body size only. Large bodies go out in slices, each under the
write timeout, so a slow link is not mistaken for a dead one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

from labctl.interfaces.errors import (
    ConnectionLost,
    InstrumentFault,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES
from labctl.transport.tcp import TcpTransport

log = logging.getLogger("labctl.transport")

JSONValue = Any  # JSON-RPC params and results are plain JSON values
HEADER_END = b"\r\n\r\n"
MAX_HEADER_BYTES = 16384
SEND_SLICE_BYTES = 1 << 20


class JsonRpcError(InstrumentFault):
    """The server answered with a JSON-RPC error object (``code`` and ``message``)."""

    def __init__(self, code: int, message: str, *, instrument: str, command: str) -> None:
        self.code = code
        self.rpc_message = message
        super().__init__(
            f"JSON-RPC error {code}: {message}", instrument=instrument, command=command
        )


class JsonRpcHttpTransport(TcpTransport):
    """A TCP link to ``host:port`` that makes JSON-RPC calls as HTTP POSTs to ``path``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        instrument: str,
        path: str = "/json-rpc",
        timeout_s: float = 2.0,
        open_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        super().__init__(
            host,
            port,
            instrument=instrument,
            timeout_s=timeout_s,
            open_timeout_s=open_timeout_s,
            max_reply_bytes=max_reply_bytes,
        )
        if not path.startswith("/"):
            raise ValueError(f"JSON-RPC path must start with '/', got {path!r}")
        self._path = path
        self._host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._next_id = 0
        self._reopen = False  # the server closed the connection politely: reopen on demand
        self.bytes_sent = 0
        self.bytes_received = 0

    def peer_closed_idle(self) -> bool:
        """True when the server closed the idle keep-alive connection.

        The next call reopens it silently; a driver that holds device state may take it
        as a sign that the device restarted (a server restart closes every connection).
        """
        return self.is_open and self._reader is not None and self._reader.at_eof()

    @property
    def path(self) -> str:
        """The HTTP path every call is posted to."""
        return self._path

    async def open(self) -> None:
        """Open the connection; a later call may reopen it after a polite close."""
        self._reopen = False
        await super().open()

    async def close(self) -> None:
        """Close the connection; the next call raises ConnectionLost until open()."""
        self._reopen = False
        await super().close()

    async def call(
        self, method: str, params: Sequence[JSONValue] = (), *, timeout_s: float | None = None
    ) -> JSONValue:
        """Call ``method(*params)`` and return its result; errors name ``method``.

        JSON-RPC error objects raise JsonRpcError (an InstrumentFault); a reply that is not
        HTTP or not JSON-RPC raises ProtocolError; silence raises InstrumentTimeout.
        """
        async with self.transaction():
            await self._ensure_connection()
            self._next_id += 1
            request_id = self._next_id
            body = json.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)},
                separators=(",", ":"),
            ).encode("utf-8")
            try:
                await self._send_request(body, method)
                while True:
                    status, headers, payload = await self._read_response(method, timeout_s)
                    if not _stale(payload, request_id):
                        break
                    # The reply to an earlier call its caller gave up on: not this one's.
                    log.debug("%s: skipped a late reply before %s's", self.instrument, method)
                if headers.get("connection", "").lower() == "close":
                    await super().close()
                    self._reopen = True
                return self._result(status, payload, request_id, method)
            except (ConnectionLost, JsonRpcError):
                raise  # closed already, or a clean answer (an error object) on a good link
            except BaseException:
                # A late, half-read or never-read reply would be taken for the next call's:
                # after a timeout, a bad reply, a request half sent or a call cancelled by
                # its caller (a supervisor's deadline), the next call starts afresh.
                self._reopen = True
                await super().close()
                raise

    # -- HTTP -------------------------------------------------------------------------------

    async def _ensure_connection(self) -> None:
        idle_closed = self._reader is not None and self._reader.at_eof()
        if idle_closed and self.is_open:
            # A keep-alive connection the server closed while idle: not a fault.
            await super().close()
            self._reopen = True
        if self._reopen and not self.is_open:
            await self.open()

    async def _send_request(self, body: bytes, method: str) -> None:
        head = (
            f"POST {self._path} HTTP/1.1\r\n"
            f"Host: {self._host_header}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        ).encode("ascii")
        log.debug("%s: -> POST %s %s (%d bytes)", self.instrument, self._path, method, len(body))
        self._require_open(method)
        pieces = [head + body] if len(body) < SEND_SLICE_BYTES else [head, *_slices(body)]
        for piece in pieces:
            try:
                await asyncio.wait_for(self._send(piece), self.timeout_s)
            except TimeoutError:
                raise InstrumentTimeout(
                    f"write not accepted by {self.resource} within {self.timeout_s:g} s",
                    instrument=self.instrument,
                    command=method,
                ) from None
            except (OSError, EOFError) as exc:
                raise await self._lost(method, exc) from exc
            self.bytes_sent += len(piece)

    async def _read_response(
        self, method: str, timeout_s: float | None
    ) -> tuple[int, dict[str, str], bytes]:
        raw = await self.read_until(HEADER_END, command=method, timeout_s=timeout_s)
        if len(raw) > MAX_HEADER_BYTES:
            raise self._protocol(method, f"HTTP header of {len(raw)} bytes")
        status, headers = self._parse_head(raw, method)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._read_chunked(method, timeout_s)
        else:
            length_text = headers.get("content-length")
            if length_text is None or not length_text.isdigit():
                raise self._protocol(method, f"HTTP reply without a usable Content-Length: {raw!r}")
            payload = await self.read_exact(int(length_text), command=method, timeout_s=timeout_s)
        self.bytes_received += len(raw) + len(HEADER_END) + len(payload)
        return status, headers, payload

    async def _read_chunked(self, method: str, timeout_s: float | None) -> bytes:
        payload = bytearray()
        while True:
            size_line = await self.read_until(b"\r\n", command=method, timeout_s=timeout_s)
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise self._protocol(method, f"bad chunk size {size_line!r}") from None
            if size == 0:
                await self.read_until(b"\r\n", command=method, timeout_s=timeout_s)
                return bytes(payload)
            if len(payload) + size > self.max_reply_bytes:
                raise self._protocol(method, f"chunked reply over {self.max_reply_bytes} bytes")
            payload += await self.read_exact(size, command=method, timeout_s=timeout_s)
            await self.read_exact(2, command=method, timeout_s=timeout_s)

    def _parse_head(self, raw: bytes, method: str) -> tuple[int, dict[str, str]]:
        try:
            text = raw.decode("iso-8859-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise self._protocol(method, "undecodable HTTP header") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise self._protocol(method, f"not an HTTP status line: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise self._protocol(method, f"bad HTTP header line {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    # -- JSON-RPC ---------------------------------------------------------------------------

    def _result(self, status: int, payload: bytes, request_id: int, method: str) -> JSONValue:
        try:
            reply = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            detail = f"HTTP {status}" if status != 200 else "reply"
            raise self._protocol(method, f"{detail} body is not JSON: {payload[:80]!r}") from None
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0":
            raise self._protocol(method, f"not a JSON-RPC 2.0 reply (HTTP {status})")
        error = reply.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise self._protocol(method, "JSON-RPC error is not an object")
            code = error.get("code")
            message = error.get("message", "")
            raise JsonRpcError(
                code if isinstance(code, int) else 0,
                str(message),
                instrument=self.instrument,
                command=method,
            )
        if reply.get("id") != request_id:
            raise self._protocol(
                method, f"reply id {reply.get('id')!r} does not match request id {request_id}"
            )
        if status != 200:
            raise self._protocol(method, f"HTTP status {status} with a result")
        if "result" not in reply:
            raise self._protocol(method, "JSON-RPC reply has neither result nor error")
        return reply["result"]

    def _protocol(self, method: str, message: str) -> ProtocolError:
        return ProtocolError(message, instrument=self.instrument, command=method)


def _stale(payload: bytes, request_id: int) -> bool:
    """True when ``payload`` is a JSON-RPC reply to an earlier request than ``request_id``."""
    try:
        reply = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    reply_id = reply.get("id") if isinstance(reply, dict) else None
    return isinstance(reply_id, int) and not isinstance(reply_id, bool) and reply_id < request_id


def _slices(body: bytes) -> list[bytes]:
    return [body[i : i + SEND_SLICE_BYTES] for i in range(0, len(body), SEND_SLICE_BYTES)]

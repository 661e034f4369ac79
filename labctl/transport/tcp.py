"""Raw TCP transport on asyncio streams (``host:port``): nothing blocks, nothing to thread."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES, BufferedTransport
from labctl.transport.recovery import ReconnectPolicy

_CLOSE_WAIT_S = 1.0


class TcpTransport(BufferedTransport):
    """A raw TCP byte link to ``host:port`` (SCPI-over-socket, JSON lines, ...)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        instrument: str,
        timeout_s: float = 2.0,
        open_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
    ) -> None:
        if not host:
            raise ValueError("TcpTransport needs a host")
        if not 0 < port < 65536:
            raise ValueError(f"TcpTransport port must be 1..65535, got {port}")
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        super().__init__(
            instrument=instrument,
            resource=f"tcp://{shown}",
            timeout_s=timeout_s,
            open_timeout_s=open_timeout_s,
            max_reply_bytes=max_reply_bytes,
            reconnect=reconnect,
        )
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def _disconnect(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is None:
            return
        writer.close()
        # A peer that stopped reading must not keep close() waiting forever.
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_WAIT_S)

    async def _send(self, data: bytes) -> None:
        if self._writer is None:
            raise ConnectionResetError("not connected")
        self._writer.write(data)
        await self._writer.drain()

    async def _recv_some(self, max_bytes: int, timeout_s: float, stop_byte: int | None) -> bytes:
        if self._reader is None:
            raise ConnectionResetError("not connected")
        # Cancelling StreamReader.read on timeout loses nothing: bytes stay in its buffer.
        chunk = await asyncio.wait_for(self._reader.read(max_bytes), timeout_s)
        if not chunk:
            raise EOFError("peer closed the connection")
        return chunk

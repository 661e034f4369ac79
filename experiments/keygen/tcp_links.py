"""W authenticated TCP channels between Alice and Bob, one per post-processing worker.

Each worker's channel is authenticated under its own key derived from the pre-shared key
(HMAC-SHA256 of the worker index): every channel numbers its frames from zero, so under one
shared key a frame of worker 0 would also verify on worker 1 at the same sequence number.
Bob connects the channels in worker order and opens each with a ``link/worker`` message
naming its index, so Alice pairs them whatever order the connections are accepted in.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable

from labctl.qkd.auth import AuthenticatedChannel, TcpTransport
from labctl.qkd.errors import MessageFormatError

_WORKER_LABEL = b"labctl keygen worker channel "


def worker_psk(psk: bytes, worker: int) -> bytes:
    """The authentication key of worker ``worker``'s channel (distinct for each worker)."""
    if worker < 0:
        raise ValueError(f"worker index must be >= 0, got {worker}")
    return hmac.new(psk, _WORKER_LABEL + str(worker).encode(), hashlib.sha256).digest()


async def connect_channels(
    host: str, port: int, workers: int, psk: bytes, timeout_s: float
) -> list[AuthenticatedChannel]:
    """Bob's side: ``workers`` channels to Alice, in worker order."""
    channels: list[AuthenticatedChannel] = []
    try:
        for w in range(workers):
            transport = await TcpTransport.connect(host, port, timeout_s)
            # The index goes in clear in the first frame's kind: Alice needs it to pick the
            # key; a wrong index simply fails authentication.
            channel = AuthenticatedChannel(transport, worker_psk(psk, w), "bob", timeout_s)
            channels.append(channel)
            await channel.send(f"link/worker/{w}", b"")
    except BaseException:
        for ch in channels:
            await ch.close()
        raise
    return channels


async def accept_channels(
    host: str,
    port: int,
    workers: int,
    psk: bytes,
    timeout_s: float,
    on_listening: Callable[[str, int], None],
) -> list[AuthenticatedChannel]:
    """Alice's side: accept ``workers`` channels; returned in Bob's worker order."""
    accepted: asyncio.Queue[TcpTransport] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(TcpTransport(reader, writer))

    server = await asyncio.start_server(on_connect, host, port)
    bound = server.sockets[0].getsockname()
    on_listening(str(bound[0]), int(bound[1]))
    by_worker: dict[int, AuthenticatedChannel] = {}
    try:
        while len(by_worker) < workers:
            transport = await asyncio.wait_for(accepted.get(), timeout_s)
            frame = await transport.recv_frame(timeout_s)
            worker = _worker_of(frame, workers)
            channel = AuthenticatedChannel(
                _Replay(frame, transport), worker_psk(psk, worker), "alice", timeout_s
            )
            await channel.recv(expect=f"link/worker/{worker}", timeout_s=timeout_s)
            if worker in by_worker:
                raise MessageFormatError(f"link/worker: worker {worker} connected twice")
            by_worker[worker] = channel
    except BaseException:
        for ch in by_worker.values():
            await ch.close()
        raise
    finally:
        server.close()
    return [by_worker[w] for w in range(workers)]


def _worker_of(frame: bytes, workers: int) -> int:
    """The worker index named by the (not yet authenticated) first frame's kind."""
    # Frame layout (labctl.qkd.auth): 8-byte seq, 1-byte kind length, kind, payload, MAC.
    if len(frame) < 9:
        raise MessageFormatError("link/worker: short first frame")
    n = frame[8]
    kind = frame[9 : 9 + n].decode("ascii", errors="replace")
    prefix = "link/worker/"
    index = kind.removeprefix(prefix)
    if not kind.startswith(prefix) or not index.isdigit() or int(index) >= workers:
        raise MessageFormatError(f"link/worker: unexpected first message {kind!r}")
    return int(index)


class _Replay:
    """A transport that hands back one frame already read, then reads on as usual."""

    def __init__(self, first: bytes, transport: TcpTransport) -> None:
        self._first: bytes | None = first
        self._transport = transport

    async def send_frame(self, frame: bytes) -> None:
        await self._transport.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        return await self._transport.recv_frame(timeout_s)

    async def close(self) -> None:
        await self._transport.close()

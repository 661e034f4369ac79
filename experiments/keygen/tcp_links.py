"""W authenticated TCP channels between Alice and Bob, one per post-processing worker.

Each worker's channel is authenticated under its own key derived from the pre-shared key
(HMAC-SHA256 of the worker index): every channel numbers its frames from zero, so under one
shared key a frame of worker 0 would also verify on worker 1 at the same sequence number.
Bob connects the channels in worker order and opens each with a ``link/worker`` message
naming its index (payload: his worker count), so Alice pairs them whatever order the
connections are accepted in; she answers ``link/ok`` (her worker count) on each, or hangs up
when the counts differ, so a mismatch is an error at connect time on both sides, not a hang.
A single channel (``--workers 1``) has no such handshake: :class:`SingleChannelGuard` names
the likely cause when its peer turns out to run workers.

Frames travel on :class:`FrameStream`, an asyncio Protocol speaking the same wire format as
``labctl.qkd.auth.TcpTransport`` (4-byte big-endian length, frame) with less work per
frame: frames are cut out of the receive buffer as bytes arrive, a recv whose frame is
already there returns without suspending, the timeout is one timer instead of a
``wait_for`` per read, and a send only waits when the socket buffer is full. Cascade
exchanges ~200-500 short messages per block, and this halves their CPU on both sides
(benchmarks/README.md "qkd live").
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import struct
from collections.abc import Callable

from labctl.qkd.auth import MAX_FRAME_BYTES, AuthenticatedChannel, FrameTransport
from labctl.qkd.errors import ChannelClosed, ChannelError, ChannelTimeout, MessageFormatError

_LENGTH = struct.Struct(">I")

_WORKER_LABEL = b"labctl keygen worker channel "
_HELLO_PREFIX = "link/worker/"


class WorkerCountMismatch(ChannelError):
    """Alice and Bob were started with different worker counts (``--workers``)."""


def worker_psk(psk: bytes, worker: int) -> bytes:
    """The authentication key of worker ``worker``'s channel (distinct for each worker)."""
    if worker < 0:
        raise ValueError(f"worker index must be >= 0, got {worker}")
    return hmac.new(psk, _WORKER_LABEL + str(worker).encode(), hashlib.sha256).digest()


async def connect_channels(
    host: str,
    port: int,
    workers: int,
    psk: bytes,
    timeout_s: float,
    *,
    channel_timeout_s: float | None = None,
    control: bool = False,
) -> list[AuthenticatedChannel]:
    """Bob's side: ``workers`` channels to Alice, in worker order (then, with ``control``,
    one more for the control link, under its own derived key).

    ``timeout_s`` bounds each connect and handshake; ``channel_timeout_s`` (default
    ``timeout_s``) is the channels' receive timeout afterwards. A WorkerCountMismatch when
    Alice runs a different number of workers (she hangs up or answers another count).
    """
    channels: list[AuthenticatedChannel] = []
    try:
        for w in range(workers + int(control)):
            transport = await FrameStream.connect(host, port, timeout_s)
            # The index goes in clear in the first frame's kind: Alice needs it to pick the
            # key; a wrong index simply fails authentication.
            channel = AuthenticatedChannel(
                transport, worker_psk(psk, w), "bob", channel_timeout_s or timeout_s
            )
            channels.append(channel)
            await channel.send(f"{_HELLO_PREFIX}{w}", _count(workers))
            # Wait for Alice's answer before the next connection: a mismatch is found on
            # worker 0, before Bob spends anything on calibration.
            try:
                answer = await channel.recv(expect="link/ok", timeout_s=timeout_s)
            except ChannelClosed:
                raise WorkerCountMismatch(
                    f"Alice hung up on worker channel {w} during the handshake: she runs a "
                    f"different --workers (this Bob: {workers}) or another pre-shared key"
                ) from None
            theirs = _count_of(answer.payload, "link/ok")
            if theirs != workers:
                raise WorkerCountMismatch(
                    f"Alice runs --workers {theirs}, this Bob --workers {workers}"
                )
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
    *,
    channel_timeout_s: float | None = None,
    control: bool = False,
) -> list[AuthenticatedChannel]:
    """Alice's side: accept ``workers`` channels (and the control link's, last, with
    ``control``); returned in Bob's worker order.

    A WorkerCountMismatch (after hanging up) when Bob runs another number of workers.
    """
    accepted: asyncio.Queue[FrameStream] = asyncio.Queue()

    def on_connect() -> FrameStream:
        stream = FrameStream()
        accepted.put_nowait(stream)
        return stream

    server = await asyncio.get_running_loop().create_server(on_connect, host, port)
    bound = server.sockets[0].getsockname()
    on_listening(str(bound[0]), int(bound[1]))
    by_worker: dict[int, AuthenticatedChannel] = {}
    try:
        total = workers + int(control)
        while len(by_worker) < total:
            transport = await asyncio.wait_for(accepted.get(), timeout_s)
            frame = await transport.recv_frame(timeout_s)
            try:
                worker = _worker_of(frame, workers, total)
            except BaseException:
                await transport.close()
                raise
            channel = AuthenticatedChannel(
                _Replay(frame, transport),
                worker_psk(psk, worker),
                "alice",
                channel_timeout_s or timeout_s,
            )
            try:
                hello = await channel.recv(expect=f"{_HELLO_PREFIX}{worker}", timeout_s=timeout_s)
                theirs = _count_of(hello.payload, "link/worker")
                if theirs != workers:
                    raise WorkerCountMismatch(
                        f"Bob runs --workers {theirs}, this Alice --workers {workers}"
                    )
                if worker in by_worker:
                    raise MessageFormatError(f"link/worker: worker {worker} connected twice")
            except BaseException:
                await channel.close()  # Bob, waiting for link/ok, finds the link closed
                raise
            await channel.send("link/ok", _count(workers))
            by_worker[worker] = channel
    except BaseException:
        for ch in by_worker.values():
            await ch.close()
        raise
    finally:
        server.close()
    return [by_worker[w] for w in range(total)]


def _worker_of(frame: bytes, workers: int, total: int) -> int:
    """The worker index named by the (not yet authenticated) first frame's kind."""
    if len(frame) < 9:
        raise MessageFormatError("link/worker: short first frame")
    kind = _kind_of(frame)
    index = kind.removeprefix(_HELLO_PREFIX)
    if not kind.startswith(_HELLO_PREFIX):
        # A single-channel Bob (--workers 1) opens with block/start after calibrating.
        raise WorkerCountMismatch(
            f"Bob's first message is {kind!r}, not a worker hello: he runs --workers 1, "
            f"this Alice --workers {workers}"
        )
    if not index.isdigit() or int(index) >= total:
        raise MessageFormatError(f"link/worker: unexpected first message {kind!r}")
    return int(index)


def _kind_of(frame: bytes) -> str:
    # Frame layout (labctl.qkd.auth): 8-byte seq, 1-byte kind length, kind, payload, MAC.
    n = frame[8] if len(frame) > 8 else 0
    return frame[9 : 9 + n].decode("ascii", errors="replace")


def _count(workers: int) -> bytes:
    return json.dumps({"workers": workers}).encode()


def _count_of(payload: bytes, what: str) -> int:
    try:
        count = json.loads(payload)["workers"]
    except (ValueError, KeyError, TypeError):
        raise MessageFormatError(f"{what}: no worker count") from None
    if not isinstance(count, int) or count < 1:
        raise MessageFormatError(f"{what}: bad worker count {count!r}")
    return count


class SingleChannelGuard:
    """A single channel's transport (``--workers 1``, no handshake on the wire).

    A first frame that is a worker hello means the peer runs several workers; a peer that
    hangs up before its first frame most likely runs another ``--workers`` (or another
    pre-shared key): both become errors that say so instead of a bare MAC or closed link.
    """

    def __init__(self, transport: FrameTransport, peer: str) -> None:
        self._transport = transport
        self._peer = peer
        self._heard = False

    def _closed(self, exc: ChannelClosed) -> ChannelClosed:
        if self._heard:
            return exc
        return ChannelClosed(
            f"{exc}; {self._peer} hung up before its first message: does it run with the "
            "same --workers (this node: 1) and pre-shared key?"
        )

    async def send_frame(self, frame: bytes) -> None:
        try:
            await self._transport.send_frame(frame)
        except ChannelClosed as exc:
            raise self._closed(exc) from None

    async def recv_frame(self, timeout_s: float) -> bytes:
        try:
            frame = await self._transport.recv_frame(timeout_s)
        except ChannelClosed as exc:
            raise self._closed(exc) from None
        if not self._heard and _kind_of(frame).startswith(_HELLO_PREFIX):
            await self._transport.close()
            raise WorkerCountMismatch(
                f"{self._peer} opened a worker channel ({_kind_of(frame)!r}): it runs "
                "--workers > 1, this node --workers 1"
            )
        self._heard = True
        return frame

    async def close(self) -> None:
        await self._transport.close()


class _Replay:
    """A transport that hands back one frame already read, then reads on as usual."""

    def __init__(self, first: bytes, transport: FrameStream) -> None:
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


class FrameStream(asyncio.Protocol):
    """A FrameTransport on an asyncio Protocol (length-prefixed frames over TCP)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._frames: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._error: str | None = None
        self._closed = False

    @classmethod
    async def connect(cls, host: str, port: int, timeout_s: float) -> FrameStream:
        """Open a connection to a listening peer."""
        loop = asyncio.get_running_loop()
        try:
            _, stream = await asyncio.wait_for(loop.create_connection(cls, host, port), timeout_s)
        except TimeoutError:
            raise ChannelTimeout(
                f"tcp {host}:{port}: connect timed out after {timeout_s} s"
            ) from None
        except OSError as exc:
            raise ChannelError(f"tcp {host}:{port}: connect failed: {exc}") from None
        return stream

    # asyncio.Protocol callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buf)
            if length > MAX_FRAME_BYTES:
                self._error = f"tcp: announced frame of {length} bytes exceeds the limit"
                self._wake()
                if self._transport is not None:
                    self._transport.close()
                return
            end = _LENGTH.size + length
            if len(buf) < end:
                break
            self._frames.append(bytes(buf[_LENGTH.size : end]))
            del buf[:end]
        if self._frames:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # FrameTransport
    async def send_frame(self, frame: bytes) -> None:
        """Write length prefix and frame; waits only while the socket buffer is full."""
        if len(frame) > MAX_FRAME_BYTES:
            raise ChannelError(f"tcp: frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
        if self._closed or self._transport is None or self._transport.is_closing():
            raise ChannelClosed("tcp: send on a closed connection")
        self._transport.writelines((_LENGTH.pack(len(frame)), frame))
        if self._writable is not None:
            await self._writable

    async def recv_frame(self, timeout_s: float) -> bytes:
        """The next frame (ChannelTimeout after ``timeout_s``, ChannelClosed at the end)."""
        if not self._frames and self._error is None and not self._closed:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout_s, _expire, waiter)
            try:
                await waiter
            except TimeoutError:
                raise ChannelTimeout(f"tcp: no frame within {timeout_s} s") from None
            finally:
                timer.cancel()
                self._waiter = None
        if self._frames:
            return self._frames.popleft()
        if self._error is not None:
            raise ChannelError(self._error)
        raise ChannelClosed("tcp: peer closed the connection")

    async def close(self) -> None:
        """Close the connection (frames already written are flushed first)."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())

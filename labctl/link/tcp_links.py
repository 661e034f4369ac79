"""W authenticated TCP channels between Alice and Bob, one per post-processing worker.

Each worker's channel is authenticated under its own key derived from the pre-shared key
(HMAC-SHA256 of the worker index): every channel numbers its frames from zero, so under one
shared key a frame of worker 0 would also verify on worker 1 at the same sequence number.
Bob connects the channels in worker order and opens each with a ``link/worker`` message
naming its index (payload: his worker count), so Alice pairs them whatever order the
connections are accepted in; she answers ``link/ok`` (her worker count) on each, or hangs up
when the counts differ, so a mismatch is an error at connect time on both sides, not a hang.

Alice's listener faces whoever can reach the port. Until a connection's hello verifies it is
nobody's: Alice first sends it a fresh random challenge (a raw frame) that Bob's hello must
carry under its MAC (a hello recorded from another session does not verify), the hello must
arrive within ``handshake_timeout_s`` and within ``HANDSHAKE_MAX_FRAME_BYTES``, and at most
``max_pending`` such connections are kept (the oldest is dropped for a new one, so a flood
of idle connections cannot hold the port against Bob). Garbage, oversized length prefixes,
truncated frames, a bad MAC, a replayed hello or silence close that connection only (the
``on_rejected`` callback says why) and Alice keeps waiting: a port scan does not take the
link down. Only an *authenticated* hello naming another worker count ends the wait (that is
Bob, misconfigured). A wrong pre-shared key therefore looks like a stranger to Alice: Bob
finds the connection closed during the handshake and says so, Alice waits on.
:class:`SingleChannelGuard` names the likely cause on a plain channel without handshake.

Frames travel on :class:`labctl.qkd.auth.channel.FrameStream` (4-byte big-endian length,
frame), an asyncio Protocol: frames are cut out of the receive buffer as bytes arrive, a
recv whose frame is already there returns without suspending, the timeout is one timer
instead of a ``wait_for`` per read, and a send only waits when the socket buffer is full
(Cascade exchanges hundreds of short messages per block; benchmarks/README.md "qkd live").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from labctl.qkd.auth.channel import (
    MAX_FRAME_BYTES,
    AuthenticatedChannel,
    FrameStream,
    FrameTransport,
)
from labctl.qkd.auth.transcript import AuthPool, TranscriptAuthenticator
from labctl.qkd.errors import (
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    MessageFormatError,
    QkdError,
)

_WORKER_LABEL = b"labctl keygen worker channel "
_HELLO_PREFIX = "link/worker/"
_CHALLENGE_PREFIX = b"link/challenge:"
CHALLENGE_BYTES = 16

HANDSHAKE_TIMEOUT_S = 10.0
"""A connection that has not sent an authentic hello by then is closed."""
HANDSHAKE_MAX_FRAME_BYTES = 4096
"""Largest frame accepted before authentication (a hello is ~100 bytes)."""
MAX_PENDING_CONNECTIONS = 16
"""Unauthenticated connections kept at once; the oldest goes when a new one arrives."""


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
    pool: AuthPool | None = None,
) -> list[AuthenticatedChannel]:
    """Bob's side: ``workers`` channels to Alice, in worker order (then, with ``control``,
    one more for the control link, under its own derived key).

    With a Wegman-Carter ``pool``, the hellos carry its state, the first answer starts the
    session (:meth:`AuthPool.begin_session`) and every channel, the control link included,
    gets a transcript authenticator on it.

    ``timeout_s`` bounds each connect and handshake; ``channel_timeout_s`` (default
    ``timeout_s``) is the channels' receive timeout afterwards. A WorkerCountMismatch when
    Alice runs a different number of workers (she hangs up or answers another count).
    """
    channels: list[AuthenticatedChannel] = []
    mine = _auth_state(pool)
    try:
        for w in range(workers + int(control)):
            transport = await FrameStream.connect(host, port, timeout_s)
            # The index goes in clear in the first frame's kind: Alice needs it to pick the
            # key; a wrong index simply fails authentication.
            channel = AuthenticatedChannel(
                transport, worker_psk(psk, w), "bob", channel_timeout_s or timeout_s
            )
            channels.append(channel)
            challenge = await _read_challenge(transport, timeout_s, w, workers)
            await channel.send(f"{_HELLO_PREFIX}{w}", _count(workers, challenge, mine))
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
            if pool is not None:
                if w == 0:
                    pool.begin_session(_auth_of(answer.payload, "link/ok"), mine)
                channel.transcript = TranscriptAuthenticator(pool)
    except BaseException:
        for ch in channels:
            await ch.close()
        raise
    return channels


async def _read_challenge(transport: FrameStream, timeout_s: float, w: int, workers: int) -> bytes:
    """Bob: Alice's fresh challenge, the first (raw) frame on a new connection."""
    try:
        frame = await transport.recv_frame(timeout_s)
    except ChannelClosed:
        raise WorkerCountMismatch(
            f"Alice hung up on worker channel {w} before the handshake: she runs a different "
            f"--workers (this Bob: {workers}) or another pre-shared key"
        ) from None
    if not frame.startswith(_CHALLENGE_PREFIX) or len(frame) != len(_CHALLENGE_PREFIX) + (
        CHALLENGE_BYTES
    ):
        raise MessageFormatError(f"link/challenge: worker channel {w}: not a challenge frame")
    return frame[len(_CHALLENGE_PREFIX) :]


class _Rejected(Exception):
    """A connection failed the handshake before authenticating: close it, wait on."""


async def accept_channels(
    host: str,
    port: int,
    workers: int,
    psk: bytes,
    timeout_s: float,
    on_listening: Callable[[str, int], None],
    *,
    channel_timeout_s: float | None = None,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    max_pending: int = MAX_PENDING_CONNECTIONS,
    on_rejected: Callable[[str, str], None] | None = None,
    control: bool = False,
    pool: AuthPool | None = None,
) -> list[AuthenticatedChannel]:
    """Alice's side: accept ``workers`` channels (and, with ``control``, the control
    link's, last); returned in Bob's worker order.

    Waits up to ``timeout_s`` for all of them (ChannelTimeout naming what arrived). Any
    connection that fails the handshake is closed and reported as ``on_rejected(peer,
    reason)``; the wait goes on (see the module docstring). A WorkerCountMismatch (after
    hanging up) when an authenticated Bob runs another number of workers. With a
    Wegman-Carter ``pool``: as :func:`connect_channels`, the first authenticated hello
    starts the session.
    """
    if max_pending < 1:
        raise ValueError(f"accept_channels: max_pending must be >= 1, got {max_pending}")
    loop = asyncio.get_running_loop()
    by_worker: dict[int, AuthenticatedChannel] = {}
    pending: dict[FrameStream, asyncio.Task[None]] = {}  # insertion order: oldest first
    outcome: asyncio.Future[None] = loop.create_future()
    total = workers + int(control)
    mine = _auth_state(pool)
    session: list[bool] = []

    def reject(stream: FrameStream, reason: str) -> None:
        if on_rejected is not None:
            on_rejected(stream.peer, reason)

    async def handshake(stream: FrameStream) -> None:
        try:
            worker, channel, theirs = await _authenticate(
                stream, workers, total, psk, handshake_timeout_s, channel_timeout_s or timeout_s
            )
        except _Rejected as exc:
            await stream.close()
            reject(stream, str(exc))
            return
        except QkdError as exc:  # an authenticated Bob with another --workers
            await stream.close()
            if not outcome.done():
                outcome.set_exception(exc)
            return
        finally:
            pending.pop(stream, None)
        # Authenticated: this is Bob (a fresh MAC over our challenge), errors are real.
        try:
            if worker in by_worker:
                raise MessageFormatError(f"link/worker: worker {worker} connected twice")
            stream.max_frame_bytes = MAX_FRAME_BYTES
            if pool is None and theirs.get("mode") != "hmac":
                raise MessageFormatError(
                    f"Bob authenticates with {theirs.get('mode')!r}, this Alice with hmac: set "
                    "the same qkd.auth at both ends"
                )
            if pool is not None and not session:
                session.append(True)
                pool.begin_session(mine, theirs)
            await channel.send("link/ok", _count(workers, None, mine))
            if pool is not None:
                channel.transcript = TranscriptAuthenticator(pool)
        except BaseException as exc:
            await channel.close()  # Bob, waiting for link/ok, finds the link closed
            if not outcome.done():
                outcome.set_exception(exc)
            return
        by_worker[worker] = channel
        if len(by_worker) == total and not outcome.done():
            outcome.set_result(None)

    def on_made(stream: FrameStream) -> None:
        if outcome.done():
            stream.abort()
            return
        while len(pending) >= max_pending:
            oldest = next(iter(pending))
            pending.pop(oldest).cancel()
            oldest.abort()
            reject(oldest, f"dropped: more than {max_pending} connections in handshake")
        pending[stream] = loop.create_task(handshake(stream))

    def factory() -> FrameStream:
        return FrameStream(max_frame_bytes=HANDSHAKE_MAX_FRAME_BYTES, on_made=on_made)

    server = await loop.create_server(factory, host, port)
    bound = server.sockets[0].getsockname()
    on_listening(str(bound[0]), int(bound[1]))
    try:
        try:
            await asyncio.wait_for(asyncio.shield(outcome), timeout_s)
        except TimeoutError:
            raise ChannelTimeout(
                f"tcp {bound[0]}:{bound[1]}: {len(by_worker)} of {total} worker channels "
                f"authenticated within {timeout_s} s"
            ) from None
    except BaseException:
        for ch in by_worker.values():
            await ch.close()
        raise
    finally:
        server.close()
        for stream, task in list(pending.items()):
            task.cancel()
            stream.abort()
        if not outcome.done():
            outcome.cancel()
    return [by_worker[w] for w in range(total)]


async def _authenticate(
    stream: FrameStream,
    workers: int,
    total: int,
    psk: bytes,
    handshake_timeout_s: float,
    timeout_s: float,
) -> tuple[int, AuthenticatedChannel, dict[str, Any]]:
    """Challenge, then the worker hello: (worker, channel, Bob's authentication state), or
    _Rejected saying why."""
    challenge = os.urandom(CHALLENGE_BYTES)
    try:
        await stream.send_frame(_CHALLENGE_PREFIX + challenge)
        frame = await stream.recv_frame(handshake_timeout_s)
        worker = _worker_of(frame, total)
        channel = AuthenticatedChannel(
            _Replay(frame, stream), worker_psk(psk, worker), "alice", timeout_s
        )
        hello = await channel.recv(expect=f"{_HELLO_PREFIX}{worker}", timeout_s=handshake_timeout_s)
    except ChannelTimeout:
        raise _Rejected(f"no hello within {handshake_timeout_s} s") from None
    except (QkdError, UnicodeDecodeError) as exc:
        raise _Rejected(str(exc)) from None
    theirs, echoed = _hello_of(hello.payload)
    if echoed != challenge:
        raise _Rejected("link/worker: hello does not carry this connection's challenge (replay)")
    if theirs != workers:
        await channel.close()
        raise WorkerCountMismatch(f"Bob runs --workers {theirs}, this Alice --workers {workers}")
    return worker, channel, _auth_of(hello.payload, "link/worker")


def _worker_of(frame: bytes, total: int) -> int:
    """The worker index named by the (not yet authenticated) first frame's kind."""
    if len(frame) < 9:
        raise MessageFormatError("link/worker: short first frame")
    kind = _kind_of(frame)
    index = kind.removeprefix(_HELLO_PREFIX)
    if not kind.startswith(_HELLO_PREFIX):
        raise MessageFormatError(f"first message {kind[:40]!r} is not a worker hello")
    if not index.isdigit() or len(index) > 6 or int(index) >= total:
        raise MessageFormatError(f"link/worker: unexpected first message {kind[:40]!r}")
    return int(index)


def _kind_of(frame: bytes) -> str:
    # Frame layout (labctl.qkd.auth.channel): 8-byte seq, 1-byte kind length, kind, payload, MAC.
    n = frame[8] if len(frame) > 8 else 0
    return frame[9 : 9 + n].decode("ascii", errors="replace")


def _count(
    workers: int, challenge: bytes | None = None, auth: dict[str, Any] | None = None
) -> bytes:
    fields: dict[str, object] = {"workers": workers, "auth": auth or {"mode": "hmac"}}
    if challenge is not None:
        fields["challenge"] = challenge.hex()
    return json.dumps(fields).encode()


def _auth_state(pool: AuthPool | None) -> dict[str, Any]:
    """This end's authentication state for the handshake (no secrets)."""
    return {"mode": "hmac"} if pool is None else pool.state()


def _auth_of(payload: bytes, what: str) -> dict[str, Any]:
    """The peer's authentication state in a hello or link/ok (an error naming qkd.auth when
    the two ends differ in mode)."""
    try:
        auth = json.loads(payload).get("auth", {"mode": "hmac"})
    except (ValueError, AttributeError, RecursionError):
        raise MessageFormatError(f"{what}: not JSON") from None
    if not isinstance(auth, dict):
        raise MessageFormatError(f"{what}: auth must be an object")
    return auth


def _hello_of(payload: bytes) -> tuple[int, bytes]:
    """(worker count, echoed challenge) of an authenticated hello."""
    count = _count_of(payload, "link/worker")
    try:
        echoed = bytes.fromhex(json.loads(payload)["challenge"])
    except (ValueError, KeyError, TypeError):
        raise MessageFormatError("link/worker: no challenge in the hello") from None
    return count, echoed


def _count_of(payload: bytes, what: str) -> int:
    try:
        count = json.loads(payload)["workers"]
    except (ValueError, KeyError, TypeError, RecursionError):
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

    async def send_frame(self, frame: bytes | bytearray) -> None:
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

    async def send_frame(self, frame: bytes | bytearray) -> None:
        await self._transport.send_frame(frame)

    async def recv_frame(self, timeout_s: float) -> bytes:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        return await self._transport.recv_frame(timeout_s)

    async def close(self) -> None:
        await self._transport.close()

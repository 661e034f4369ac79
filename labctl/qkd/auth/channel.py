"""Authenticated classical channel between Alice and Bob.

Every message is a frame: 4-byte big-endian length, then ``seq`` (8 bytes), ``kind``
(1-byte length + ASCII), payload, and a tag over everything before it, made by the channel's
:class:`ChannelAuthenticator`. A :class:`TranscriptHook` adds information-theoretic
checkpoints over the transcript (``labctl.qkd.auth.transcript``, what key generation uses by
default). Per message the default is :class:`HmacAuthenticator`, a 32-byte HMAC-SHA256
under a key derived per direction from the pre-shared key (stdlib, fast, no key consumption;
computationally secure). Option: :class:`labctl.qkd.auth.wegman_carter.WegmanCarterAuthenticator`,
a 16-byte information-theoretic Wegman-Carter tag that consumes 16 bytes of one-time pad per
message from a pool seeded by the pre-shared key and refilled from generated key (pass it as
``authenticator=``; both ends must use the same kind). The two directions use keys
derived from the pre-shared key with different labels, so a frame cannot be reflected
back to its sender; every frame carries the next expected sequence number, so a replayed,
dropped or reordered frame is rejected. Any failure raises AuthenticationError and the
channel refuses all further traffic: the caller stops key output.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

from labctl.qkd.errors import AuthenticationError, ChannelClosed, ChannelError, ChannelTimeout
from labctl.secrets import fingerprint

Role = Literal["alice", "bob"]
CHECKPOINT_KIND = "auth/checkpoint"
"""Kind of a transcript checkpoint (see :class:`TranscriptHook`)."""
MAC_BYTES = 32
MAX_FRAME_BYTES = 256 * 1024 * 1024
_WRITE_PIECE_BYTES = 1 << 20
"""A large frame is written to the socket transport in pieces of at most this size."""
_LENGTH = struct.Struct(">I")
_SEQ = struct.Struct(">Q")


class FrameTransport(Protocol):
    """Moves opaque frames; knows nothing about authentication."""

    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Send one frame (the caller no longer changes it)."""
        ...

    async def recv_frame(self, timeout_s: float) -> bytes:
        """Receive one frame or raise ChannelTimeout / ChannelClosed."""
        ...

    async def close(self) -> None:
        """Close the transport."""
        ...


class MemoryTransport:
    """In-process frame transport: one half of a pair of asyncio queues."""

    def __init__(self, inbox: asyncio.Queue[bytes | None], outbox: asyncio.Queue[bytes | None]):
        self._inbox = inbox
        self._outbox = outbox

    @classmethod
    def pair(cls) -> tuple[MemoryTransport, MemoryTransport]:
        """Two connected transports."""
        a: asyncio.Queue[bytes | None] = asyncio.Queue()
        b: asyncio.Queue[bytes | None] = asyncio.Queue()
        return cls(a, b), cls(b, a)

    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Queue a frame for the peer."""
        await self._outbox.put(bytes(frame))

    async def recv_frame(self, timeout_s: float) -> bytes:
        """Next frame from the peer."""
        try:
            frame = await asyncio.wait_for(self._inbox.get(), timeout_s)
        except TimeoutError:
            raise ChannelTimeout(f"memory channel: no frame within {timeout_s} s") from None
        if frame is None:
            raise ChannelClosed("memory channel: peer closed")
        return frame

    async def close(self) -> None:
        """Tell the peer we are gone."""
        await self._outbox.put(None)


class FrameStream(asyncio.Protocol):
    """Length-prefixed frames over TCP, as an asyncio Protocol (a FrameTransport).

    Frames are cut from the socket's data as it arrives and handed out in order; a length
    prefix above ``max_frame_bytes`` ends the connection. Writes wait only while the socket
    buffer is full.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        on_made: Callable[[FrameStream], None] | None = None,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        """Largest frame accepted (a larger length prefix ends the connection)."""
        self._on_made = on_made
        self.peer = "?"
        """The peer's address, "host:port" (for messages)."""
        self._buffer = bytearray()
        self._frames: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._sending = asyncio.Lock()
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
        # A stream server or connection hands its protocol a stream transport.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buf)
            if length > self.max_frame_bytes:
                self._error = (
                    f"tcp: announced frame of {length} bytes exceeds the limit "
                    f"({self.max_frame_bytes})"
                )
                self._wake()
                if self._transport is not None:
                    self._transport.close()
                return
            end = _LENGTH.size + length
            if len(buf) < end:
                break
            with memoryview(buf) as view:  # one copy of the frame, not a slice and a copy
                self._frames.append(bytes(view[_LENGTH.size : end]))
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
    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Write length prefix and frame; waits only while the socket buffer is full.

        A large frame goes out in pieces, each once the socket takes more: the transport
        then buffers one piece, not a copy of the whole frame (a key block's sifting
        message is tens of MB). The lock keeps concurrent frames from interleaving.
        """
        if len(frame) > MAX_FRAME_BYTES:
            raise ChannelError(f"tcp: frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
        async with self._sending:
            transport = self._open_transport()
            transport.write(_LENGTH.pack(len(frame)))
            with memoryview(frame) as view:
                for start in range(0, len(view), _WRITE_PIECE_BYTES):
                    self._open_transport().write(view[start : start + _WRITE_PIECE_BYTES])
                    if self._writable is not None:
                        await self._writable

    def _open_transport(self) -> asyncio.Transport:
        if self._closed or self._transport is None or self._transport.is_closing():
            raise ChannelClosed("tcp: send on a closed connection")
        return self._transport

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

    def abort(self) -> None:
        """Drop the connection at once (unsent data is discarded)."""
        if self._transport is not None:
            self._transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


@dataclass(frozen=True)
class Message:
    """An authenticated message: its kind (short ASCII label) and payload."""

    kind: str
    payload: bytes


def _direction_key(psk: bytes, sender: Role) -> bytes:
    return hmac.new(psk, b"labctl-qkd-auth/" + sender.encode(), hashlib.sha256).digest()


class ChannelAuthenticator(Protocol):
    """Makes the tag of each outgoing frame body and checks the tag of each incoming one.

    Calls come in frame order per direction (stateful authenticators rely on it).
    """

    tag_bytes: int

    def tag(self, body: bytes | memoryview) -> bytes:
        """The tag of an outgoing body (``tag_bytes`` long; a view into its frame)."""
        ...

    def verify(self, body: bytes | memoryview, tag: bytes) -> bool:
        """True when ``tag`` authenticates an incoming ``body`` (a view into its frame)."""
        ...


class HmacAuthenticator:
    """HMAC-SHA256 under direction keys derived from the pre-shared key (the default)."""

    tag_bytes = MAC_BYTES

    def __init__(self, psk: bytes, role: Role) -> None:
        peer: Role = "bob" if role == "alice" else "alice"
        self._send_key = _direction_key(psk, role)
        self._recv_key = _direction_key(psk, peer)

    def __repr__(self) -> str:
        return "HmacAuthenticator(sha256)"

    def tag(self, body: bytes | memoryview) -> bytes:
        """HMAC-SHA256 of ``body`` under this end's sending key."""
        return hmac.new(self._send_key, body, hashlib.sha256).digest()

    def verify(self, body: bytes | memoryview, tag: bytes) -> bool:
        """Constant-time check of the peer's tag."""
        mine = hmac.new(self._recv_key, body, hashlib.sha256).digest()
        return hmac.compare_digest(mine, tag)


class TranscriptHook(Protocol):
    """Sees every frame body sent and received; tags and checks transcript checkpoints
    (:class:`labctl.qkd.auth.transcript.TranscriptAuthenticator`)."""

    def on_send(self, body: bytes | memoryview) -> None:
        """A body about to be sent (a view into its frame)."""
        ...

    def on_receive(self, body: bytes | memoryview) -> None:
        """A body received (a view into its frame), its MAC checked."""
        ...

    def checkpoint(self) -> bytes:
        """The payload authenticating everything sent since the last checkpoint."""
        ...

    async def check(self, payload: bytes, timeout_s: float) -> None:
        """Check the peer's checkpoint against everything received since the last one."""
        ...


class AuthenticatedChannel:
    """MAC + sequence numbers on top of a FrameTransport; fails closed.

    With a ``transcript`` hook, :meth:`send_checkpoint` and :meth:`recv_checkpoint`
    authenticate everything sent and received since the previous checkpoint
    (information-theoretically, under Wegman-Carter); without one they do nothing.
    """

    def __init__(
        self,
        transport: FrameTransport,
        psk: bytes,
        role: Role,
        timeout_s: float = 30.0,
        *,
        authenticator: ChannelAuthenticator | None = None,
        transcript: TranscriptHook | None = None,
    ) -> None:
        if len(psk) < 16:
            raise ValueError("AuthenticatedChannel: pre-shared key must have >= 16 bytes")
        if role not in ("alice", "bob"):
            raise ValueError(f"AuthenticatedChannel: role must be 'alice' or 'bob', got {role!r}")
        self._transport = transport
        self._auth: ChannelAuthenticator = (
            authenticator if authenticator is not None else HmacAuthenticator(psk, role)
        )
        self._psk_len = len(psk)
        self._psk_fingerprint = fingerprint(psk)
        self.role = role
        self.timeout_s = timeout_s
        self._send_seq = 0
        self._recv_seq = 0
        self._failed: str | None = None
        self.transcript = transcript

    def __repr__(self) -> str:
        return (
            f"AuthenticatedChannel(role={self.role}, psk=<{self._psk_len} bytes "
            f"{self._psk_fingerprint}>, mac={self._auth!r}, sent={self._send_seq}, "
            f"received={self._recv_seq})"
        )

    @property
    def failed(self) -> bool:
        """True once an authentication failure has closed the channel for good."""
        return self._failed is not None

    def _check_open(self) -> None:
        if self._failed is not None:
            raise AuthenticationError(f"channel ({self.role}) closed after: {self._failed}")

    async def send(self, kind: str, payload: bytes) -> None:
        """Authenticate and send one message."""
        self._check_open()
        label = kind.encode("ascii")
        if not 0 < len(label) < 256:
            raise ValueError(f"AuthenticatedChannel.send: kind must be 1-255 ASCII chars: {kind!r}")
        # The frame is built in place (body, then its tag): a payload of tens of MB is
        # copied once, not once per concatenation.
        header = _SEQ.pack(self._send_seq) + bytes([len(label)]) + label
        body_end = len(header) + len(payload)
        frame = bytearray(body_end + self._auth.tag_bytes)
        frame[: len(header)] = header
        frame[len(header) : body_end] = payload
        with memoryview(frame) as view, view[:body_end] as body:
            if self.transcript is not None and kind != CHECKPOINT_KIND:
                self.transcript.on_send(body)
            tag = self._auth.tag(body)
        frame[body_end:] = tag
        await self._transport.send_frame(frame)
        self._send_seq += 1

    async def recv(self, expect: str | None = None, timeout_s: float | None = None) -> Message:
        """Receive, authenticate and order-check one message (optionally of a given kind)."""
        self._check_open()
        frame = await self._transport.recv_frame(self.timeout_s if timeout_s is None else timeout_s)
        try:
            return self._open(frame, expect)
        except AuthenticationError as exc:
            self._failed = str(exc)
            raise

    def _open(self, frame: bytes, expect: str | None) -> Message:
        tag_bytes = self._auth.tag_bytes
        if len(frame) < _SEQ.size + 1 + tag_bytes:
            raise AuthenticationError(f"frame of {len(frame)} bytes is too short to be authentic")
        # A view, not a copy: a frame can be tens of MB; only the payload is copied out.
        body, tag = memoryview(frame)[:-tag_bytes], frame[-tag_bytes:]
        if not self._auth.verify(body, tag):
            raise AuthenticationError(f"MAC check failed on frame {self._recv_seq} ({self.role})")
        (seq,) = _SEQ.unpack_from(body)
        if seq != self._recv_seq:
            what = "replayed" if seq < self._recv_seq else "out-of-order"
            raise AuthenticationError(f"{what} frame: sequence {seq}, expected {self._recv_seq}")
        label_len = body[_SEQ.size]
        label_end = _SEQ.size + 1 + label_len
        kind = bytes(body[_SEQ.size + 1 : label_end]).decode("ascii", errors="replace")
        self._recv_seq += 1
        if self.transcript is not None and kind != CHECKPOINT_KIND:
            self.transcript.on_receive(body)
        if expect is not None and kind != expect:
            raise AuthenticationError(f"unexpected message kind {kind!r}, expected {expect!r}")
        return Message(kind, bytes(body[label_end:]))

    async def send_checkpoint(self) -> None:
        """Authenticate everything sent since the last checkpoint (no-op without a hook)."""
        if self.transcript is None:
            return
        self._check_open()
        await self.send(CHECKPOINT_KIND, self.transcript.checkpoint())

    async def recv_checkpoint(self, timeout_s: float | None = None) -> None:
        """Check the peer's checkpoint over everything received since the last one.

        A failure (AuthenticationError, KeyPoolExhausted) closes the channel for good.
        """
        if self.transcript is None:
            return
        message = await self.recv(expect=CHECKPOINT_KIND, timeout_s=timeout_s)
        try:
            await self.transcript.check(
                message.payload, self.timeout_s if timeout_s is None else timeout_s
            )
        except AuthenticationError as exc:
            self._failed = str(exc)
            raise

    async def close(self) -> None:
        """Close the underlying transport."""
        await self._transport.close()


def memory_pair(
    psk: bytes, timeout_s: float = 30.0
) -> tuple[AuthenticatedChannel, AuthenticatedChannel]:
    """(alice, bob) channels connected in-process."""
    ta, tb = MemoryTransport.pair()
    return AuthenticatedChannel(ta, psk, "alice", timeout_s), AuthenticatedChannel(
        tb, psk, "bob", timeout_s
    )


async def tcp_pair(
    psk: bytes, host: str = "127.0.0.1", timeout_s: float = 30.0
) -> tuple[AuthenticatedChannel, AuthenticatedChannel, asyncio.Server]:
    """(alice, bob, server): Alice listens on an ephemeral port, Bob connects (for tests/demos)."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[FrameStream] = loop.create_future()

    def on_made(stream: FrameStream) -> None:
        if not accepted.done():
            accepted.set_result(stream)

    server = await loop.create_server(lambda: FrameStream(on_made=on_made), host, 0)
    port = server.sockets[0].getsockname()[1]
    bob_t = await FrameStream.connect(host, port, timeout_s)
    alice_t = await asyncio.wait_for(accepted, timeout_s)
    return (
        AuthenticatedChannel(alice_t, psk, "alice", timeout_s),
        AuthenticatedChannel(bob_t, psk, "bob", timeout_s),
        server,
    )

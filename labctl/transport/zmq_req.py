"""ZMQ REQ/REP transport (zmq.asyncio): one request message, one reply message.

A REQ socket that sent a request and never got the reply refuses to send again, so after
a timeout the socket is thrown away and a fresh one connected (the "lazy pirate" pattern
of the ZeroMQ guide): one lost reply never poisons the next command.

ZMQ reconnects by itself and reports nothing to the socket's user, so the transport watches
the socket's monitor events (``zmq_peer.PeerWatch``): ``open()`` of a ``tcp://`` address
waits until the peer accepts (ConnectionLost when it refuses, InstrumentTimeout after
``open_timeout_s``), a request is refused with ConnectionLost once the peer has
disconnected since the socket was made (a restarted device has lost its settings: the
driver must reconnect and re-apply them), and a request that gets no reply while the peer
is gone is ConnectionLost, not InstrumentTimeout. ConnectionLost is also raised when the
socket itself fails (context terminated, socket closed under us).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import zmq
import zmq.asyncio

from labctl.interfaces.errors import ProtocolError
from labctl.transport.core import DEFAULT_MAX_REPLY_BYTES, BufferedTransport, ReplyTooLarge, log
from labctl.transport.recovery import ReconnectPolicy
from labctl.transport.zmq_peer import PEER_CHECK_S, PeerWatch


class ZmqTransport(BufferedTransport):
    """A REQ socket connected to an instrument's REP socket (ID1000/ID900 SCPI)."""

    def __init__(
        self,
        address: str,
        *,
        instrument: str,
        timeout_s: float = 2.0,
        open_timeout_s: float | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            instrument=instrument,
            resource=address,
            timeout_s=timeout_s,
            open_timeout_s=open_timeout_s,
            max_reply_bytes=max_reply_bytes,
            reconnect=reconnect,
        )
        self._socket: zmq.asyncio.Socket | None = None
        self._peer: PeerWatch | None = None
        self._awaiting_reply = False

    async def query(
        self,
        data: bytes,
        *,
        terminator: bytes = b"\n",
        command: str | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """Send one request message and return the reply message (``terminator`` ignored)."""
        async with self.transaction():
            self._buffer.clear()
            self._require_open(command)
            if self._peer_dropped():
                gone = ConnectionResetError("the peer disconnected since the last exchange")
                raise await self._lost(command, gone)
            await self.write(data, command=command)
            budget_s = self._budget(timeout_s)
            try:
                reply = await self._recv_message(budget_s)
            except TimeoutError:
                raise self._timeout_error(command, budget_s, "no reply from") from None
            except (OSError, EOFError) as exc:
                raise await self._lost(command, exc) from exc
            except ReplyTooLarge as exc:
                raise self._too_large(command, str(exc)) from None
            return reply

    async def discard_input(self, quiet_s: float = 0.0) -> int:
        """Nothing to flush: a reply is one whole message, taken whole (or dropped)."""
        self._buffer.clear()
        return 0

    async def _connect(self) -> None:
        self._new_socket()
        if self._peer is not None and self.resource.startswith("tcp://"):
            await self._peer.wait_connected()

    async def _disconnect(self) -> None:
        self._drop_socket()

    async def _send(self, data: bytes) -> None:
        if self._awaiting_reply:
            # The previous request was never read back; REQ would refuse, so start afresh.
            log.debug("%s: discarding unanswered request on %s", self.instrument, self.resource)
            self._new_socket()
        sock = self._require_socket()
        try:
            await sock.send(data)
        except zmq.ZMQError as exc:
            raise ConnectionError(str(exc)) from exc
        self._awaiting_reply = True

    async def _recv_some(self, max_bytes: int, timeout_s: float, stop_byte: int | None) -> bytes:
        if not self._awaiting_reply:
            raise ProtocolError(
                f"read on {self.resource} without a request: REQ/REP replies only to a request",
                instrument=self.instrument,
            )
        return await self._recv_message(timeout_s)

    async def _recv_message(self, timeout_s: float) -> bytes:
        sock = self._require_socket()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while True:
                # Wait in slices: a peer that goes away while we wait (a device restarting)
                # is ConnectionLost within PEER_CHECK_S, not after the whole timeout.
                remaining_s = deadline - loop.time()
                slice_s = min(PEER_CHECK_S, remaining_s)
                if slice_s > 0 and await sock.poll(max(1, round(slice_s * 1000))):
                    break
                peer = self._peer
                if peer is not None:
                    peer.update()
                    if peer.dropped:
                        raise ConnectionResetError("the peer went away before replying")
                if remaining_s <= slice_s:
                    if peer is not None and not peer.connected:
                        raise ConnectionResetError("no reply and the peer is gone")
                    # Lazy pirate: this socket still waits for the lost reply; replace it.
                    self._new_socket()
                    raise TimeoutError
            reply = await sock.recv(flags=zmq.NOBLOCK, copy=True)
        except zmq.ZMQError as exc:
            raise ConnectionError(str(exc)) from exc
        self._awaiting_reply = False
        if len(reply) > self.max_reply_bytes:
            raise ReplyTooLarge(f"a {len(reply)}-byte message")
        return reply

    def _new_socket(self) -> None:
        self._drop_socket()
        sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        peer = PeerWatch(sock)  # before connect(), or the first events are missed
        try:
            sock.connect(self.resource)
        except zmq.ZMQError as exc:
            peer.close()
            sock.close(linger=0)
            raise ConnectionError(f"cannot connect: {exc}") from exc
        self._socket = sock
        self._peer = peer

    def _peer_dropped(self) -> bool:
        if self._peer is None:
            return False
        self._peer.update()
        return self._peer.dropped

    def _drop_socket(self) -> None:
        sock, self._socket = self._socket, None
        peer, self._peer = self._peer, None
        self._awaiting_reply = False
        if peer is not None:
            peer.close()
        if sock is not None:
            sock.close(linger=0)

    def _require_socket(self) -> zmq.asyncio.Socket:
        if self._socket is None:
            raise ConnectionResetError("ZMQ socket is not open")
        return self._socket

"""Follow a connecting ZMQ socket's peer through the socket's monitor events.

ZMQ hides its connections: a REQ or PULL socket reconnects by itself and a peer that went
away looks like a silent one. A device that restarted is a new peer with fresh state, so
the driver must know: the monitor socket reports every connect, refusal and disconnect,
which turns "silence" into "peer gone" (ConnectionLost) and "peer came back" into a
reason to re-apply settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

WATCHED_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED
_WAIT_POLL_S = 0.005
PEER_CHECK_S = 0.1
"""Longest a receive waits between two looks at the peer's connection state."""
_serial = itertools.count()


class PeerWatch:
    """Connection state of one connecting socket, read from its monitor (non-blocking)."""

    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self._sock = sock
        # A fresh endpoint per watch: pyzmq's default name reuses the socket's file
        # descriptor number, which a closed socket's successor gets again.
        address = f"inproc://labctl-peer-watch-{next(_serial)}"
        self._monitor = sock.get_monitor_socket(WATCHED_EVENTS, address)
        # A synchronous view of the same monitor socket: draining never awaits.
        self._events: zmq.Socket[bytes] = zmq.Socket.shadow(self._monitor.underlying)
        self.connected = False
        self.dropped = False  # a disconnect was seen since this watch began
        self.refused = False  # the last connect attempt failed (nobody listening)

    def update(self) -> None:
        """Take every pending monitor event into the state."""
        while True:
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return  # monitor already closed: nothing more to learn
            event = parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_CONNECTED:
                self.connected, self.refused = True, False
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected, self.dropped = False, True
            elif event == zmq.EVENT_CONNECT_RETRIED:
                self.refused = True

    async def wait_connected(self) -> None:
        """Return once the peer is connected; ConnectionRefusedError if nobody listens."""
        while True:
            self.update()
            if self.connected:
                return
            if self.refused:
                raise ConnectionRefusedError("connection refused (nobody listening)")
            await asyncio.sleep(_WAIT_POLL_S)

    def close(self) -> None:
        """Stop monitoring (call before closing the watched socket)."""
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._monitor.close(linger=0)

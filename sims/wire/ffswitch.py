"""An optical-switch twin behind the Agiltron FF 1xN's 4-byte binary serial protocol.

Served on a pseudo-terminal. ``01 12 00 <port>`` routes and is echoed once switched; a
refused port is answered with the port actually routed (``01 12 00 <current>``), which
is how the card shows a refusal. ``01 11 00 00`` is answered ``01 11 00 <port>``. A byte
that cannot start a frame is dropped (the card resynchronises on the header byte).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sims.wire.base import GARBAGE, Fate, SerialDevice, attempt, ensure_link

HEADER = 0x01
CMD_GET_PORT = 0x11
CMD_SET_PORT = 0x12
FRAME_BYTES = 4


class FfSwitchWire(SerialDevice):
    """Serves an OpticalSwitch twin as an Agiltron FF switch driver card."""

    def __init__(self, name: str, twin: Any, *, link: Path | None = None) -> None:
        super().__init__(link=link)
        self.name = name
        self.twin = twin

    def take(self, buffer: bytearray) -> bytes | None:
        """One 4-byte frame; leading bytes that are not a header are discarded."""
        while buffer and buffer[0] != HEADER:
            del buffer[0]
        if len(buffer) < FRAME_BYTES:
            return None
        frame = bytes(buffer[:FRAME_BYTES])
        del buffer[:FRAME_BYTES]
        return frame

    async def handle(self, request: bytes) -> bytes:
        """Route or report; unknown commands get no answer."""
        if not await ensure_link(self.twin):
            return b""
        command = request[1]
        if command == CMD_SET_PORT:
            outcome = await attempt(self.twin.set_port(request[3]))
            if outcome.fate is Fate.OK:
                return request  # switched: the card echoes the request
            if outcome.fate is Fate.REFUSED:
                outcome = await attempt(self.twin.get_port())
        elif command == CMD_GET_PORT:
            outcome = await attempt(self.twin.get_port())
        else:
            return b""
        if outcome.fate is Fate.OK:
            return bytes([HEADER, command, 0x00, int(outcome.value) & 0xFF])
        if outcome.fate is Fate.GARBLED:
            return GARBAGE
        return b""

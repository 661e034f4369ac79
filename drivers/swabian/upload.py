"""The Pulse Streamer's binary upload protocol (TCP port 21328, firmware 2.1 continuous streaming).

Facts from the vendor client ``pulsestreamer`` 2.1.2 (``PulseStreamerBase.upload``): a
message is a 32-byte header ``<4I2Q`` = (magic 0x53504953, command id, command, 0, payload
bytes, 0) followed by the payload: for ``upload`` (command 0x100) a 32-byte sub-header
``<qQ2h8BI`` = (n_runs, steps, idle ao0, idle ao1, idle mask, 0, 0, 0, slot, next action,
when, on no data, 0), the 9-byte steps, and zero padding to a multiple of 32 bytes. The
device answers a 32-byte header ``<4I2Q`` whose second field echoes the command id and whose
third is the error code (0 = accepted), then as many bytes as its fifth field says: for
upload, ``<8i`` whose first is the upload's return value (0 = accepted).

Enumerations (vendor ``enums``): next action STOP 0, SWITCH_SLOT 1,
SWITCH_SLOT_EXPECT_NEW_DATA 2, REPEAT_SLOT 3; when IMMEDIATE 0, TRIGGER 1; on no data
ERROR 0, WAIT_IDLING 1, WAIT_REPEATING 2.

The payload carries pattern states, so this link never logs what it sends (only sizes).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct

from labctl.interfaces.errors import (
    ConnectionLost,
    InstrumentFault,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.transport.tcp import TcpTransport

log = logging.getLogger("labctl.transport")

MAGIC = 0x53504953
HEADER = struct.Struct("<4I2Q")
UPLOAD_HEADER = struct.Struct("<qQ2h8BI")
UPLOAD_REPLY = struct.Struct("<8i")
COMMAND_UPLOAD = 0x100
NEXT_SWITCH_SLOT_EXPECT_NEW_DATA = 2
WHEN_IMMEDIATE = 0
ON_NO_DATA_WAIT_IDLING = 1
MAX_REPLY_EXTRA = 4096


class UploadTransport(TcpTransport):
    """A TCP link to the upload port that sends one binary upload at a time."""

    def __init__(self, host: str, port: int, *, instrument: str, timeout_s: float) -> None:
        super().__init__(host, port, instrument=instrument, timeout_s=timeout_s)
        self._ids = itertools.count(1)
        self._reopen = False  # a reply went missing: start the next upload on a fresh link
        self.bytes_sent = 0

    async def open(self) -> None:
        """Open the link (again)."""
        self._reopen = False
        await super().open()

    async def close(self) -> None:
        """Close the link; the next upload raises ConnectionLost until open()."""
        self._reopen = False
        await super().close()

    async def upload(
        self,
        steps: bytes,
        *,
        slot: int,
        n_runs: int,
        idle: tuple[int, int, int],
        timeout_s: float,
        next_action: int = NEXT_SWITCH_SLOT_EXPECT_NEW_DATA,
        when: int = WHEN_IMMEDIATE,
        on_no_data: int = ON_NO_DATA_WAIT_IDLING,
    ) -> None:
        """Upload ``steps`` (packed 9-byte steps) into ``slot``; InstrumentFault if refused.

        ``idle`` is (mask, ao0, ao1): the outputs while the device waits for data.
        """
        command = "upload"
        n_steps, rest = divmod(len(steps), 9)
        if rest or n_steps == 0:
            raise ValueError(f"upload needs whole 9-byte steps, got {len(steps)} bytes")
        mask, ao0, ao1 = idle
        sub = UPLOAD_HEADER.pack(
            n_runs, n_steps, ao0, ao1, mask, 0, 0, 0, slot, next_action, when, on_no_data, 0
        )
        pad = b"\0" * (-(len(sub) + len(steps)) % 32)
        payload_bytes = len(sub) + len(steps) + len(pad)
        command_id = next(self._ids) & 0xFFFFFFFF
        head = HEADER.pack(MAGIC, command_id, COMMAND_UPLOAD, 0, payload_bytes, 0)
        async with self.transaction():
            if self._reopen and not self.is_open:
                await self.open()
            self._require_open(command)
            log.debug("%s: -> upload slot %d (%d steps)", self.instrument, slot, n_steps)
            try:
                for piece in (head + sub, steps, pad):
                    if piece:
                        await self._send_piece(piece, command, timeout_s)
                error, data = await self._read_reply(command_id, command, timeout_s)
            except ConnectionLost:
                raise  # closed already; the driver reconnects
            except BaseException:
                # A late, half-read or never-read reply would be taken for the next upload's:
                # after a timeout, a foreign reply, an upload half sent or one cancelled by its
                # caller (a supervisor's deadline), the next upload starts on a fresh link.
                self._reopen = True
                await super().close()
                raise
        if error:
            raise InstrumentFault(
                f"upload refused with error code {error}",
                instrument=self.instrument,
                command=command,
            )
        if len(data) >= UPLOAD_REPLY.size and UPLOAD_REPLY.unpack_from(data)[0] != 0:
            value = UPLOAD_REPLY.unpack_from(data)[0]
            raise InstrumentFault(
                f"upload returned {value}", instrument=self.instrument, command=command
            )

    async def _send_piece(self, piece: bytes, command: str, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._send(piece), timeout_s)
        except TimeoutError:
            raise InstrumentTimeout(
                f"upload not accepted by {self.resource} within {timeout_s:g} s",
                instrument=self.instrument,
                command=command,
            ) from None
        except (OSError, EOFError) as exc:
            raise await self._lost(command, exc) from exc
        self.bytes_sent += len(piece)

    async def _read_reply(
        self, command_id: int, command: str, timeout_s: float
    ) -> tuple[int, bytes]:
        reply = await self.read_exact(HEADER.size, command=command, timeout_s=timeout_s)
        _, got_id, error, _, extra, _ = HEADER.unpack(reply)
        if got_id != command_id:
            raise ProtocolError(
                f"reply to command {got_id}, expected {command_id}",
                instrument=self.instrument,
                command=command,
            )
        if extra > MAX_REPLY_EXTRA:
            raise ProtocolError(
                f"reply announces {extra} bytes", instrument=self.instrument, command=command
            )
        data = await self.read_exact(extra, command=command, timeout_s=timeout_s)
        return error, data

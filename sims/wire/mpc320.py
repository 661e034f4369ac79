"""A polarization-controller twin behind the Thorlabs MPC320's APT binary protocol (pty).

The MPC320 is a motorised paddle controller on a USB serial port (115200 baud, RTS/CTS).
Messages follow the Thorlabs APT host-controller protocol: a 6-byte header, little
endian, ``<id:u16> <param1:u8> <param2:u8> <dest:u8> <source:u8>``; a message with data
has ``<id:u16> <length:u16> <dest|0x80> <source>`` followed by ``length`` bytes. The host
is 0x01, the controller (generic USB unit) 0x50. Paddles are channels 1, 2, 3 addressed
by the bits 0x01, 0x02, 0x04; positions are encoder counts 0..1370 (0..170 degrees).

Served messages (request -> reply):

========================================  ============================================
``HW_REQ_INFO`` 0x0005                    ``HW_GET_INFO`` 0x0006, 84 bytes (serial,
                                          model ``MPC320``, firmware, 3 channels)
``MOD_IDENTIFY`` 0x0223                   none (the front panel LED flashes)
``MOD_SET_CHANENABLESTATE`` 0x0210        none (param2 0x01: exactly the paddles in the
                                          mask are enabled, the others disabled)
``MOD_REQ_CHANENABLESTATE`` 0x0211        ``MOD_GET_CHANENABLESTATE`` 0x0212
``HW_START/STOP_UPDATEMSGS`` 0x0011/12    none (no periodic updates are sent)
``MOT_MOVE_HOME`` 0x0443                  ``MOT_MOVE_HOMED`` 0x0444 (at the home position)
``MOT_MOVE_ABSOLUTE`` 0x0453 (6 bytes)    ``MOT_MOVE_COMPLETED`` 0x0464 (14 bytes)
``MOT_MOVE_JOG`` 0x046A                   ``MOT_MOVE_COMPLETED`` 0x0464
``MOT_REQ_USTATUSUPDATE`` 0x0490          ``MOT_GET_USTATUSUPDATE`` 0x0491 (14 bytes)
``POL_SET_PARAMS`` 0x0530 (12 bytes)      none
``POL_REQ_PARAMS`` 0x0531                 ``POL_GET_PARAMS`` 0x0532 (12 bytes)
========================================  ============================================

The APT protocol has no error reply: a move to a position outside 0..1370, a move of a
disabled paddle or a refused twin call leaves the paddle where it is, and the
``MOT_MOVE_COMPLETED`` names that unchanged position (a driver compares it with its
target). Unknown message ids are ignored, as the controller does.

Paddle position and the twin's squeezer voltage map linearly: 0..1370 counts cover the
twin's voltage range on axes 0, 1 and 2 (mid-travel, 685 counts, is the range's middle).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from sims.wire.base import GARBAGE, Fate, SerialDevice, attempt, ensure_link

# A garbled reply: a header's worth of bytes whose addresses are not host and unit.
GARBLED = GARBAGE + b"\x00\x00"

HOST = 0x01
DEVICE = 0x50
LONG = 0x80
HEADER_BYTES = 6
MAX_COUNTS = 1370  # 170 degrees of paddle travel
CHANNEL_BITS = {0x01: 1, 0x02: 2, 0x04: 3}
SERIAL_NUMBER = 38_000_321
FIRMWARE = (0x03, 0x00, 0x01, 0x00)  # minor, interim, major, unused

HW_REQ_INFO, HW_GET_INFO = 0x0005, 0x0006
HW_START_UPDATEMSGS, HW_STOP_UPDATEMSGS = 0x0011, 0x0012
MOD_SET_CHANENABLESTATE, MOD_REQ_CHANENABLESTATE = 0x0210, 0x0211
MOD_GET_CHANENABLESTATE, MOD_IDENTIFY = 0x0212, 0x0223
MOT_MOVE_HOME, MOT_MOVE_HOMED = 0x0443, 0x0444
MOT_MOVE_ABSOLUTE, MOT_MOVE_COMPLETED, MOT_MOVE_JOG = 0x0453, 0x0464, 0x046A
MOT_REQ_USTATUSUPDATE, MOT_GET_USTATUSUPDATE = 0x0490, 0x0491
POL_SET_PARAMS, POL_REQ_PARAMS, POL_GET_PARAMS = 0x0530, 0x0531, 0x0532
ENABLE, DISABLE = 0x01, 0x02
STATUS_ENABLED = 0x80000000  # status bit 31: channel enabled


def short_message(message_id: int, param1: int = 0, param2: int = 0) -> bytes:
    """A header-only message from the controller to the host."""
    return struct.pack("<HBBBB", message_id, param1, param2, HOST, DEVICE)


def long_message(message_id: int, data: bytes) -> bytes:
    """A message with data from the controller to the host."""
    return struct.pack("<HHBB", message_id, len(data), HOST | LONG, DEVICE) + data


class Mpc320Wire(SerialDevice):
    """Serves a PolarizationController twin as a Thorlabs MPC320 on a pseudo-terminal."""

    def __init__(self, name: str, twin: Any, *, link: Path | None = None) -> None:
        super().__init__(link=link)
        self.name = name
        self.twin = twin
        self.enabled = {1: True, 2: True, 3: True}
        self.velocity_percent = 50
        self.home_counts = MAX_COUNTS // 2
        self.jog_counts = [100, 100, 100]
        low, high = twin.voltage_range_mv
        self._low_mv, self._span_mv = float(low), float(high) - float(low)

    def take(self, buffer: bytearray) -> bytes | None:
        """One whole APT message (header plus data, if the long bit says there is some)."""
        if len(buffer) < HEADER_BYTES:
            return None
        length = struct.unpack_from("<H", buffer, 2)[0] if buffer[4] & LONG else 0
        if len(buffer) < HEADER_BYTES + length:
            return None
        message = bytes(buffer[: HEADER_BYTES + length])
        del buffer[: HEADER_BYTES + length]
        return message

    async def handle(self, request: bytes) -> bytes:
        """The reply message(s) to one request; b"" where the protocol has none."""
        if not await ensure_link(self.twin):
            return b""
        message_id, param1, param2 = struct.unpack_from("<HBB", request)
        data = request[HEADER_BYTES:]
        if message_id == HW_REQ_INFO:
            return long_message(HW_GET_INFO, _hardware_info())
        if message_id == MOD_SET_CHANENABLESTATE:
            named = _channels(param1)
            for channel in self.enabled:
                if param2 == ENABLE:  # the mask is the whole enabled set: 0x00 disables all
                    self.enabled[channel] = channel in named
                elif channel in named:
                    self.enabled[channel] = False
            return b""
        if message_id == MOD_REQ_CHANENABLESTATE:
            channels = _channels(param1)
            state = ENABLE if channels and self.enabled[channels[0]] else DISABLE
            return short_message(MOD_GET_CHANENABLESTATE, param1, state)
        if message_id == POL_SET_PARAMS and len(data) == 12:
            _, velocity, home, *jogs = struct.unpack("<6H", data)
            self.velocity_percent, self.home_counts, self.jog_counts = velocity, home, jogs
            return b""
        if message_id == POL_REQ_PARAMS:
            values = (0, self.velocity_percent, self.home_counts, *self.jog_counts)
            return long_message(POL_GET_PARAMS, struct.pack("<6H", *values))
        if message_id == MOT_MOVE_HOME:
            return await self._move(param1, self.home_counts, MOT_MOVE_HOMED)
        if message_id == MOT_MOVE_ABSOLUTE and len(data) == 6:
            chan_ident, counts = struct.unpack("<Hi", data)
            return await self._move(chan_ident, counts, MOT_MOVE_COMPLETED)
        if message_id == MOT_MOVE_JOG:
            return await self._jog(param1, forward=param2 == 0x01)
        if message_id == MOT_REQ_USTATUSUPDATE:
            return await self._status(param1, MOT_GET_USTATUSUPDATE)
        return b""  # identify, update-message switches, unknown ids: nothing to answer

    async def _counts(self, channel: int) -> int | Fate:
        outcome = await attempt(self.twin.get_voltages_mv())
        if outcome.fate is not Fate.OK:
            return outcome.fate
        voltage_mv = float(outcome.value[channel - 1])
        return round((voltage_mv - self._low_mv) / self._span_mv * MAX_COUNTS)

    async def _status(self, chan_ident: int, reply_id: int) -> bytes:
        channels = _channels(chan_ident)
        if not channels:
            return b""
        counts = await self._counts(channels[0])
        if isinstance(counts, Fate):
            return GARBLED if counts is Fate.GARBLED else b""
        status = STATUS_ENABLED if self.enabled[channels[0]] else 0
        data = struct.pack("<HiHhI", chan_ident, counts, 0, 0, status)
        if reply_id == MOT_MOVE_HOMED:
            return short_message(MOT_MOVE_HOMED, chan_ident)
        return long_message(reply_id, data)

    async def _move(self, chan_ident: int, counts: int, reply_id: int) -> bytes:
        channels = _channels(chan_ident)
        if not channels:
            return b""
        channel = channels[0]
        if self.enabled[channel] and 0 <= counts <= MAX_COUNTS:
            voltage_mv = self._low_mv + self._span_mv * counts / MAX_COUNTS
            outcome = await attempt(self.twin.set_voltage_mv(channel - 1, voltage_mv))
            if outcome.fate is Fate.GARBLED:
                return GARBLED
            if outcome.fate in (Fate.SILENT, Fate.LOST):
                return b""
        return await self._status(chan_ident, reply_id)

    async def _jog(self, chan_ident: int, *, forward: bool) -> bytes:
        channels = _channels(chan_ident)
        if not channels:
            return b""
        current = await self._counts(channels[0])
        if isinstance(current, Fate):
            return b""
        step = self.jog_counts[channels[0] - 1]
        target = min(MAX_COUNTS, current + step) if forward else max(0, current - step)
        return await self._move(chan_ident, target, MOT_MOVE_COMPLETED)


def _channels(chan_ident: int) -> list[int]:
    """The paddles (1..3) named by a channel bit mask, lowest first."""
    return [channel for bit, channel in CHANNEL_BITS.items() if chan_ident & bit]


def _hardware_info() -> bytes:
    """HW_GET_INFO's 84 data bytes."""
    notes = b"MPC320 motorised polarisation controller".ljust(48, b"\0")
    return (
        struct.pack("<I8sH", SERIAL_NUMBER, b"MPC320\0\0", 16)
        + bytes(FIRMWARE)
        + notes
        + bytes(12)
        + struct.pack("<HHH", 1, 0, 3)
    )

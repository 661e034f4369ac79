"""Thorlabs MPC320 motorised fiber polarization controller: APT binary protocol (serial).

Protocol facts (Thorlabs "APT Controllers Host-Controller Communications Protocol",
public drivers): USB serial at 115200 baud 8N1 with RTS/CTS; every message starts with a
6-byte little-endian header ``<id:u16> <param1> <param2> <dest> <source>``, or, when data
follows, ``<id:u16> <length:u16> <dest|0x80> <source>``; the host is 0x01 and the unit
0x50. ``HW_REQ_INFO`` (0x0005) is answered by ``HW_GET_INFO`` (0x0006: serial, model
``MPC320``, firmware, channel count); ``MOD_SET_CHANENABLESTATE`` (0x0210) enables the
paddles (channel bits 0x01, 0x02, 0x04); ``MOT_MOVE_ABSOLUTE`` (0x0453: channel, position)
is answered by ``MOT_MOVE_COMPLETED`` (0x0464) once the paddle stops, with its position;
``MOT_REQ_USTATUSUPDATE`` (0x0490) by ``MOT_GET_USTATUSUPDATE`` (0x0491: position,
velocity, motor current, status bits). Positions are encoder counts, 0..1370 for the
paddles' 0..170 degrees. The protocol has no error reply: a move that did not end at its
target is reported by the position in MOVE_COMPLETED, which this driver checks
(InstrumentFault naming the command).

How it meets labctl's PolarizationController: the MPC320 has three paddles and no
voltages, so each axis's value is the paddle position in encoder counts about
mid-travel, -685..+685 (0 = 85 degrees; one count = 170/1370 degrees), served through the
interface's millivolt values; ``set_angle_deg``/``get_angles_deg`` speak degrees.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Self

from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
    with_default_options,
)
from labctl.instrument.settings import Setting
from labctl.instrument.validate import check_int, check_number
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health

N_AXES = 3
MAX_COUNTS = 1370
MID_COUNTS = MAX_COUNTS // 2  # 685: axis value 0
TRAVEL_DEG = 170.0
VALUE_RANGE = (-float(MID_COUNTS), float(MAX_COUNTS - MID_COUNTS))
CHANNEL_BITS = (0x01, 0x02, 0x04)
HOST, UNIT, LONG = 0x01, 0x50, 0x80
HEADER_BYTES = 6
MAX_SKIPPED = 8  # unsolicited messages tolerated before the awaited reply

HW_REQ_INFO, HW_GET_INFO = 0x0005, 0x0006
MOD_SET_CHANENABLESTATE = 0x0210
MOT_MOVE_ABSOLUTE, MOT_MOVE_COMPLETED = 0x0453, 0x0464
MOT_REQ_USTATUSUPDATE, MOT_GET_USTATUSUPDATE = 0x0490, 0x0491
ENABLE = 0x01
STATUS_ENABLED = 0x80000000


class MPC320(DriverBase):
    """Driver for the Thorlabs MPC320 (implements labctl's PolarizationController)."""

    model = "Thorlabs MPC320"
    settings = (
        # One paddle position per axis, counts about mid-travel; the paddles take whole counts.
        Setting(
            "voltages_mv",
            "number",
            VALUE_RANGE,
            read=lambda d: d.get_voltages_mv(),
            channels=N_AXES,
            min_channels=N_AXES,
            apply_channel=lambda d, axis, value: d._move(axis, round(value)),
        ),
    )

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: voltages_mv (3 paddle positions, counts)."""
        transport_spec = require_transport(spec, ("serial",))
        transport_spec = with_default_options(
            transport_spec,
            {"baudrate": 115200, "bytesize": 8, "parity": "N", "stopbits": 1, "rtscts": True},
        )
        validated = validate_config_settings(spec, cls.config_validators(spec.name))
        driver = cls(spec.name, make_transport(spec, transport_spec))
        for key, value in validated.items():
            driver._remember_declared(key, _whole_counts(value))
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        data = await self._ask(_short(HW_REQ_INFO), HW_GET_INFO, "HW_REQ_INFO")
        if len(data) != 84:
            raise ProtocolError(
                f"HW_GET_INFO holds {len(data)} bytes, not 84",
                instrument=self.name,
                command="HW_REQ_INFO",
            )
        serial, model_raw = struct.unpack_from("<I8s", data)
        minor, interim, major = data[14], data[15], data[16]
        model = model_raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
        if model != "MPC320":
            raise ProtocolError(
                f"not an MPC320: model {model!r}", instrument=self.name, command="HW_REQ_INFO"
            )
        # Enable all three paddles: a disabled paddle ignores moves.
        await self._send(_short(MOD_SET_CHANENABLESTATE, 0x07, ENABLE), "MOD_SET_CHANENABLESTATE")
        return {
            "vendor": "Thorlabs",
            "model": model,
            "serial": str(serial),
            "firmware": f"{major}.{interim}.{minor}",
        }

    async def snapshot(self) -> dict[str, Any]:
        """Identity, the three paddle positions (counts about mid-travel) and angles."""
        declared = await self._declared_snapshot()
        return {
            "model": self.model,
            **self.identity,
            **declared,
            "angles_deg": [_degrees(value) for value in declared["voltages_mv"]],
        }

    async def safe_state(self) -> None:
        """Every paddle to mid-travel (value 0, 85 degrees)."""
        await self.set_voltages_mv([0.0] * N_AXES)

    async def health(self) -> Health:
        """Read each paddle's status; healthy when all three are enabled."""
        readings: dict[str, float | int | str | bool] = {}
        disabled = []
        for axis in range(N_AXES):
            position, status = await self._status(axis)
            readings[f"position_{axis}_counts"] = position
            readings[f"enabled_{axis}"] = bool(status & STATUS_ENABLED)
            if not status & STATUS_ENABLED:
                disabled.append(axis)
        ok = not disabled
        return Health(
            ok=ok, detail="ok" if ok else f"paddles {disabled} disabled", readings=readings
        )

    # -- PolarizationController interface -----------------------------------------------

    @property
    def n_axes(self) -> int:
        """Three paddles."""
        return N_AXES

    @property
    def voltage_range_mv(self) -> tuple[float, float]:
        """Paddle positions in encoder counts about mid-travel: -685..+685."""
        return VALUE_RANGE

    async def set_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Move all three paddles, one after the other (validated before the first move)."""
        values = _whole_counts(self.declared("voltages_mv").check(self.name, voltages_mv))
        for axis, value in enumerate(values):
            await self._set_declared_channel("voltages_mv", axis, value)

    async def get_voltages_mv(self) -> list[float]:
        """The three paddle positions (counts about mid-travel)."""
        return [float((await self._status(axis))[0] - MID_COUNTS) for axis in range(N_AXES)]

    async def set_voltage_mv(self, axis: int, voltage_mv: float) -> None:
        """Move one paddle (axis 0..2) to a position in counts about mid-travel."""
        check_int(self.name, "axis", axis, 0, N_AXES - 1)
        value = round(check_number(self.name, "voltage_mv", voltage_mv, *VALUE_RANGE))
        await self._set_declared_channel("voltages_mv", axis, value)

    # -- model extras -------------------------------------------------------------------

    async def set_angle_deg(self, axis: int, angle_deg: float) -> None:
        """Move one paddle (axis 0..2) to ``angle_deg`` (0..170 degrees)."""
        angle = check_number(self.name, "angle_deg", angle_deg, 0.0, TRAVEL_DEG)
        await self.set_voltage_mv(axis, round(angle / TRAVEL_DEG * MAX_COUNTS) - MID_COUNTS)

    async def get_angles_deg(self) -> list[float]:
        """The three paddle angles in degrees."""
        return [_degrees(value) for value in await self.get_voltages_mv()]

    # -- internals ----------------------------------------------------------------------

    async def _move(self, axis: int, value: int) -> None:
        counts = value + MID_COUNTS
        command = f"MOT_MOVE_ABSOLUTE paddle {axis + 1} to {counts}"
        data = struct.pack("<Hi", CHANNEL_BITS[axis], counts)
        reply = await self._ask(_long(MOT_MOVE_ABSOLUTE, data), MOT_MOVE_COMPLETED, command)
        chan_ident, position = struct.unpack_from("<Hi", reply)
        if chan_ident != CHANNEL_BITS[axis] or position != counts:
            raise InstrumentFault(
                f"paddle {axis + 1} stopped at {position} counts, not {counts}",
                instrument=self.name,
                command=command,
            )

    async def _status(self, axis: int) -> tuple[int, int]:
        """(position in counts, status bits) of one paddle."""
        command = f"MOT_REQ_USTATUSUPDATE paddle {axis + 1}"
        request = _short(MOT_REQ_USTATUSUPDATE, CHANNEL_BITS[axis])
        data = await self._ask(request, MOT_GET_USTATUSUPDATE, command)
        if len(data) != 14:
            raise ProtocolError(
                f"status holds {len(data)} bytes, not 14", instrument=self.name, command=command
            )
        _, position, _, _, status = struct.unpack("<HiHhI", data)
        return position, status

    async def _send(self, request: bytes, command: str) -> None:
        async with self._transport.transaction():
            await self._transport.write(request, command=command)

    async def _ask(self, request: bytes, reply_id: int, command: str) -> bytes:
        """Send ``request`` and return the data of the first ``reply_id`` message."""
        async with self._transport.transaction():
            await self._transport.write(request, command=command)
            for _ in range(MAX_SKIPPED):
                header = await self._transport.read_exact(HEADER_BYTES, command=command)
                if header[4] & ~LONG != HOST or header[5] != UNIT:
                    raise ProtocolError(
                        f"not an APT message from the unit: {header.hex(' ')}",
                        instrument=self.name,
                        command=command,
                    )
                message_id, length = struct.unpack_from("<HH", header)
                long_form = bool(header[4] & LONG)
                data = b""
                if long_form:
                    data = await self._transport.read_exact(length, command=command)
                if message_id == reply_id:
                    return data if long_form else header[2:4]
        raise ProtocolError(
            f"no reply 0x{reply_id:04X} among {MAX_SKIPPED} messages",
            instrument=self.name,
            command=command,
        )


def _short(message_id: int, param1: int = 0, param2: int = 0) -> bytes:
    return struct.pack("<HBBBB", message_id, param1, param2, UNIT, HOST)


def _long(message_id: int, data: bytes) -> bytes:
    return struct.pack("<HHBB", message_id, len(data), UNIT | LONG, HOST) + data


def _degrees(value: float) -> float:
    return round((value + MID_COUNTS) * TRAVEL_DEG / MAX_COUNTS, 3)


def _whole_counts(values: list[float]) -> list[int]:
    """The paddles move to whole encoder counts."""
    return [round(value) for value in values]

"""OZ Optics EPC-400 electric polarization controller: ASCII over RS-232 (pyserial).

Protocol facts (EPC driver manual, public drivers): 9600 baud 8N1; commands end in CR LF;
the reply is zero or more content lines, then a line ``Done`` (success) or ``Error!`` (the
controller refused the command). Every command that works answers one content line:
``V<ch>,<mV>`` drives one of the four squeezers (``ch`` 1..4, -5000..+5000 mV) and answers
``Set CH<ch> DC Voltage at: <mV>mV``; ``V?`` answers ``Voltage(mV): CH1 +2200 CH2 +5000
CH3 -1000 CH4 -4000``; ``VZ<ch>`` sets a channel to 0 V; ``MDC``/``MAC`` select fixed
voltage (DC) or scrambling (AC) mode (``Set To DC Mode``) and ``M?`` reports it (``Work
Mode: DC``, ``Work Mode: AC(Sine)``); ``F<ch>,<Hz>`` sets a channel's scrambling frequency
(0..100 Hz). Some firmware echoes the command as the first line; the driver skips such an
echo. Lines are read up to LF and stripped, so LF-only line ends are taken too. A voltage
acknowledgement naming another value than the one sent (the controller clamped it) is an
InstrumentFault.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Self

from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
    with_default_options,
)
from labctl.instrument.recovery import operation, resend_garbled
from labctl.instrument.settings import Setting
from labctl.instrument.validate import (
    check_int,
    check_number,
    decode_ascii,
)
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.transport.base import Transport

N_AXES = 4
VOLTAGE_RANGE_MV = (-5000.0, 5000.0)
FREQUENCY_RANGE_HZ = (0, 100)  # scrambling frequency per squeezer
ORDER_MODE = -1
MAX_REPLY_LINES = 8  # a reply longer than this is noise, not the EPC-400
_VOLTAGE_RE = re.compile(r"CH(\d)\s*([+-]?\d+)")
_VOLTAGE_ACK_RE = re.compile(r"Set CH(\d) DC Voltage at:\s*([+-]?\d+)\s*mV", re.IGNORECASE)


class EPC400(DriverBase):
    """Driver for the OZ Optics EPC-400 (implements labctl's PolarizationController)."""

    model = "OZ Optics EPC-400"
    settings = (
        # The mode first: a squeezer voltage is held only in DC mode.
        Setting(
            "scrambling",
            "bool",
            apply=lambda d, on: d._command("MAC" if on else "MDC"),
            order=ORDER_MODE,
            read=lambda d: d._scrambling(),
        ),
        Setting(
            "voltages_mv",
            "number",
            VOLTAGE_RANGE_MV,
            read=lambda d: d.get_voltages_mv(),
            channels=N_AXES,
            min_channels=N_AXES,
            apply_channel=lambda d, axis, mv: d._set_channel(axis, round(mv)),
        ),
        Setting(
            "frequencies_hz",
            "integer",
            FREQUENCY_RANGE_HZ,
            channels=N_AXES,
            apply_channel=lambda d, axis, hz: d._command(f"F{axis + 1},{hz}"),
        ),
    )

    def __init__(self, name: str, transport: Transport) -> None:
        super().__init__(name, transport)
        self._remember_declared("scrambling", False)

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: voltages_mv (4 values), scrambling (bool)."""
        transport_spec = require_transport(spec, ("serial",))
        transport_spec = with_default_options(
            transport_spec, {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1}
        )
        validated = validate_config_settings(spec, cls.config_validators(spec.name))
        driver = cls(spec.name, make_transport(spec, transport_spec))
        for key, value in validated.items():
            driver._remember_declared(key, _whole_mv(value) if key == "voltages_mv" else value)
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        # The EPC-400 has no identity query; a mode query proves it answers our protocol.
        await self._mode()
        return {"vendor": "OZ Optics", "model": "EPC-400"}

    @operation
    async def snapshot(self) -> dict[str, Any]:
        """Identity, mode and the four squeezer voltages as read back."""
        return {"model": self.model, **self.identity, **await self._declared_snapshot()}

    @operation
    async def safe_state(self) -> None:
        """Fixed-voltage mode and every squeezer at 0 V."""
        await self.set_scrambling(False)
        for axis in range(N_AXES):
            await self._command(f"VZ{axis + 1}")
            self._remember_declared("voltages_mv", [0] * N_AXES)

    @operation
    async def health(self) -> Health:
        """Query mode and voltages; healthy when the controller answers and holds DC mode."""
        mode = await self._mode()
        voltages = await self.get_voltages_mv()
        readings: dict[str, float | int | str | bool] = {"mode": mode}
        readings.update({f"voltage_{axis}_mv": v for axis, v in enumerate(voltages)})
        expected = "AC" if self.remembered_settings.get("scrambling") else "DC"
        ok = mode == expected
        return Health(
            ok=ok, detail="ok" if ok else f"mode {mode}, expected {expected}", readings=readings
        )

    # -- PolarizationController interface -----------------------------------------------

    @property
    def n_axes(self) -> int:
        """Four fiber squeezers."""
        return N_AXES

    @property
    def voltage_range_mv(self) -> tuple[float, float]:
        """-5000..+5000 mV per squeezer."""
        return VOLTAGE_RANGE_MV

    @operation
    async def set_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Drive all four squeezers, one command each (validated before the first is sent)."""
        values = _whole_mv(self.declared("voltages_mv").check(self.name, voltages_mv))
        for axis, value in enumerate(values):
            await self._set_declared_channel("voltages_mv", axis, value)

    @operation
    async def get_voltages_mv(self) -> list[float]:
        """The four squeezer voltages in millivolts."""
        lines = await self._command("V?")
        found = {int(ch): float(mv) for ch, mv in _VOLTAGE_RE.findall(" ".join(lines))}
        if sorted(found) != [1, 2, 3, 4]:
            raise ProtocolError(
                f"expected CH1..CH4 voltages, got {lines!r}", instrument=self.name, command="V?"
            )
        return [found[axis + 1] for axis in range(N_AXES)]

    @operation
    async def set_voltage_mv(self, axis: int, voltage_mv: float) -> None:
        """Drive one squeezer (axis 0..3) in millivolts (rounded to whole mV)."""
        check_int(self.name, "axis", axis, 0, N_AXES - 1)
        value = round(check_number(self.name, "voltage_mv", voltage_mv, *VOLTAGE_RANGE_MV))
        await self._set_declared_channel("voltages_mv", axis, value)

    # -- model extras -------------------------------------------------------------------

    @operation
    async def set_scrambling(self, enabled: bool) -> None:
        """AC (scrambling) mode when True, fixed-voltage DC mode when False."""
        await self._set_declared("scrambling", enabled)

    @operation
    async def set_frequency_hz(self, axis: int, frequency_hz: int) -> None:
        """Scrambling frequency of one squeezer (axis 0..3), 0..100 Hz."""
        check_int(self.name, "axis", axis, 0, N_AXES - 1)
        await self._set_declared_channel("frequencies_hz", axis, frequency_hz)

    # -- internals ----------------------------------------------------------------------

    async def _set_channel(self, axis: int, value: int) -> None:
        """``V<ch>,<mV>``; the acknowledgement, when there is one, must name that value."""
        command = f"V{axis + 1},{value}"
        for line in await self._command(command):
            ack = _VOLTAGE_ACK_RE.search(line)
            if ack and (int(ack[1]), int(ack[2])) != (axis + 1, value):
                raise InstrumentFault(
                    f"controller answered {line!r}", instrument=self.name, command=command
                )

    async def _scrambling(self) -> bool:
        return await self._mode() == "AC"

    async def _mode(self) -> str:
        lines = await self._command("M?")
        words = " ".join(lines).upper().split()
        modes = [word[:2] for word in words if word[:2] in ("AC", "DC")]
        if len(modes) != 1:
            raise ProtocolError(
                f"cannot read the mode from {lines!r}", instrument=self.name, command="M?"
            )
        return modes[0]

    async def _command(self, command: str) -> list[str]:
        """Send one command; return its text lines, or InstrumentFault on ``Error!``.

        Every EPC-400 command this driver sends is a query (``V?``, ``M?``) or sets an
        absolute value (``V<ch>,<mV>``, ``VZ<ch>``, ``MDC``/``MAC``, ``F<ch>,<Hz>``), so a
        reply that does not parse is flushed and the command re-sent.
        """

        async def exchange() -> list[str]:
            return await self._command_once(command)

        return await resend_garbled(self._transport, exchange, repeatable=True)

    async def _command_once(self, command: str) -> list[str]:
        async with self._transport.transaction():
            await self._transport.write(command.encode("ascii") + b"\r\n", command=command)
            lines: list[str] = []
            for _ in range(MAX_REPLY_LINES):
                raw = await self._transport.read_until(b"\n", command=command)
                line = decode_ascii(raw, instrument=self.name, command=command).strip()
                if line == "Done":
                    return lines
                if line.startswith("Error") or line.endswith("Error!"):
                    raise InstrumentFault(
                        f"controller answered {[*lines, line]!r}",
                        instrument=self.name,
                        command=command,
                    )
                if line and not (not lines and line.upper() == command.upper()):
                    lines.append(line)
        raise ProtocolError(
            f"no Done/Error! after {MAX_REPLY_LINES} lines: {lines!r}",
            instrument=self.name,
            command=command,
        )


def _whole_mv(voltages_mv: list[float]) -> list[int]:
    """The EPC-400 takes whole millivolts."""
    return [round(mv) for mv in voltages_mv]

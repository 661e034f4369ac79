"""A polarization-controller twin behind the OZ Optics EPC-400's ASCII serial protocol.

Served on a pseudo-terminal (the driver opens it like /dev/ttyUSB0). A command ends in
CR, LF or CR LF and is case-insensitive; every reply line ends in CR LF. A command that
worked is answered with one content line, then ``Done``; a refused or unknown command
with ``Error!``. With ``echo=True`` the twin first echoes the command line, as some
firmware does. The EPC driver manual's command set and reply texts:

==============  =====================================================================
command         content line before ``Done``
==============  =====================================================================
``V?``          ``Voltage(mV): CH1 +2200 CH2 +5000 CH3 -1000 CH4 -4000``
``Vn,mV``       ``Set CHn DC Voltage at: <mV>mV`` (-5000..+5000 mV)
``VHn VLn VZn`` the same line for +5000, -5000 and 0 mV
``F?``          ``Frequency(Hz): CH1 007  CH2 017  CH3 037  CH4 071``
``Fn,Hz``       ``Set CHn AC Frequency at: <Hz>Hz`` (0..100 Hz)
``M?``          ``Work Mode: DC`` or ``Work Mode: AC(Sine)`` / ``AC(Triangle)``
``MDC MAC``     ``Set To DC Mode`` / ``Set To AC Mode``
``WF? WF1 WF2`` ``AC Waveform: Sine`` / ``Set AC Waveform at: Sine`` (2: Triangle)
``ENVF1 ENVF0`` ``Enable`` / ``Disable DC Voltage Output at AC Mode``
``VFn``         ``Set CHn output to: Volt (if possible)`` (toggles a channel V <-> F)
``VF?``         ``Hz<->Volt at AC Mode is enabled: CH1-V,CH2-V,CH3-F,CH4-F``
``SAVE``        ``Write Setting to Flash memory``
``SN?``         ``Serial Number: <serial>``
``VER?``        ``Version: <firmware>``
==============  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sims.wire.base import GARBAGE, Fate, Outcome, SerialDevice, attempt, ensure_link

EOL = b"\r\n"
DONE = "Done"
ERROR = "Error!"
SERIAL_NUMBER = "LCTWIN0001"
FIRMWARE = "EPC OEM Driver V2.10"
VOLTAGE_LIMIT_MV = 5000
MAX_FREQUENCY_HZ = 100
WAVEFORMS = {1: "Sine", 2: "Triangle"}

_SET_VOLTAGE_RE = re.compile(r"V(\d),\s*([+-]?\d+)")
_SET_FREQUENCY_RE = re.compile(r"F(\d),\s*(\d+)")
_PRESET_RE = re.compile(r"V([HLZ])(\d)")
_TOGGLE_RE = re.compile(r"VF(\d)")
_WAVEFORM_RE = re.compile(r"WF([12])")
_DC_IN_AC_RE = re.compile(r"ENVF([01])")
PRESETS_MV = {"H": VOLTAGE_LIMIT_MV, "L": -VOLTAGE_LIMIT_MV, "Z": 0}


class Epc400Wire(SerialDevice):
    """Serves a PolarizationController twin as an EPC-400 on a pseudo-terminal."""

    def __init__(
        self, name: str, twin: Any, *, link: Path | None = None, echo: bool = False
    ) -> None:
        super().__init__(link=link)
        self.name = name
        self.twin = twin
        self.echo = echo
        n_axes = int(twin.n_axes)
        self.mode = "DC"
        self.waveform = 1
        self.dc_in_ac = False
        self.frequency_hz = [0] * n_axes
        self.channel_volt = [True] * n_axes  # per channel in DC-in-AC mode: V (True) or F
        self.saved: dict[str, Any] | None = None

    def take(self, buffer: bytearray) -> bytes | None:
        """One request line (CR LF, CR or LF terminated), terminator removed."""
        while True:
            for index, byte in enumerate(buffer):
                if byte in b"\r\n":
                    line = bytes(buffer[:index])
                    end = index + 1
                    if byte == 0x0D and end < len(buffer) and buffer[end] == 0x0A:
                        end += 1
                    del buffer[:end]
                    break
            else:
                return None
            if line.strip():
                return line

    async def handle(self, request: bytes) -> bytes:
        """Run one command; the echo (if on), the content line then Done, or Error!."""
        if not await ensure_link(self.twin):
            return b""
        text = request.decode("ascii", errors="replace").strip()
        echo = text.encode("ascii", errors="replace") + EOL if self.echo else b""
        outcome = await self._execute(text.upper())
        if outcome.fate is Fate.OK:
            return echo + b"".join(line.encode("ascii") + EOL for line in [*outcome.value, DONE])
        if outcome.fate is Fate.REFUSED:
            return echo + ERROR.encode("ascii") + EOL
        if outcome.fate is Fate.GARBLED:
            return GARBAGE + EOL
        return b""  # silent or lost: a dead serial line says nothing

    async def _execute(self, command: str) -> Outcome:
        fixed: dict[str, Callable[[], str]] = {
            "M?": self._mode_line,
            "F?": self._frequencies_line,
            "WF?": lambda: f"AC Waveform: {WAVEFORMS[self.waveform]}",
            "VF?": self._dc_in_ac_line,
            "SN?": lambda: f"Serial Number: {SERIAL_NUMBER}",
            "VER?": lambda: f"Version: {FIRMWARE}",
        }
        if command in fixed:
            return _line(fixed[command]())
        if command == "V?":
            return await self._voltages()
        if command in ("MDC", "MAC"):
            self.mode = command[1:]
            return _line(f"Set To {self.mode} Mode")
        if command == "SAVE":
            self.saved = {"mode": self.mode, "frequency_hz": list(self.frequency_hz)}
            return _line("Write Setting to Flash memory")
        if match := _SET_VOLTAGE_RE.fullmatch(command):
            return await self._set_voltage(int(match[1]), int(match[2]))
        if match := _PRESET_RE.fullmatch(command):
            return await self._set_voltage(int(match[2]), PRESETS_MV[match[1]])
        if match := _SET_FREQUENCY_RE.fullmatch(command):
            return self._set_frequency(int(match[1]), int(match[2]))
        if match := _TOGGLE_RE.fullmatch(command):
            return self._toggle(int(match[1]))
        if match := _WAVEFORM_RE.fullmatch(command):
            self.waveform = int(match[1])
            return _line(f"Set AC Waveform at: {WAVEFORMS[self.waveform]}")
        if match := _DC_IN_AC_RE.fullmatch(command):
            self.dc_in_ac = match[1] == "1"
            verb = "Enable" if self.dc_in_ac else "Disable"
            return _line(f"{verb} DC Voltage Output at AC Mode")
        return Outcome(Fate.REFUSED, message=f"unknown command {command!r}")

    def _channel_ok(self, channel: int) -> bool:
        return 1 <= channel <= len(self.frequency_hz)

    async def _voltages(self) -> Outcome:
        outcome = await attempt(self.twin.get_voltages_mv())
        if outcome.fate is not Fate.OK:
            return outcome
        fields = " ".join(f"CH{i + 1} {round(v):+d}" for i, v in enumerate(outcome.value))
        return _line(f"Voltage(mV): {fields}")

    async def _set_voltage(self, channel: int, voltage_mv: int) -> Outcome:
        if not self._channel_ok(channel) or abs(voltage_mv) > VOLTAGE_LIMIT_MV:
            return Outcome(Fate.REFUSED, message=f"V{channel},{voltage_mv} out of range")
        outcome = await attempt(self.twin.set_voltage_mv(channel - 1, float(voltage_mv)))
        if outcome.fate is not Fate.OK:
            return outcome
        return _line(f"Set CH{channel} DC Voltage at: {voltage_mv}mV")

    def _set_frequency(self, channel: int, frequency_hz: int) -> Outcome:
        if not self._channel_ok(channel) or frequency_hz > MAX_FREQUENCY_HZ:
            return Outcome(Fate.REFUSED, message=f"F{channel},{frequency_hz} out of range")
        self.frequency_hz[channel - 1] = frequency_hz
        return _line(f"Set CH{channel} AC Frequency at: {frequency_hz}Hz")

    def _toggle(self, channel: int) -> Outcome:
        if not self._channel_ok(channel):
            return Outcome(Fate.REFUSED, message=f"no channel {channel}")
        volt = not self.channel_volt[channel - 1]
        self.channel_volt[channel - 1] = volt
        return _line(f"Set CH{channel} output to: {'Volt' if volt else 'Hz'} (if possible)")

    def _mode_line(self) -> str:
        if self.mode == "DC":
            return "Work Mode: DC"
        return f"Work Mode: AC({WAVEFORMS[self.waveform]})"

    def _frequencies_line(self) -> str:
        return "Frequency(Hz): " + "  ".join(
            f"CH{i + 1} {hz:03d}" for i, hz in enumerate(self.frequency_hz)
        )

    def _dc_in_ac_line(self) -> str:
        state = "enabled" if self.dc_in_ac else "disabled"
        channels = ",".join(
            f"CH{i + 1}-{'V' if volt else 'F'}" for i, volt in enumerate(self.channel_volt)
        )
        return f"Hz<->Volt at AC Mode is {state}: {channels}"


def _line(text: str) -> Outcome:
    """A command that worked, answered with one content line."""
    return Outcome(Fate.OK, [text])

"""A polarization-controller twin behind the OZ Optics EPC-400's ASCII serial protocol.

Served on a pseudo-terminal (the driver opens it like /dev/ttyUSB0). Requests end in CR LF
(a lone CR or LF is accepted too); every reply line ends in CR LF and the reply ends with
``Done`` or ``Error!``. Commands: ``V<ch>,<mV>``, ``VZ<ch>``, ``V?`` (``Voltage(mV): CH1
+0 CH2 +0 CH3 +0 CH4 +0``), ``MDC``/``MAC``, ``M?`` (``Mode: DC``), ``F<ch>,<Hz>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sims.wire.base import GARBAGE, Fate, Outcome, SerialDevice, attempt, ensure_link

EOL = b"\r\n"
_SET_RE = re.compile(r"V(\d+),\s*([+-]?\d+(?:\.\d*)?)")
_FREQ_RE = re.compile(r"F(\d+),\s*(\d+)")
_ZERO_RE = re.compile(r"VZ(\d+)")
MAX_FREQUENCY_HZ = 100


class Epc400Wire(SerialDevice):
    """Serves a PolarizationController twin as an EPC-400 on a pseudo-terminal."""

    def __init__(self, name: str, twin: Any, *, link: Path | None = None) -> None:
        super().__init__(link=link)
        self.name = name
        self.twin = twin
        self._mode = "DC"
        self._frequency_hz = [0] * int(twin.n_axes)

    def take(self, buffer: bytearray) -> bytes | None:
        """One request line (CR LF, CR or LF terminated), terminator removed."""
        for index, byte in enumerate(buffer):
            if byte in b"\r\n":
                line = bytes(buffer[:index])
                end = index + 1
                if byte == 0x0D and end < len(buffer) and buffer[end] == 0x0A:
                    end += 1
                del buffer[:end]
                return line if line.strip() else self.take(buffer)
        return None

    async def handle(self, request: bytes) -> bytes:
        """Run one command; reply text lines then Done, or Error!."""
        if not await ensure_link(self.twin):
            return b""
        command = request.decode("ascii", errors="replace").strip().upper()
        outcome = await self._execute(command)
        if outcome.fate is Fate.OK:
            lines = [*outcome.value, "Done"]
            return b"".join(line.encode("ascii") + EOL for line in lines)
        if outcome.fate is Fate.REFUSED:
            return b"Error!" + EOL
        if outcome.fate is Fate.GARBLED:
            return GARBAGE + EOL
        return b""  # silent or lost: a dead serial line says nothing

    async def _execute(self, command: str) -> Outcome:
        twin = self.twin
        if command == "V?":
            outcome = await attempt(twin.get_voltages_mv())
            if outcome.fate is not Fate.OK:
                return outcome
            fields = " ".join(f"CH{i + 1} {round(v):+d}" for i, v in enumerate(outcome.value))
            return Outcome(Fate.OK, [f"Voltage(mV): {fields}"])
        if command == "M?":
            return Outcome(Fate.OK, [f"Mode: {self._mode}"])
        if command in ("MDC", "MAC"):
            self._mode = command[1:]
            return Outcome(Fate.OK, [])
        if match := _ZERO_RE.fullmatch(command):
            return _no_lines(await self._set_voltage(int(match[1]), 0.0))
        if match := _SET_RE.fullmatch(command):
            return _no_lines(await self._set_voltage(int(match[1]), float(match[2])))
        if match := _FREQ_RE.fullmatch(command):
            channel, frequency = int(match[1]), int(match[2])
            if not 1 <= channel <= len(self._frequency_hz) or frequency > MAX_FREQUENCY_HZ:
                return Outcome(Fate.REFUSED, message=f"bad frequency command {command!r}")
            self._frequency_hz[channel - 1] = frequency
            return Outcome(Fate.OK, [])
        return Outcome(Fate.REFUSED, message=f"unknown command {command!r}")

    async def _set_voltage(self, channel: int, voltage_mv: float) -> Outcome:
        if not 1 <= channel <= len(self._frequency_hz):
            return Outcome(Fate.REFUSED, message=f"no channel {channel}")
        return await attempt(self.twin.set_voltage_mv(channel - 1, voltage_mv))


def _no_lines(outcome: Outcome) -> Outcome:
    """A setting that worked replies only ``Done``."""
    return Outcome(Fate.OK, []) if outcome.fate is Fate.OK else outcome

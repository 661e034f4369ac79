"""A laser twin behind the Santec TSL-570's SCPI-over-TCP protocol (CR-terminated).

Served commands (short forms, case-insensitive, optional leading colon): ``*IDN?``,
``:POW:UNIT 0|1`` (dBm | mW), ``:WAV:UNIT 0`` (nm), ``:WAV:MIN?``, ``:WAV:MAX?``,
``:POW:STAT 0|1``/``?``, ``:POW <value>``/``?``, ``:POW:ACT?``, ``:WAV <nm>``/``?``,
``:COHC 0|1``/``?``, ``:SYST:ERR?`` (pops the error queue, ``0,"No error"`` when empty)
and ``:SYST:ALER?`` (the twin's health: ``No alerts.`` when healthy). Setting commands
answer nothing; a refusal or an unknown command is queued as a SCPI error for
``:SYST:ERR?``, as on the instrument.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from labctl.interfaces.units import dbm_to_mw, mw_to_dbm
from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link

TERMINATOR = b"\r"
IDENTITY = "SANTEC,TSL-570,LCTWIN0001,0001.0000"
NO_ERROR = '0,"No error"'
NO_ALERTS = "No alerts."
DEFAULT_RANGE_NM = (1260.0, 1680.0)


class Tsl570Wire:
    """Serves a Laser twin as a TSL-570 on ``host:port``."""

    def __init__(self, name: str, twin: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.twin = twin
        self._tcp = TcpEndpoint(host, port, self._connection)
        self._errors: deque[str] = deque(maxlen=32)
        self._power_unit_mw = True
        self._coherence = False
        self._pending: Fate = Fate.OK  # a fault met by a setting command hits the next reply

    async def start(self) -> None:
        """Listen for drivers."""
        await self._tcp.start()

    async def stop(self) -> None:
        """Close the listener and every connection."""
        await self._tcp.stop()

    def endpoints(self) -> dict[str, str]:
        """``control``: host:port of the SCPI socket."""
        return {"control": self._tcp.address}

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await ensure_link(self.twin):
            return  # the device is unreachable: the connection closes at once
        while True:
            raw = await reader.readuntil(TERMINATOR)
            command = raw[:-1].decode("ascii", errors="replace").strip()
            if not command:
                continue
            reply = await self._execute(command)
            if reply.fate is Fate.LOST:
                return
            if reply.fate is Fate.SILENT:
                continue
            data = GARBAGE if reply.fate is Fate.GARBLED else str(reply.value).encode("ascii")
            writer.write(data + TERMINATOR)
            await writer.drain()

    async def _execute(self, command: str) -> Outcome:
        """Run one command; queries return their reply text, settings return SILENT."""
        header, _, argument = command.partition(" ")
        header = header.upper().lstrip(":")
        argument = argument.strip()
        if header.endswith("?"):
            outcome = await self._query(header[:-1])
            pending, self._pending = self._pending, Fate.OK
            if outcome.fate is Fate.OK and pending is not Fate.OK:
                return Outcome(pending)
            return outcome
        outcome = await self._setting(header, argument)
        if outcome.fate is Fate.LOST:
            return outcome
        if outcome.fate is Fate.REFUSED:
            self._errors.append(f'-222,"Data out of range; {outcome.message}"')
        elif outcome.fate in (Fate.SILENT, Fate.GARBLED):
            self._pending = outcome.fate
        return Outcome(Fate.SILENT)

    async def _setting(self, header: str, argument: str) -> Outcome:
        twin = self.twin
        try:
            if header == "POW:UNIT":
                self._power_unit_mw = _flag(argument)
                return Outcome(Fate.OK)
            if header == "WAV:UNIT":
                if _flag(argument):
                    return Outcome(Fate.REFUSED, message="only nm (0) is served")
                return Outcome(Fate.OK)
            if header == "POW:STAT":
                return await attempt(twin.set_output(_flag(argument)))
            if header == "POW":
                value = float(argument)
                power_mw = value if self._power_unit_mw else dbm_to_mw(value)
                return await attempt(twin.set_power_mw(power_mw))
            if header == "WAV":
                return await attempt(twin.set_wavelength_nm(float(argument)))
            if header == "COHC":
                self._coherence = _flag(argument)
                return Outcome(Fate.OK)
        except ValueError:
            self._errors.append(f'-224,"Illegal parameter value; {argument!r}"')
            return Outcome(Fate.OK)
        self._errors.append(f'-113,"Undefined header; {header}"')
        return Outcome(Fate.OK)

    async def _query(self, header: str) -> Outcome:
        twin = self.twin
        if header == "*IDN":
            return Outcome(Fate.OK, IDENTITY)
        if header == "SYST:ERR":
            return Outcome(Fate.OK, self._errors.popleft() if self._errors else NO_ERROR)
        if header == "SYST:ALER":
            health = await attempt(twin.health())
            if health.fate is not Fate.OK:
                return health
            return Outcome(Fate.OK, NO_ALERTS if health.value.ok else health.value.detail)
        if header in ("WAV:MIN", "WAV:MAX"):
            low, high = getattr(twin, "wavelength_range_nm", DEFAULT_RANGE_NM)
            return Outcome(Fate.OK, f"{low if header == 'WAV:MIN' else high:.4f}")
        if header == "POW:STAT":
            return _formatted(await attempt(twin.get_output()), lambda on: str(int(on)))
        if header in ("POW", "POW:ACT"):
            power = await attempt(twin.get_power_mw())
            if header == "POW:ACT" and power.fate is Fate.OK:
                output = await attempt(twin.get_output())
                if output.fate is not Fate.OK:
                    return output
                power = Outcome(Fate.OK, power.value if output.value else 0.0)
            return _formatted(power, self._format_power)
        if header == "WAV":
            return _formatted(await attempt(twin.get_wavelength_nm()), lambda nm: f"{nm:.4f}")
        if header == "COHC":
            return Outcome(Fate.OK, str(int(self._coherence)))
        self._errors.append(f'-113,"Undefined header; {header}?"')
        return Outcome(Fate.SILENT)  # an unknown query gets no answer, only a queued error

    def _format_power(self, power_mw: float) -> str:
        if self._power_unit_mw:
            return f"{power_mw:.4f}"
        return f"{mw_to_dbm(power_mw):.4f}" if power_mw > 0 else "-inf"


def _flag(argument: str) -> bool:
    """SCPI boolean argument: 0/1/ON/OFF; ValueError otherwise."""
    text = argument.strip().upper()
    if text in ("1", "ON"):
        return True
    if text in ("0", "OFF"):
        return False
    raise ValueError(f"not a boolean: {argument!r}")


def _formatted(outcome: Outcome, render: Any) -> Outcome:
    """The outcome with its value rendered as reply text (failures pass through)."""
    if outcome.fate is not Fate.OK:
        return outcome
    return Outcome(Fate.OK, render(outcome.value))

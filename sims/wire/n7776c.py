"""A laser twin behind the Keysight N7776C tunable laser's SCPI socket (LAN port 5025).

What is served, as the N7776C / 8164B programming guide gives it:

- program messages end in LF (CR and CR LF are taken too); every reply ends in LF;
  several units per message (``;``), replies joined by ``;``; short or long headers, any
  case; the laser is slot 0: ``:SOURce0:...`` (``:SOURce:...`` means the same), other
  slots are an undefined header;
- common commands ``*IDN? *CLS *RST *OPC? *TST? *ESR? *STB?``; ``*IDN?`` answers
  ``Keysight Technologies,N7776C,<serial>,<firmware>``;
- ``:SOURce0:POWer:STATe 0|1|ON|OFF`` and ``?`` (``0``/``1``);
- ``:SOURce0:POWer:UNIT 0|1|DBM|W`` and ``?`` (``+0`` dBm, ``+1`` W): the unit numbers
  are read back in, and a number without suffix is taken in;
- ``:SOURce0:POWer[:LEVel][:IMMediate][:AMPLitude] <value>[PW|NW|UW|MW|W|DBM]``; the
  query answers in W or dBm (``+1.50000000E-003``, three-digit exponent) and takes ``MIN|MAX|DEF``;
- ``:SOURce0:WAVelength <value>[PM|NM|UM|MM|M]`` (no suffix: metres); the query answers
  in metres (``+1.55012500E-006``) and takes ``MIN|MAX|DEF``; the N7776C tunes
  1480..1620 nm (narrowed further when the twin's own range is narrower);
- ``:LOCK?`` (``0``/``1``) and ``:LOCK 0|1,<password>`` (default password ``1234``): a
  locked laser refuses to switch on (-221 ``Settings conflict``);
- ``:SYSTem:ERRor?`` pops ``<+code>,"<text>"`` (``+0,"No error"``); refusals queue the
  guide's SCPI codes below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from labctl.interfaces.units import dbm_to_mw, mw_to_dbm
from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link
from sims.wire.scpi import parse_bool, parse_number, take_messages
from sims.wire.scpi_device import (
    Handler,
    ScpiCommand,
    ScpiCore,
    ScpiRefusal,
    no_argument,
    required,
)

log = logging.getLogger("sims.wire.n7776c")

TERMINATOR = b"\n"
IDENTITY = "Keysight Technologies,N7776C,LCTWIN0002,V1.0.3"
BAND_NM = (1480.0, 1620.0)  # the N7776C's tuning band
LOCK_PASSWORD = "1234"
MAX_MESSAGE_BYTES = 65536

ERRORS = {
    0: "No error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -131: "Invalid suffix",
    -221: "Settings conflict",
    -222: "Data out of range",
}
POWER_SCALE_MW = {"PW": 1e-9, "NW": 1e-6, "UW": 1e-3, "MW": 1.0, "W": 1e3}
WAVELENGTH_SCALE_NM = {"": 1e9, "M": 1e9, "MM": 1e6, "UM": 1e3, "NM": 1.0, "PM": 1e-3}


class N7776cWire:
    """Serves a Laser twin as a Keysight N7776C on ``host:port``."""

    def __init__(self, name: str, twin: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.twin = twin
        self._tcp = TcpEndpoint(host, port, self._connection)
        self._unit_watt = False  # power unit: False dBm (the default after *RST), True W
        self._locked = False
        self._esr = 0
        self._scpi = ScpiCore(name, ERRORS, self._commands())

    async def start(self) -> None:
        """Listen for drivers."""
        await self._tcp.start()

    async def stop(self) -> None:
        """Close the listener and every connection."""
        await self._tcp.stop()

    def endpoints(self) -> dict[str, str]:
        """``control``: host:port of the SCPI socket."""
        return {"control": self._tcp.address}

    @property
    def errors(self) -> list[int]:
        """The queued error codes, oldest first (for tests)."""
        return list(self._scpi.queue)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await ensure_link(self.twin):
            return
        buffer = bytearray()
        while data := await reader.read(4096):
            buffer += data
            for message in take_messages(buffer):
                reply = await self._scpi.message(message)
                if reply.fate is Fate.LOST:
                    return
                if reply.fate is Fate.SILENT:
                    continue
                body = GARBAGE if reply.fate is Fate.GARBLED else str(reply.value).encode()
                writer.write(body + TERMINATOR)
                await writer.drain()
            if len(buffer) > MAX_MESSAGE_BYTES:
                buffer.clear()
                self._scpi.push_error(-102, "message without terminator")

    # -- command table ------------------------------------------------------------------

    def _commands(self) -> list[ScpiCommand]:
        return [
            ScpiCommand("*IDN", query=self._text(lambda: IDENTITY)),
            ScpiCommand("*CLS", setting=self._action(self._clear)),
            ScpiCommand("*RST", setting=self._action(self._reset)),
            ScpiCommand("*OPC", query=self._text(lambda: "+1")),
            ScpiCommand("*TST", query=self._text(lambda: "+0")),
            ScpiCommand("*ESR", query=self._text(self._read_esr)),
            ScpiCommand("*STB", query=self._text(lambda: f"+{4 if self._scpi.queue else 0}")),
            ScpiCommand(":SYSTem:ERRor", query=self._text(lambda: self._scpi.pop_error(plus=True))),
            ScpiCommand(
                ":LOCK", query=self._text(lambda: str(int(self._locked))), setting=self._lock
            ),
            ScpiCommand(":SOURce:POWer:STATe", query=self._output, setting=self._set_output),
            ScpiCommand(
                ":SOURce:POWer:UNIT",
                query=self._text(lambda: f"+{int(self._unit_watt)}"),
                setting=self._set_unit,
            ),
            ScpiCommand(
                ":SOURce:POWer[:LEVel][:IMMediate][:AMPLitude]",
                query=self._power,
                setting=self._set_power,
            ),
            ScpiCommand(":SOURce:WAVelength", query=self._wavelength, setting=self._set_wavelength),
        ]

    @staticmethod
    def _text(value: Callable[[], str]) -> Handler:
        async def query(argument: str, suffixes: tuple[int, ...]) -> Outcome:
            no_argument(argument)
            return Outcome(Fate.OK, value())

        return query

    @staticmethod
    def _action(action: Callable[[], None]) -> Handler:
        async def setting(argument: str, suffixes: tuple[int, ...]) -> Outcome:
            no_argument(argument)
            action()
            return Outcome(Fate.OK)

        return setting

    def _clear(self) -> None:
        self._scpi.queue.clear()
        self._esr = 0

    def _reset(self) -> None:
        self._scpi.queue.clear()
        self._unit_watt = False

    def _read_esr(self) -> str:
        value, self._esr = self._esr, 0
        return f"+{value}"

    async def _lock(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        state, _, password = required(argument).partition(",")
        if password.strip() != LOCK_PASSWORD:
            raise ScpiRefusal(-221, "wrong lock password")
        self._locked = parse_bool(state)
        return Outcome(Fate.OK)

    # -- laser --------------------------------------------------------------------------

    @staticmethod
    def _slot(suffixes: tuple[int, ...]) -> None:
        if suffixes and suffixes[0] != 0:
            raise ScpiRefusal(-113, f"no laser in slot {suffixes[0]}")

    async def _output(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        no_argument(argument)
        return _formatted(await attempt(self.twin.get_output()), lambda on: str(int(on)))

    async def _set_output(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        enabled = parse_bool(required(argument))
        if enabled and self._locked:
            raise ScpiRefusal(-221, "laser locked")
        return await attempt(self.twin.set_output(enabled))

    async def _set_unit(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        text = required(argument).strip().upper()
        units = {"0": False, "DBM": False, "1": True, "W": True}
        if text not in units:
            raise ScpiRefusal(-104, argument)
        self._unit_watt = units[text]
        return Outcome(Fate.OK)

    def _power_limits_mw(self) -> tuple[float, float]:
        low, high = self.twin.power_range_mw
        return float(low), float(high)

    def _band_nm(self) -> tuple[float, float]:
        low, high = getattr(self.twin, "wavelength_range_nm", BAND_NM)
        return max(BAND_NM[0], float(low)), min(BAND_NM[1], float(high))

    def _format_power(self, power_mw: float) -> str:
        if self._unit_watt:
            return _sci(power_mw * 1e-3)
        return _sci(mw_to_dbm(power_mw))

    async def _power(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        limit = _limit(argument)
        if limit is not None:
            low, high = self._power_limits_mw()
            return Outcome(Fate.OK, self._format_power(low if limit == "MIN" else high))
        return _formatted(await attempt(self.twin.get_power_mw()), self._format_power)

    async def _set_power(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        value, unit = parse_number(required(argument))
        if unit == "DBM" or (not unit and not self._unit_watt):
            power_mw = dbm_to_mw(value)
        elif unit == "" and self._unit_watt:
            power_mw = value * 1e3
        elif unit in POWER_SCALE_MW:
            power_mw = value * POWER_SCALE_MW[unit]
        else:
            raise ScpiRefusal(-131, argument)
        low, high = self._power_limits_mw()
        if not low <= power_mw <= high:
            raise ScpiRefusal(-222, argument)
        return await attempt(self.twin.set_power_mw(power_mw))

    async def _wavelength(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        limit = _limit(argument)
        if limit is not None:
            low, high = self._band_nm()
            return Outcome(Fate.OK, _sci((low if limit == "MIN" else high) * 1e-9))
        return _formatted(await attempt(self.twin.get_wavelength_nm()), lambda nm: _sci(nm * 1e-9))

    async def _set_wavelength(self, argument: str, suffixes: tuple[int, ...]) -> Outcome:
        self._slot(suffixes)
        value, unit = parse_number(required(argument))
        if unit not in WAVELENGTH_SCALE_NM:
            raise ScpiRefusal(-131, argument)
        nm = value * WAVELENGTH_SCALE_NM[unit]
        low, high = self._band_nm()
        if not low <= nm <= high:
            raise ScpiRefusal(-222, argument)
        return await attempt(self.twin.set_wavelength_nm(nm))


def _sci(value: float) -> str:
    """A number as the instrument prints it: ``+1.55012500E-006`` (3-digit exponent)."""
    mantissa, _, exponent = f"{value:+.8E}".partition("E")
    return f"{mantissa}E{int(exponent):+04d}"


def _limit(argument: str) -> str | None:
    """``MIN``/``MAX`` (``DEF`` reads as the current value), None for no argument."""
    text = argument.strip().upper()
    if not text or text in ("DEF", "DEFAULT"):
        return None
    if text in ("MIN", "MINIMUM"):
        return "MIN"
    if text in ("MAX", "MAXIMUM"):
        return "MAX"
    raise ScpiRefusal(-104, argument)


def _formatted(outcome: Outcome, render: Callable[[Any], str]) -> Outcome:
    if outcome.fate is not Fate.OK:
        return outcome
    return Outcome(Fate.OK, render(outcome.value))

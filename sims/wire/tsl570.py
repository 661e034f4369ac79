"""A laser twin behind the Santec TSL-570's SCPI-over-TCP protocol.

What is served, as the TSL-570 manual gives it (Legacy command set unless noted):

- program messages end in CR, LF or CR LF; replies end in CR (the instrument's default
  delimiter); several units may share one message (``;``), their replies joined by ``;``;
- headers in short or long form, any case, leading colon optional (``:POW:STAT``,
  ``:POWer:STATe``, ``pow:stat``); ``:POWer[:LEVel]`` and ``:POWer:ACTual[:LEVel]``;
- IEEE 488.2 common commands: ``*IDN? *RST *CLS *OPC *OPC? *WAI *TST? *ESR? *ESE[?]
  *SRE[?] *STB?`` (``*RST`` aborts and clears the error queue; settings stay);
- laser: ``:POWer:STATe``, ``:POWer:SHUTter`` (inverse of STATe), ``:POWer[:LEVel]``,
  ``:POWer:ACTual?``, ``:POWer:UNIT`` (0 dBm, 1 mW), ``:WAVelength`` (nm),
  ``:WAVelength:UNIT`` (display unit: 0 nm, 1 THz), ``:WAVelength:MINimum?/MAXimum?``,
  ``:WAVelength:FREQuency`` and ``:FREQuency`` (THz), their ``:MINimum?/MAXimum?``, the
  sweep range queries ``:WAVelength|FREQuency:SWEep:RANGe:MINimum?/MAXimum?``,
  ``:COHCtrl``;
- sweep, trigger and modulation parameters are kept and read back (no sweep is run:
  starting one is an execution error);
- system: ``:SYSTem:ERRor?`` (pops the queue, ``0,"No error"`` when empty), ``:SYSTem:ALERt?``
  (``No alerts.`` when healthy), ``:SYSTem:COMMunicate:CODe`` (0 Legacy, 1 SCPI: SCPI
  takes and gives wavelengths in m and frequencies in Hz, and accepts unit suffixes),
  ``:SYSTem:VERSion?``, ``:SYSTem:LOCK?``.

Setting commands answer nothing. A refused or malformed command queues the manual's
error (code and text exactly as listed there) and sets the matching event bit; an
unknown query is not answered at all (only its -113 is queued), as on the instrument.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from labctl.interfaces.units import dbm_to_mw, mw_to_dbm
from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link
from sims.wire.scpi import Unit, matches, parse_bool, parse_number, split_units, take_messages

log = logging.getLogger("sims.wire.tsl570")

TERMINATOR = b"\r"
IDENTITY = "SANTEC,TSL-570,LCTWIN0001,0001.0000.0001"
FIRMWARE = "0001.0000.0001"
NO_ALERTS = "No alerts."
DEFAULT_RANGE_NM = (1260.0, 1680.0)
SPEED_OF_LIGHT_NM_THZ = 299_792.458  # c in nm*THz: f[THz] = c / lambda[nm]
ERROR_QUEUE_DEPTH = 32
MAX_MESSAGE_BYTES = 65536  # an unterminated message past this is line noise: dropped

# The TSL-570 manual's error list: code -> text, exactly as :SYSTem:ERRor? gives them.
ERRORS = {
    0: "No error",
    -102: "Syntax error",
    -103: "Invalid separator",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -148: "Character data not allowed",
    -200: "Execution error",
    -222: "Data out of range",
    -410: "Query INTERRUPTED",
}
NO_ERROR = f'0,"{ERRORS[0]}"'

# IEEE 488.2 Standard Event Status Register bits.
ESR_OPC, ESR_QYE, ESR_EXE, ESR_CME = 0x01, 0x04, 0x10, 0x20
STB_EAV, STB_ESB, STB_MSS = 0x04, 0x20, 0x40

# Parameters the twin keeps and reads back without simulating them: spelling -> default.
KEPT = {
    ":WAVelength:SWEep:STARt": "1500.0000",
    ":WAVelength:SWEep:STOP": "1600.0000",
    ":WAVelength:SWEep:STEP": "0.0010",
    ":WAVelength:SWEep:MODe": "1",
    ":WAVelength:SWEep:SPEed": "10",
    ":WAVelength:SWEep:DWELl": "0.0",
    ":WAVelength:SWEep:DELay": "0.0",
    ":WAVelength:SWEep:CYCLes": "0",
    ":WAVelength:FINetuning": "0.00",
    ":FREQuency:SWEep:STARt": "199.86164",
    ":FREQuency:SWEep:STOP": "187.37028",
    ":FREQuency:SWEep:STEP": "0.00010",
    ":POWer:ATTenuation": "0.00",
    ":POWer:ATTenuation:AUTo": "1",
    ":TRIGger:OUTPut": "0",
    ":TRIGger:OUTPut:SETTing": "0",
    ":TRIGger:OUTPut:STEP": "0.0010",
    ":TRIGger:OUTPut:ACTive": "0",
    ":TRIGger:INPut:EXTernal": "0",
    ":TRIGger:INPut:ACTive": "0",
    ":TRIGger:INPut:STANdby": "0",
    ":AM:STATe": "0",
    ":AM:SOURce": "0",
    ":DISPlay:BRIGhtness": "100",
}


class ScpiError(Exception):
    """A command the instrument refuses: queue ``code`` (one of ERRORS)."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


Query = Callable[[], Awaitable[Outcome]]
Setting = Callable[[str], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Command:
    """One node of the command tree: its manual spelling, query and setting handlers."""

    spelling: str
    query: Query | None = None
    setting: Setting | None = None


class Tsl570Wire:
    """Serves a Laser twin as a TSL-570 on ``host:port``."""

    def __init__(
        self,
        name: str,
        twin: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        terminator: bytes = TERMINATOR,
    ) -> None:
        self.name = name
        self.twin = twin
        self.terminator = terminator  # what replies end with
        self._tcp = TcpEndpoint(host, port, self._connection)
        self._errors: deque[int] = deque(maxlen=ERROR_QUEUE_DEPTH)
        self._power_unit_mw = True
        self._wavelength_unit_thz = False
        self._coherence = False
        self._scpi_mode = False
        self._esr = 0
        self._ese = 0
        self._sre = 0
        self._kept = dict(KEPT)
        self._pending: Fate = Fate.OK  # a fault met by a setting command hits the next reply
        self._commands = self._command_tree()

    # -- server -------------------------------------------------------------------------

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
    def errors(self) -> list[str]:
        """The error queue as ``:SYSTem:ERRor?`` would read it, oldest first (for tests)."""
        return [_error_text(code) for code in self._errors]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await ensure_link(self.twin):
            return  # the device is unreachable: the connection closes at once
        buffer = bytearray()
        discarding = False  # inside an over-long message: drop up to its terminator
        while data := await reader.read(4096):
            buffer += data
            if discarding:
                ends = [i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0]
                if not ends:
                    buffer.clear()
                    continue
                del buffer[: min(ends) + 1]
                discarding = False
            for message in take_messages(buffer):
                reply = await self._message(message)
                if reply.fate is Fate.LOST:
                    return
                if reply.fate is Fate.SILENT:
                    continue
                body = GARBAGE if reply.fate is Fate.GARBLED else str(reply.value).encode("ascii")
                writer.write(body + self.terminator)
                await writer.drain()
            if len(buffer) > MAX_MESSAGE_BYTES:
                log.warning("%s: message over %d bytes dropped", self.name, MAX_MESSAGE_BYTES)
                buffer.clear()
                discarding = True
                self._queue(-102, "message without terminator")

    async def _message(self, message: str) -> Outcome:
        """Run every unit of one program message; the replies of its queries, joined."""
        replies: list[str] = []
        for unit in split_units(message):
            outcome = await self._unit(unit)
            if outcome.fate in (Fate.LOST, Fate.GARBLED):
                return outcome
            if outcome.fate is Fate.OK and unit.is_query:
                replies.append(str(outcome.value))
        return Outcome(Fate.OK, ";".join(replies)) if replies else Outcome(Fate.SILENT)

    async def _unit(self, unit: Unit) -> Outcome:
        """One message unit: a query's reply text, or SILENT for settings and errors."""
        try:
            command = self._find(unit.path)
            if unit.is_query:
                if command.query is None:
                    raise ScpiError(-113, unit.header)
                if unit.arguments:
                    raise ScpiError(-108, unit.arguments)
                outcome = await command.query()
                pending, self._pending = self._pending, Fate.OK
                if outcome.fate is Fate.OK and pending is not Fate.OK:
                    return Outcome(pending)
                return outcome
            if command.setting is None:
                raise ScpiError(-113, unit.header)
            outcome = await command.setting(unit.arguments)
        except ScpiError as exc:
            self._queue(exc.code, exc.detail or unit.header)
            return Outcome(Fate.SILENT)
        except ValueError as exc:
            self._queue(-148 if unit.arguments[:1].isalpha() else -102, str(exc))
            return Outcome(Fate.SILENT)
        if outcome.fate is Fate.LOST:
            return outcome
        if outcome.fate is Fate.REFUSED:
            self._queue(-222, outcome.message)
        elif outcome.fate in (Fate.SILENT, Fate.GARBLED):
            self._pending = outcome.fate
        return Outcome(Fate.SILENT)

    def _find(self, path: str) -> Command:
        for command in self._commands:
            if matches(path, command.spelling):
                return command
        raise ScpiError(-113, path)

    def _queue(self, code: int, detail: str) -> None:
        log.info("%s: error %d (%s)", self.name, code, detail)
        self._errors.append(code)
        if -199 <= code <= -100:
            self._esr |= ESR_CME
        elif -299 <= code <= -200:
            self._esr |= ESR_EXE
        elif -499 <= code <= -400:
            self._esr |= ESR_QYE

    # -- the command tree ---------------------------------------------------------------

    def _command_tree(self) -> list[Command]:
        common = [
            Command("*IDN", query=self._text(lambda: IDENTITY)),
            Command("*RST", setting=self._no_argument(self._reset)),
            Command("*CLS", setting=self._no_argument(self._clear)),
            Command("*OPC", query=self._text(lambda: "1"), setting=self._no_argument(self._opc)),
            Command("*WAI", setting=self._no_argument(lambda: None)),
            Command("*TST", query=self._text(lambda: "0")),
            Command("*ESR", query=self._text(self._read_esr)),
            Command("*ESE", query=self._text(lambda: str(self._ese)), setting=self._set_ese),
            Command("*SRE", query=self._text(lambda: str(self._sre)), setting=self._set_sre),
            Command("*STB", query=self._text(lambda: str(self._status_byte()))),
        ]
        system = [
            Command(":SYSTem:ERRor[:NEXT]", query=self._text(self._pop_error)),
            Command(":SYSTem:ALERt", query=self._alert),
            Command(
                ":SYSTem:COMMunicate:CODe",
                query=self._text(lambda: str(int(self._scpi_mode))),
                setting=self._flag_setter("_scpi_mode"),
            ),
            Command(":SYSTem:VERSion", query=self._text(lambda: FIRMWARE)),
            Command(":SYSTem:LOCK", query=self._text(lambda: "0")),
        ]
        laser = [
            Command(":POWer:STATe", query=self._output, setting=self._set_output),
            Command(":POWer:SHUTter", query=self._shutter, setting=self._set_shutter),
            Command(":POWer:ACTual[:LEVel]", query=self._actual_power),
            Command(
                ":POWer:UNIT",
                query=self._text(lambda: str(int(self._power_unit_mw))),
                setting=self._flag_setter("_power_unit_mw"),
            ),
            Command(":POWer[:LEVel]", query=self._power, setting=self._set_power),
            Command(
                ":WAVelength:UNIT",
                query=self._text(lambda: str(int(self._wavelength_unit_thz))),
                setting=self._flag_setter("_wavelength_unit_thz"),
            ),
            Command(":WAVelength:MINimum", query=self._limit(wavelength=True, low=True)),
            Command(":WAVelength:MAXimum", query=self._limit(wavelength=True, low=False)),
            Command(
                ":WAVelength:SWEep:RANGe:MINimum", query=self._limit(wavelength=True, low=True)
            ),
            Command(
                ":WAVelength:SWEep:RANGe:MAXimum", query=self._limit(wavelength=True, low=False)
            ),
            Command(":WAVelength:FREQuency:MINimum", query=self._limit(wavelength=False, low=True)),
            Command(
                ":WAVelength:FREQuency:MAXimum", query=self._limit(wavelength=False, low=False)
            ),
            Command(":FREQuency:MINimum", query=self._limit(wavelength=False, low=True)),
            Command(":FREQuency:MAXimum", query=self._limit(wavelength=False, low=False)),
            Command(
                ":FREQuency:SWEep:RANGe:MINimum", query=self._limit(wavelength=False, low=True)
            ),
            Command(
                ":FREQuency:SWEep:RANGe:MAXimum", query=self._limit(wavelength=False, low=False)
            ),
            Command(":WAVelength:FREQuency", query=self._frequency, setting=self._set_frequency),
            Command(":FREQuency", query=self._frequency, setting=self._set_frequency),
            Command(
                ":WAVelength:SWEep[:STATe]", query=self._text(lambda: "0"), setting=self._sweep
            ),
            Command(":WAVelength", query=self._wavelength, setting=self._set_wavelength),
            Command(
                ":COHCtrl",
                query=self._text(lambda: str(int(self._coherence))),
                setting=self._flag_setter("_coherence"),
            ),
        ]
        kept = [
            Command(
                spelling, query=self._kept_query(spelling), setting=self._kept_setting(spelling)
            )
            for spelling in KEPT
        ]
        return common + system + kept + laser

    # -- handler builders ---------------------------------------------------------------

    @staticmethod
    def _text(value: Callable[[], str]) -> Query:
        async def query() -> Outcome:
            return Outcome(Fate.OK, value())

        return query

    @staticmethod
    def _no_argument(action: Callable[[], None]) -> Setting:
        async def setting(argument: str) -> Outcome:
            if argument:
                raise ScpiError(-108, argument)
            action()
            return Outcome(Fate.OK)

        return setting

    def _flag_setter(self, attribute: str) -> Setting:
        async def setting(argument: str) -> Outcome:
            setattr(self, attribute, parse_bool(_required(argument)))
            return Outcome(Fate.OK)

        return setting

    def _kept_query(self, spelling: str) -> Query:
        async def query() -> Outcome:
            return Outcome(Fate.OK, self._kept[spelling])

        return query

    def _kept_setting(self, spelling: str) -> Setting:
        async def setting(argument: str) -> Outcome:
            value, unit = parse_number(_required(argument))
            if unit:
                raise ScpiError(-148, argument)
            decimals = len(self._kept[spelling].partition(".")[2])
            self._kept[spelling] = f"{value:.{decimals}f}" if decimals else str(round(value))
            return Outcome(Fate.OK)

        return setting

    def _limit(self, *, wavelength: bool, low: bool) -> Query:
        async def query() -> Outcome:
            low_nm, high_nm = getattr(self.twin, "wavelength_range_nm", DEFAULT_RANGE_NM)
            if wavelength:
                return Outcome(Fate.OK, self._format_wavelength(low_nm if low else high_nm))
            nm = high_nm if low else low_nm  # the lowest frequency is the longest wavelength
            return Outcome(Fate.OK, self._format_frequency(SPEED_OF_LIGHT_NM_THZ / nm))

        return query

    # -- common commands ----------------------------------------------------------------

    def _reset(self) -> None:
        # *RST on the TSL-570 aborts standby and clears the input and error queues only.
        self._errors.clear()

    def _clear(self) -> None:
        self._errors.clear()
        self._esr = 0

    def _opc(self) -> None:
        self._esr |= ESR_OPC

    def _read_esr(self) -> str:
        value, self._esr = self._esr, 0
        return str(value)

    def _status_byte(self) -> int:
        status = STB_EAV if self._errors else 0
        if self._esr & self._ese:
            status |= STB_ESB
        if status & self._sre:
            status |= STB_MSS
        return status

    async def _set_ese(self, argument: str) -> Outcome:
        self._ese = _register(argument)
        return Outcome(Fate.OK)

    async def _set_sre(self, argument: str) -> Outcome:
        self._sre = _register(argument)
        return Outcome(Fate.OK)

    def _pop_error(self) -> str:
        return _error_text(self._errors.popleft()) if self._errors else NO_ERROR

    async def _alert(self) -> Outcome:
        health = await attempt(self.twin.health())
        if health.fate is not Fate.OK:
            return health
        return Outcome(Fate.OK, NO_ALERTS if health.value.ok else health.value.detail)

    # -- laser --------------------------------------------------------------------------

    async def _output(self) -> Outcome:
        return _formatted(await attempt(self.twin.get_output()), lambda on: str(int(on)))

    async def _set_output(self, argument: str) -> Outcome:
        return await attempt(self.twin.set_output(parse_bool(_required(argument))))

    async def _shutter(self) -> Outcome:
        return _formatted(await attempt(self.twin.get_output()), lambda on: str(int(not on)))

    async def _set_shutter(self, argument: str) -> Outcome:
        return await attempt(self.twin.set_output(not parse_bool(_required(argument))))

    async def _power(self) -> Outcome:
        return _formatted(await attempt(self.twin.get_power_mw()), self._format_power)

    async def _actual_power(self) -> Outcome:
        power = await attempt(self.twin.get_power_mw())
        if power.fate is not Fate.OK:
            return power
        output = await attempt(self.twin.get_output())
        if output.fate is not Fate.OK:
            return output
        return Outcome(Fate.OK, self._format_power(power.value if output.value else 0.0))

    async def _set_power(self, argument: str) -> Outcome:
        value, unit = self._number(argument)
        if unit == "DBM" or (not unit and not self._power_unit_mw):
            power_mw = dbm_to_mw(value)
        elif unit in ("", "MW"):
            power_mw = value
        elif unit == "W":
            power_mw = value * 1e3
        elif unit == "UW":
            power_mw = value * 1e-3
        else:
            raise ScpiError(-148, argument)
        return await attempt(self.twin.set_power_mw(power_mw))

    async def _wavelength(self) -> Outcome:
        return _formatted(await attempt(self.twin.get_wavelength_nm()), self._format_wavelength)

    async def _set_wavelength(self, argument: str) -> Outcome:
        value, unit = self._number(argument)
        scale = {"NM": 1.0, "UM": 1e3, "M": 1e9, "": 1e9 if self._scpi_mode else 1.0}
        if unit not in scale:
            raise ScpiError(-148, argument)
        return await attempt(self.twin.set_wavelength_nm(value * scale[unit]))

    async def _frequency(self) -> Outcome:
        def render(nm: float) -> str:
            return self._format_frequency(SPEED_OF_LIGHT_NM_THZ / nm)

        return _formatted(await attempt(self.twin.get_wavelength_nm()), render)

    async def _set_frequency(self, argument: str) -> Outcome:
        value, unit = self._number(argument)
        scale = {"THZ": 1.0, "GHZ": 1e-3, "HZ": 1e-12, "": 1e-12 if self._scpi_mode else 1.0}
        if unit not in scale:
            raise ScpiError(-148, argument)
        thz = value * scale[unit]
        if thz <= 0:
            raise ScpiError(-222, argument)
        return await attempt(self.twin.set_wavelength_nm(SPEED_OF_LIGHT_NM_THZ / thz))

    async def _sweep(self, argument: str) -> Outcome:
        if parse_bool(_required(argument)):
            raise ScpiError(-200, "the twin does not sweep")
        return Outcome(Fate.OK)

    # -- formats ------------------------------------------------------------------------

    def _number(self, argument: str) -> tuple[float, str]:
        value, unit = parse_number(_required(argument))
        if unit and not self._scpi_mode:
            raise ScpiError(-148, f"Legacy commands take no unit: {argument!r}")
        return value, unit

    def _format_power(self, power_mw: float) -> str:
        if self._power_unit_mw:
            return f"{power_mw:.4f}"
        return f"{mw_to_dbm(power_mw):.4f}" if power_mw > 0 else "-inf"

    def _format_wavelength(self, nm: float) -> str:
        return f"{nm * 1e-9:.8E}" if self._scpi_mode else f"{nm:.4f}"

    def _format_frequency(self, thz: float) -> str:
        return f"{thz * 1e12:.8E}" if self._scpi_mode else f"{thz:.5f}"


def _error_text(code: int) -> str:
    return f'{code},"{ERRORS[code]}"'


def _required(argument: str) -> str:
    if not argument:
        raise ScpiError(-109)
    return argument


def _register(argument: str) -> int:
    value, unit = parse_number(_required(argument))
    if unit or not value.is_integer():
        raise ScpiError(-102, argument)
    if not 0 <= value <= 255:
        raise ScpiError(-222, argument)
    return int(value)


def _formatted(outcome: Outcome, render: Callable[[Any], str]) -> Outcome:
    """The outcome with its value rendered as reply text (failures pass through)."""
    if outcome.fate is not Fate.OK:
        return outcome
    return Outcome(Fate.OK, render(outcome.value))

"""A transmitter twin behind the Tektronix AWG5208's SCPI (raw socket, LF-terminated).

The AWG5200 series programmer manual's commands, as far as a transmitter and public
clients (qcodes' ``TektronixAWG5208``) use them:

- common ``*IDN? *RST *CLS *OPC *OPC? *WAI *ESR?``; ``SYSTem:ERRor[:NEXT]?`` (``code,"text"``,
  ``0,"No error"`` when empty) and ``SYSTem:ERRor:CODE?`` (the code alone);
- ``WLISt:WAVeform:NEW "name",size``, ``WLISt:WAVeform:DATA "name",start,size,#<block>``
  (IEEE 754 single floats, little-endian, -1..1 full scale),
  ``WLISt:WAVeform:MARKer:DATA "name",start,size,#<block>`` (one byte a sample, bit m-1 =
  marker m), ``WLISt:WAVeform:DELete "name"|ALL``, ``WLISt:WAVeform:LENGth? "name"``,
  ``WLISt:LIST?``, ``WLISt:SIZE?``;
- ``MMEMory:CDIRectory``, ``MMEMory:DATA "file",#<block>`` (a file on the AWG's disk),
  ``MMEMory:DELete``, ``MMEMory:OPEN "C:\\dir\\name.wfmx"`` (a .wfmx file: an XML header whose
  ``DataFile offset`` gives its length and ``NumberSamples`` the samples, then the floats,
  then, with ``MarkersIncluded``, one marker byte per sample) loads waveform ``name``;
- ``SOURce<n>:CASSet:WAVeform "name"``, ``SOURce<n>:CASSet?``, ``SOURce<n>:CASSet:CLEAR``,
  ``SOURce<n>:RMODe CONTinuous|TRIGgered``; ``AWGControl:RUN|STOP``, ``AWGControl:RSTATe?``
  (0 stopped, 1 waiting for trigger, 2 running), ``TRIGger:IMMediate ATRigger|BTRigger``;
  ``CLOCk:SRATe`` (1.49 kS/s .. 2.5 GS/s), ``CLOCk:SOURce``;
- any other setting of ``SOURce<n>``, ``OUTPut[<n>]``, ``INSTrument``, ``FGEN``, ``CLOCk``
  is kept and read back (amplitudes, marker levels, output states...).

Headers are case-insensitive, short or long form, ``;`` separates units each taken from
the root. A refused command adds an entry to the error queue (-113 undefined header, -109
missing parameter, -222 data out of range, -224 illegal parameter value, -200 execution
error) and answers nothing.

What plays (labctl's transmitter convention, documented in drivers/tektronix/awg5208.py):
``AWGControl:RUN`` decodes the waveforms assigned to channels 1 and 2 into a PulsePattern
(one pulse = ``CLOCk:SRATe`` x the twin's period samples; channel 1's first sample of a
pulse is the intensity class, channel 2's basis and bit, channel 1's marker 1 the clock
marker), loads it into the twin, cycled in CONTinuous run mode or once in TRIGgered mode
(played on the next ``TRIGger:IMMediate``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.interfaces.pattern import PulsePattern
from labctl.interfaces.units import ps_to_seconds
from sims.wire.base import Fate, TcpEndpoint, attempt, ensure_link, log
from sims.wire.scpi_commands import NODE_RE, Vocabulary

IDENTITY = "TEKTRONIX,AWG5208,LCTWIN0003,FV:6.6.0087.0"
N_CHANNELS = 8
MAX_SAMPLES = 2_000_000_000  # 2 GSa per channel (standard memory)
SRATE_RANGE = (1.49e3, 2.5e9)
MAX_CLASSES = 8

VOCABULARY = Vocabulary(
    [
        *("SYSTem", "ERRor", "NEXT", "CODE", "WLISt", "WAVeform", "NEW", "DATA", "MARKer"),
        *("DELete", "LENGth", "LIST", "SIZE", "MMEMory", "CDIRectory", "OPEN", "SOURce"),
        *("CASSet", "CLEAR", "RMODe", "AWGControl", "RUN", "STOP", "RSTate", "TRIGger"),
        *("IMMediate", "CLOCk", "SRATe", "VOLTage", "LEVel", "AMPLitude", "OFFSet", "HIGH"),
        *("LOW", "OUTPut", "STATe", "OFF", "WVALue", "SVALue", "DAC", "RESolution"),
        *("INSTrument", "MODE", "FGEN", "CHANnel", "FREQuency", "PATH", "TYPE", "PHASe"),
        *("ECLock", "JUMP", "FORCe", "DCLevel", "ANALog", "SYMMetry", "PERiod", "SASSet"),
        *("SEQuence", "SLISt", "NAME", "TINPut", "ATRigger", "BTRigger"),
    ]
)
_DROP = {"LEVEL", "IMMEDIATE"}  # optional nodes: one setting with or without them
_WFMX_OFFSET = re.compile(rb'<DataFile offset="(\d+)"')
_WFMX_SAMPLES = re.compile(rb"<NumberSamples>(\d+)</NumberSamples>")
_WFMX_MARKERS = re.compile(rb"<MarkersIncluded>(true|false)</MarkersIncluded>")


class Refused(Exception):
    """A command the AWG refuses: ``code`` and text go to the error queue."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code},{text}")
        self.code = code
        self.text = text


@dataclass
class Waveform:
    """One entry of the waveform list."""

    samples: npt.NDArray[np.float32]
    markers: npt.NDArray[np.uint8]


@dataclass
class AwgState:
    """Everything the AWG holds besides the waveform list."""

    srate_hz: float = 2.5e9
    assigned: dict[int, str] = field(default_factory=dict)
    run_mode: dict[int, str] = field(default_factory=dict)
    run_state: int = 0
    kept: dict[str, str] = field(default_factory=dict)
    directory: str = "\\Users\\OEM\\Documents"


def take_program(buffer: bytearray) -> bytes | None:
    """Pop one LF-terminated program message, skipping over quoted strings and definite
    length blocks (``#<digits><length><bytes>``, whose bytes may hold LF; a message may
    also end with its block); None until whole."""
    index, quoted = 0, False
    while index < len(buffer):
        byte = buffer[index]
        if byte == 0x22:
            quoted = not quoted
        elif byte == 0x23 and not quoted:  # '#'
            if index + 1 >= len(buffer):
                return None
            digits = buffer[index + 1] - 0x30
            if not 1 <= digits <= 9:
                index += 1
                continue
            if index + 2 + digits > len(buffer):
                return None
            length = int(buffer[index + 2 : index + 2 + digits])
            index += 2 + digits + length
            if index > len(buffer):
                return None
            if index == len(buffer) or buffer[index] not in b"\r\n;,":
                # A block may end the message without LF (IEEE 488.2 END on the block's
                # last byte: what a VISA write_raw of a file sends).
                message = bytes(buffer[:index])
                del buffer[:index]
                return message
            continue
        elif byte == 0x0A and not quoted:
            message = bytes(buffer[:index])
            del buffer[: index + 1]
            return message.rstrip(b"\r")
        index += 1
    return None


def split_top(text: bytes, separator: int) -> list[bytes]:
    """Split at ``separator`` outside quotes and blocks."""
    parts: list[bytes] = []
    start, index, quoted = 0, 0, False
    while index < len(text):
        byte = text[index]
        if byte == 0x22:
            quoted = not quoted
        elif byte == 0x23 and not quoted and index + 1 < len(text):
            digits = text[index + 1] - 0x30
            if 1 <= digits <= 9:
                length = int(text[index + 2 : index + 2 + digits] or b"0")
                index += 2 + digits + length
                continue
        elif byte == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def block(argument: bytes) -> bytes:
    """The bytes of a definite-length block argument; Refused when it is not one."""
    argument = argument.strip()
    if len(argument) < 2 or argument[:1] != b"#" or not 0x31 <= argument[1] <= 0x39:
        raise Refused(-224, '"Illegal parameter value; expected a definite length block"')
    digits = argument[1] - 0x30
    length = int(argument[2 : 2 + digits])
    data = argument[2 + digits :]
    if len(data) != length:
        raise Refused(-224, '"Illegal parameter value; block length"')
    return data


def text_argument(argument: bytes) -> str:
    """A quoted (or bare) string argument."""
    return argument.strip().decode("ascii", "replace").strip('"')


def int_argument(argument: bytes) -> int:
    try:
        return int(float(argument.strip()))
    except ValueError:
        raise Refused(-224, '"Illegal parameter value"') from None


class Awg5208Wire:
    """Serves a Transmitter twin as a Tektronix AWG5208 (SCPI on one TCP port)."""

    def __init__(self, name: str, twin: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.twin = twin
        self._endpoint = TcpEndpoint(host, port, self._connection)
        self.waveforms: dict[str, Waveform] = {}
        self.files: dict[str, bytes] = {}
        self.state = AwgState()
        self.errors: list[tuple[int, str]] = []

    async def start(self) -> None:
        """Listen for SCPI clients."""
        await self._endpoint.start()

    async def stop(self) -> None:
        """Close the port and every connection."""
        await self._endpoint.stop()

    def endpoints(self) -> dict[str, str]:
        """``control``: host:port of the SCPI socket."""
        return {"control": self._endpoint.address}

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return
            buffer += data
            while (message := take_program(buffer)) is not None:
                reply = await self._message(message)
                if reply is None:  # the link dropped
                    return
                if reply:
                    writer.write(reply)
                    await writer.drain()

    async def _message(self, message: bytes) -> bytes | None:
        """Reply bytes for one program message (b"" = nothing), None to drop the link."""
        answers: list[str] = []
        if not await ensure_link(self.twin):
            return None
        for unit in split_top(message, 0x3B):
            unit = unit.strip()
            if not unit:
                continue
            header, _, arguments = unit.partition(b" ")
            try:
                answer = await self._unit(header.decode("ascii", "replace"), arguments)
            except Refused as refused:
                self._push(refused.code, refused.text)
                break
            except _Dropped:
                return None
            if answer is not None:
                answers.append(answer)
        return ("\n".join(answers) + "\n").encode("ascii") if answers else b""

    def _push(self, code: int, text: str) -> None:
        self.errors.append((code, text))
        log.debug("%s: error %d %s", self.name, code, text)

    @staticmethod
    def _path(header: str) -> tuple[str, list[int]]:
        """Canonical long-form path (numeric suffixes removed) and the suffixes."""
        nodes, suffixes = [], []
        for token in header.strip().lstrip(":").rstrip("?").split(":"):
            if token.startswith("*"):
                return token.upper(), []
            match = NODE_RE.fullmatch(token)
            canonical = VOCABULARY.canonical(match.group(1)) if match else None
            if canonical is None:
                raise Refused(-113, '"Undefined header"')
            if canonical in _DROP:
                continue
            nodes.append(canonical)
            suffixes.append(int(match.group(2)) if match and match.group(2) else 1)
        if nodes[-2:] == ["VOLTAGE", "AMPLITUDE"]:  # the optional default node
            nodes, suffixes = nodes[:-1], suffixes[:-1]
        return ":".join(nodes), suffixes

    async def _unit(self, header: str, arguments: bytes) -> str | None:
        query = header.rstrip().endswith("?")
        path, suffix = self._path(header)
        args = [a for a in split_top(arguments, 0x2C)] if arguments.strip() else []
        handler = _HANDLERS.get((path, query))
        if handler is not None:
            answer: str | None = await handler(self, suffix, args)
            return answer
        generic = path.split(":")[0] in ("SOURCE", "OUTPUT", "INSTRUMENT", "FGEN", "CLOCK")
        if not generic:
            raise Refused(-113, '"Undefined header"')
        key = ":".join(f"{n}{s}" for n, s in zip(path.split(":"), suffix, strict=True))
        if query:
            return self.state.kept.get(key, "0")
        if not args:
            raise Refused(-109, '"Missing parameter"')
        self.state.kept[key] = b",".join(args).decode("ascii", "replace").strip()
        return None

    # -- commands -----------------------------------------------------------------------

    async def _idn(self, _: list[int], __: list[bytes]) -> str:
        return IDENTITY

    async def _opc(self, _: list[int], __: list[bytes]) -> str:
        return "1"

    async def _nothing(self, _: list[int], __: list[bytes]) -> None:
        return None

    async def _rst(self, _: list[int], __: list[bytes]) -> None:
        await self._twin("stop", self.twin.stop())
        self.state = AwgState()

    async def _cls(self, _: list[int], __: list[bytes]) -> None:
        self.errors.clear()

    async def _esr(self, _: list[int], __: list[bytes]) -> str:
        return "0"

    async def _error(self, _: list[int], __: list[bytes]) -> str:
        if not self.errors:
            return '0,"No error"'
        code, text = self.errors.pop(0)
        return f"{code},{text}"

    async def _error_code(self, _: list[int], __: list[bytes]) -> str:
        return str(self.errors.pop(0)[0]) if self.errors else "0"

    async def _wave_new(self, _: list[int], args: list[bytes]) -> None:
        if len(args) != 2:
            raise Refused(-109, '"Missing parameter"')
        name, size = text_argument(args[0]), int_argument(args[1])
        if not 1 <= size <= MAX_SAMPLES:
            raise Refused(-222, '"Data out of range; waveform size"')
        self.waveforms[name] = Waveform(np.zeros(size, np.float32), np.zeros(size, np.uint8))

    def _slice(self, args: list[bytes], width: int) -> tuple[Waveform, int, bytes]:
        if len(args) != 4:
            raise Refused(-109, '"Missing parameter"')
        name = text_argument(args[0])
        wave = self.waveforms.get(name)
        if wave is None:
            raise Refused(-224, f'"Illegal parameter value; no waveform {name}"')
        start, size, data = int_argument(args[1]), int_argument(args[2]), block(args[3])
        if len(data) != size * width or start < 0 or start + size > wave.samples.size:
            raise Refused(-222, '"Data out of range; block size or position"')
        return wave, start, data

    async def _wave_data(self, _: list[int], args: list[bytes]) -> None:
        wave, start, data = self._slice(args, 4)
        values = np.frombuffer(data, dtype="<f4")
        if values.size and (float(values.max()) > 1.0 or float(values.min()) < -1.0):
            raise Refused(-222, '"Data out of range; samples outside -1..1"')
        wave.samples[start : start + values.size] = values

    async def _marker_data(self, _: list[int], args: list[bytes]) -> None:
        wave, start, data = self._slice(args, 1)
        wave.markers[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)

    async def _wave_delete(self, _: list[int], args: list[bytes]) -> None:
        name = text_argument(args[0]) if args else ""
        if name.upper() == "ALL":
            self.waveforms.clear()
        elif self.waveforms.pop(name, None) is None:
            raise Refused(-224, f'"Illegal parameter value; no waveform {name}"')

    async def _wave_length(self, _: list[int], args: list[bytes]) -> str:
        wave = self.waveforms.get(text_argument(args[0]) if args else "")
        if wave is None:
            raise Refused(-224, '"Illegal parameter value; no such waveform"')
        return str(wave.samples.size)

    async def _wave_list(self, _: list[int], __: list[bytes]) -> str:
        return ",".join(f'"{name}"' for name in self.waveforms) or '""'

    async def _wave_size(self, _: list[int], __: list[bytes]) -> str:
        return str(len(self.waveforms))

    async def _cdir(self, _: list[int], args: list[bytes]) -> None:
        self.state.directory = text_argument(args[0]) if args else "\\"

    async def _cdir_query(self, _: list[int], __: list[bytes]) -> str:
        return f'"{self.state.directory}"'

    async def _file_data(self, _: list[int], args: list[bytes]) -> None:
        if len(args) != 2:
            raise Refused(-109, '"Missing parameter"')
        self.files[text_argument(args[0])] = block(args[1])

    async def _file_delete(self, _: list[int], args: list[bytes]) -> None:
        if self.files.pop(text_argument(args[0]) if args else "", None) is None:
            raise Refused(-256, '"File name not found"')

    async def _file_open(self, _: list[int], args: list[bytes]) -> None:
        path = text_argument(args[0]) if args else ""
        filename = path.replace("/", "\\").rsplit("\\", 1)[-1]
        data = self.files.get(filename)
        if data is None:
            raise Refused(-256, '"File name not found"')
        offset, samples = _WFMX_OFFSET.search(data), _WFMX_SAMPLES.search(data)
        markers = _WFMX_MARKERS.search(data)
        if offset is None or samples is None:
            raise Refused(-200, '"Execution error; not a wfmx file"')
        start, n = int(offset.group(1)), int(samples.group(1))
        values = np.frombuffer(data, dtype="<f4", count=n, offset=start).copy()
        marks = np.zeros(n, np.uint8)
        if markers is not None and markers.group(1) == b"true":
            marks = np.frombuffer(data, dtype=np.uint8, count=n, offset=start + 4 * n).copy()
        self.waveforms[filename.rsplit(".", 1)[0]] = Waveform(values, marks)

    async def _assign(self, suffix: list[int], args: list[bytes]) -> None:
        channel, name = self._channel(suffix), text_argument(args[0]) if args else ""
        if name not in self.waveforms:
            raise Refused(-224, f'"Illegal parameter value; no waveform {name}"')
        self.state.assigned[channel] = name

    async def _assigned(self, suffix: list[int], __: list[bytes]) -> str:
        return f'"{self.state.assigned.get(self._channel(suffix), "")}"'

    async def _unassign(self, suffix: list[int], __: list[bytes]) -> None:
        self.state.assigned.pop(self._channel(suffix), None)

    async def _run_mode(self, suffix: list[int], args: list[bytes]) -> None:
        mode = text_argument(args[0]).upper() if args else ""
        if mode in ("CONT", "CONTINUOUS"):
            self.state.run_mode[self._channel(suffix)] = "CONT"
        elif mode in ("TRIG", "TRIGGERED"):
            self.state.run_mode[self._channel(suffix)] = "TRIG"
        else:
            raise Refused(-224, '"Illegal parameter value; run mode"')

    async def _run_mode_query(self, suffix: list[int], __: list[bytes]) -> str:
        return self.state.run_mode.get(self._channel(suffix), "CONT")

    async def _srate(self, _: list[int], args: list[bytes]) -> None:
        try:
            rate = float(args[0]) if args else float("nan")
        except ValueError:
            raise Refused(-224, '"Illegal parameter value"') from None
        if not SRATE_RANGE[0] <= rate <= SRATE_RANGE[1]:
            raise Refused(-222, '"Data out of range; sample rate"')
        self.state.srate_hz = rate

    async def _srate_query(self, _: list[int], __: list[bytes]) -> str:
        return f"{self.state.srate_hz:.10E}"

    async def _clock_source(self, _: list[int], __: list[bytes]) -> str:
        return self.state.kept.get("CLOCK1:SOURCE1", "INT")

    async def _run(self, _: list[int], __: list[bytes]) -> None:
        period_ps = int(await self._twin("get_period_ps", self.twin.get_period_ps()))
        pattern, divider = self._decode(period_ps)
        if divider is not None:
            await self._twin("set_marker_divider", self.twin.set_marker_divider(divider))
        once = self.state.run_mode.get(1, "CONT") == "TRIG"
        await self._twin("load_pattern", self.twin.load_pattern(pattern, repeat=not once))
        if once:
            self.state.run_state = 1
        else:
            await self._twin("start", self.twin.start())
            self.state.run_state = 2

    async def _halt(self, _: list[int], __: list[bytes]) -> None:
        await self._twin("stop", self.twin.stop())
        self.state.run_state = 0

    async def _trigger(self, _: list[int], __: list[bytes]) -> None:
        if self.state.run_state == 1:
            await self._twin("start", self.twin.start())
            self.state.run_state = 2

    async def _run_state(self, _: list[int], __: list[bytes]) -> str:
        if self.state.run_state == 2:
            running = await self._twin("is_running", self.twin.is_running())
            if not running:
                self.state.run_state = 0
        return str(self.state.run_state)

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _channel(suffix: list[int]) -> int:
        channel = suffix[0] if suffix else 1
        if not 1 <= channel <= N_CHANNELS:
            raise Refused(-113, '"Undefined header; channel suffix"')
        return channel

    async def _twin(self, command: str, call: Any) -> Any:
        outcome = await attempt(call)
        if outcome.fate is Fate.OK:
            return outcome.value
        if outcome.fate is Fate.LOST:
            raise _Dropped
        raise Refused(
            -200, f'"Execution error; {command}: {outcome.message or outcome.fate.value}"'
        )

    def _decode(self, period_ps: int) -> tuple[PulsePattern, int | None]:
        """Channel 1 and 2 waveforms as the pulses they prepare (the labctl convention) and
        the clock marker's divider (None with fewer than two clock markers)."""
        names = [self.state.assigned.get(ch) for ch in (1, 2)]
        if None in names:
            raise Refused(-200, '"Execution error; channels 1 and 2 need waveforms"')
        first, second = (self.waveforms[str(n)] for n in names)
        if first.samples.size != second.samples.size:
            raise Refused(-200, '"Execution error; channel 1 and 2 waveforms differ in length"')
        per_pulse = self.state.srate_hz * ps_to_seconds(period_ps)
        spp = round(per_pulse)
        if spp < 1 or abs(per_pulse - spp) > 1e-6 or first.samples.size % spp:
            raise Refused(
                -200,
                f'"Execution error; {self.state.srate_hz:g} Sa/s does not give whole pulses of '
                f'{period_ps} ps in {first.samples.size} samples"',
            )
        level = first.samples[::spp].astype(np.float64)
        intensity = np.rint((1.0 - level) * 4.0)
        state = np.rint((second.samples[::spp].astype(np.float64) + 0.75) * 2.0)
        if np.any((intensity < 0) | (intensity >= MAX_CLASSES)) or np.any(
            (state < 0) | (state > 3)
        ):
            raise Refused(-200, '"Execution error; levels outside the transmitter convention"')
        code = state.astype(np.uint8)
        clocks = np.flatnonzero(first.markers[::spp] & 1)
        divider = int(clocks[1] - clocks[0]) if clocks.size >= 2 else None
        basis, bit = (code >> 1).astype(np.uint8), (code & 1).astype(np.uint8)
        return PulsePattern(intensity.astype(np.uint8), basis, bit), divider


class _Dropped(Exception):
    """The twin's link dropped: the AWG closes the connection."""


_H = Awg5208Wire
_HANDLERS: dict[tuple[str, bool], Any] = {
    ("*IDN", True): _H._idn,
    ("*OPC", True): _H._opc,
    ("*OPC", False): _H._nothing,
    ("*WAI", False): _H._nothing,
    ("*RST", False): _H._rst,
    ("*CLS", False): _H._cls,
    ("*ESR", True): _H._esr,
    ("SYSTEM:ERROR", True): _H._error,
    ("SYSTEM:ERROR:NEXT", True): _H._error,
    ("SYSTEM:ERROR:CODE", True): _H._error_code,
    ("WLIST:WAVEFORM:NEW", False): _H._wave_new,
    ("WLIST:WAVEFORM:DATA", False): _H._wave_data,
    ("WLIST:WAVEFORM:MARKER:DATA", False): _H._marker_data,
    ("WLIST:WAVEFORM:DELETE", False): _H._wave_delete,
    ("WLIST:WAVEFORM:LENGTH", True): _H._wave_length,
    ("WLIST:LIST", True): _H._wave_list,
    ("WLIST:SIZE", True): _H._wave_size,
    ("MMEMORY:CDIRECTORY", False): _H._cdir,
    ("MMEMORY:CDIRECTORY", True): _H._cdir_query,
    ("MMEMORY:DATA", False): _H._file_data,
    ("MMEMORY:DELETE", False): _H._file_delete,
    ("MMEMORY:OPEN", False): _H._file_open,
    ("SOURCE:CASSET:WAVEFORM", False): _H._assign,
    ("SOURCE:CASSET", True): _H._assigned,
    ("SOURCE:CASSET:CLEAR", False): _H._unassign,
    ("SOURCE:RMODE", False): _H._run_mode,
    ("SOURCE:RMODE", True): _H._run_mode_query,
    ("CLOCK:SRATE", False): _H._srate,
    ("CLOCK:SRATE", True): _H._srate_query,
    ("CLOCK:SOURCE", True): _H._clock_source,
    ("AWGCONTROL:RUN", False): _H._run,
    ("AWGCONTROL:STOP", False): _H._halt,
    ("AWGCONTROL:RSTATE", True): _H._run_state,
    ("TRIGGER", False): _H._trigger,
}

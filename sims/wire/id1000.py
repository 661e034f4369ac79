"""A time-tagger twin behind the ID Quantique ID1000 / ID900 SCPI-over-ZMQ protocol.

Control: a ZMQ ROUTER socket (wire-compatible with the controller's REP for REQ clients;
ROUTER lets a faulted request go unanswered without wedging the socket). One request =
one SCPI program message without terminator, answered by one message: the query answers
joined by newlines (empty for settings), or the error code of the first refused command.

Command set (from the Time Controller user manual's SCPI rules and IDQ's published Python
examples; syntax in ``sims.wire.scpi_commands``: long/short forms, any case, ``;`` compounds):

- common: ``*IDN? *RST *CLS *OPC *OPC? *WAI *TST? *ESR? *STB? *ESE[?] *SRE[?]``
- ``DEVIce:RESolution[?] HIRES|LOWRes``, ``DEVIce:RESolution:BWIDth?`` (plain integer,
  ps: IDQ's examples ``int()`` it), ``DEVIce:SYNC[?]``, ``DEVIce:CONFiguration:LOAD``,
  ``DEVIce:SAMPling:RECAlibrate``
- ``INPUt<n>:`` / ``STARt:`` ``ENABle[?] [ON|OFF]`` (no value = ON), ``THREshold[?]``
  (V, ``mV`` accepted), ``COUPling[?] AC|DC``, ``EDGE[?] RISing|FALLing``, ``SELEct[?]``,
  ``RESYncpolicy[?] AUTO|MANUal`` (inputs), ``DELAy[?]`` (start), ``COUNter?`` (events in
  the last integration window in CYCLe mode, since ``RESEt`` in ACCUmulate mode),
  ``COUNter:MODE[?]``, ``COUNter:INTEgrationtime[?]`` (ms), ``COUNter:RESEt``,
  ``HIRES:ERRor?``, ``HIRES:ERRor:CLEar``
- ``DELAy<n>:VALUe[?]`` (ps, ``TB`` units with k/M/G/T prefixes), ``DELAy<n>[:INPOrt]:LINK[?]``:
  an input's delay is the value of the lowest-numbered delay block linked to it (at power-up
  ``DELAy<n>`` links ``INPUt<n>``)
- ``RECord:ENABle|PLAY|STOP|NUMber (n|INF)|DURation|PWIDth|PPERiod|STAGe?|TRIGger:ARM:MODE``;
  ``STAGe?`` answers ``PLAYING`` while a record runs (wall time: NUMber x PPERiod, the last
  one PWIDth long; INF runs until ``STOP``), else ``STOPPED``
- ``RAW<n>:SEND[?] ON|OFF``, ``RAW<n>:ERRors?``, ``RAW<n>:ERRors:CLEar``, ``RAW<n>:REF:LINK``,
  ``RAW<n>:STOP:LINK``
- ``TSCO<n>``, ``HISTogram<n>``, ``GENerator<n>``, ``OUTPut<n>`` settings are accepted and
  read back, not simulated (a twin of the inputs has no combiners): their counters read 0,
  ``HIST<n>:DATA?`` a list of BCOUnt zeros.

Replies with text where the ID900 firmware gives it: ``COUNter:RESEt`` -> ``Counter value
set to 0 ``, ``HIST<n>:FLUSh`` -> ``Flushed Histogram!``, ``HIRES:ERRor:CLEar`` ->
``Cleared Highres errors``. Errors are the parser's code names (``SCPI_ERR_INVALID_CMD``,
``SCPI_ERR_PARAM_TYPE``, ``_PARAM_COUNT``, ``_PARAM_UNITS``, ``_INVALID_VALUE``,
``_NUM_SUF_INVALID``): public clients test for ``SCPI_ERR_`` in the reply or its ending,
so the code alone is the whole reply. Assumed power-up state: inputs enabled, records
INF, RECord enabled.

Stream: while a record plays, tags of every input whose ``RAW<n>:SEND`` is on and that is
enabled go out as frames (``sims.wire.tagframe``) on a PUSH socket (default: a slow reader
slows the simulation instead of losing tags) or a PUB socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import zmq
import zmq.asyncio

from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import ps_to_seconds
from sims.wire.base import GARBAGE, Fate, Outcome, attempt, ensure_link, log
from sims.wire.pacing import StreamPacer
from sims.wire.scpi_commands import (
    INVALID_CMD,
    INVALID_VALUE,
    NODE_RE,
    NUM_SUF_INVALID,
    PARAM_COUNT,
    Command,
    ScpiError,
    Vocabulary,
    boolean,
    choice,
    number,
    run_program,
)
from sims.wire.tagframe import FrameEncoder

IDENTITY = "ID Quantique,ID1000,LCTWIN0002,7.2"
READ_TIMEOUT_S = 1.0
N_DELAY_BLOCKS = 8
MAX_DELAY_PS = 1_000_000_000_000  # 1 s
MAX_RECORD_PS = 10**18  # about 11 days
StreamPattern = Literal["push", "pub"]

VOCABULARY = Vocabulary(
    [
        *("DEVIce", "RESolution", "BWIDth", "SYNC", "CONFiguration", "LOAD", "SAMPling"),
        *("RECAlibrate", "STATe", "STARt", "INPUt", "ENABle", "THREshold", "COUPling", "EDGE"),
        *("SELEct", "RESYncpolicy", "DELAy", "COUNter", "MODE", "INTEgrationtime", "RESEt"),
        *("HIRES", "ERRors", "CLEar", "VALUe", "LINK", "INPOrt", "RECord", "PLAY", "STOP"),
        *("NUMber", "DURation", "PWIDth", "PPERiod", "STAGe", "TRIGger", "ARM", "RAW", "SEND"),
        *("REF", "TSCO", "FIRst", "SECond", "OPIN", "OPOUt", "WINDow", "BEGIn", "END"),
        *("HISTogram", "BCOUnt", "MINimum", "FLUSh", "DATA", "GENerator", "PNUMber"),
        *("OUTPut", "TSGE"),
    ]
)
FREE_BLOCKS = ("TSCO", "HISTOGRAM", "GENERATOR", "OUTPUT", "TSGE")
LINKABLE = ("NONE", "STARt", "INPUt", "DELAy", "TSCO", "GENerator", "HISTogram", "TSGE")
LINK_VOCABULARY = Vocabulary(LINKABLE)


@dataclass
class InputState:
    """One input (or the start input) as the controller holds it."""

    enabled: bool = True
    threshold_v: float = 0.0
    coupling: str = "DC"
    edge: str = "RISING"
    select: str = "UNSHAPED"
    resync: str = "AUTO"
    delay_ps: int = 0  # the start input's own delay
    counter_mode: str = "CYCLE"
    integration_ms: int = 1000
    reset_at_s: float = field(default_factory=time.monotonic)


@dataclass
class RecordState:
    """The RECord generator: enabled, playing, how many records of what length."""

    enabled: bool = True
    playing: bool = False
    number: int | None = None  # None: INF
    pwid_ps: int = 1_000_000_000_000
    pper_ps: int = 1_000_000_000_000
    arm_mode: str = "MANUAL"
    started_s: float = 0.0

    def running(self) -> bool:
        """True while a started record series has not run out (wall time); a series that
        has run out is over (a later ``NUM INF`` does not restart it)."""
        if self.playing and self.number is not None:
            period_s = ps_to_seconds(max(self.pper_ps, self.pwid_ps))
            total_s = (self.number - 1) * period_s + ps_to_seconds(self.pwid_ps)
            self.playing = time.monotonic() - self.started_s < total_s
        return self.playing


class _TwinFault(Exception):
    """The twin failed in a way the wire shows without an error reply (silence, garbage)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.fate.value)
        self.outcome = outcome


class Id1000Wire:
    """Serves a TimeTagger twin as an ID1000 (control ROUTER + tag PUSH/PUB)."""

    def __init__(
        self,
        name: str,
        twin: Any,
        *,
        host: str = "127.0.0.1",
        control_port: int = 0,
        stream_port: int = 0,
        stream_pattern: StreamPattern = "push",
        counter_window_s: float = 1e-3,
    ) -> None:
        if stream_pattern not in ("push", "pub"):
            raise ValueError(f"stream_pattern must be 'push' or 'pub', got {stream_pattern!r}")
        self.name = name
        self.twin = twin
        self._host = host
        self._ports = (control_port, stream_port)
        self._pattern = stream_pattern
        self._counter_window_s = counter_window_s
        self._context = zmq.asyncio.Context.instance()
        self._control: zmq.asyncio.Socket | None = None
        self._stream: zmq.asyncio.Socket | None = None
        self._addresses = {"control": "", "stream": ""}
        self._serve_task: asyncio.Task[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._n = int(twin.n_channels)
        self.encoder = FrameEncoder()
        self._reset_state()

    def _reset_state(self) -> None:
        """Power-up settings (also what ``*RST`` restores)."""
        self.inputs = [InputState() for _ in range(self._n)]
        self.start_input = InputState()
        self.delay_ps = [0] * N_DELAY_BLOCKS
        self.delay_link: list[str] = [
            f"INPUT{k + 1}" if k < self._n else "NONE" for k in range(N_DELAY_BLOCKS)
        ]
        self.record = RecordState()
        self.raw_send = [False] * self._n
        self.raw_links: dict[tuple[int, str], str] = {}
        self.free: dict[str, str] = {}
        self.device = {"RESOLUTION": "HIRES", "SYNC": "INTERNAL", "CONFIGURATION": "INIT"}
        self.status = {"*ESE": 0, "*SRE": 0}

    async def start(self) -> None:
        """Bind both sockets and start answering."""
        self._control = self._bind(zmq.ROUTER, self._ports[0], "control")
        kind = zmq.PUSH if self._pattern == "push" else zmq.PUB
        self._stream = self._bind(kind, self._ports[1], "stream")
        self._stream.setsockopt(zmq.SNDHWM, 4)  # little queued: sim time follows the reader
        self._serve_task = asyncio.get_running_loop().create_task(self._serve())

    def _bind(self, kind: int, port: int, role: str) -> zmq.asyncio.Socket:
        sock = self._context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if port:
            sock.bind(f"tcp://{self._host}:{port}")
        else:
            port = sock.bind_to_random_port(f"tcp://{self._host}")
        self._addresses[role] = f"tcp://{self._host}:{port}"
        return sock

    async def stop(self) -> None:
        """Stop streaming and answering; close both sockets."""
        for task in (self._pump_task, self._serve_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pump_task = self._serve_task = None
        for sock in (self._control, self._stream):
            if sock is not None:
                sock.close(linger=0)
        self._control = self._stream = None

    def endpoints(self) -> dict[str, str]:
        """``control`` (REQ connects here) and ``stream`` (SUB/PULL connects here)."""
        return dict(self._addresses)

    @property
    def streaming(self) -> bool:
        """True while frames are being pumped."""
        return self._pump_task is not None and not self._pump_task.done()

    # -- control ------------------------------------------------------------------------

    async def _serve(self) -> None:
        assert self._control is not None
        while True:
            frames = await self._control.recv_multipart()
            if len(frames) < 3:
                continue  # not a REQ envelope: nothing to answer to
            envelope, body = frames[:-1], frames[-1]
            try:
                reply = await self._answer(body)
            except Exception:  # a bug in one reply must not stop the controller
                log.exception("%s: request %r failed", self.name, body[:80])
                reply = b"SCPI_ERR_INVALID_VALUE"
            if reply is not None:
                await self._control.send_multipart([*envelope, reply])

    async def _answer(self, body: bytes) -> bytes | None:
        if not await ensure_link(self.twin):
            return None  # unreachable: the REQ side times out, as with a pulled cable
        line = body.decode("ascii", errors="replace")
        try:
            text = await run_program(line, VOCABULARY, self._execute)
            await self._sync_stream()
        except _TwinFault as fault:
            return GARBAGE if fault.outcome.fate is Fate.GARBLED else None
        return text.encode("ascii", errors="replace")

    async def _call(self, call: Awaitable[Any]) -> Any:
        """A twin call's value; a refusal is the device's value error, other faults raise."""
        outcome = await attempt(call)
        if outcome.fate is Fate.OK:
            return outcome.value
        if outcome.fate is Fate.REFUSED:
            raise ScpiError(INVALID_VALUE, outcome.message)
        raise _TwinFault(outcome)

    async def _execute(self, command: Command) -> str | None:
        head = command.nodes[0]
        if head.startswith("*"):
            return await self._common(command)
        handler = self._handlers().get(head)
        if handler is None:
            raise ScpiError(INVALID_CMD, f"no {head} block")
        return await handler(command)

    def _handlers(self) -> dict[str, Callable[[Command], Awaitable[str | None]]]:
        free: dict[str, Callable[[Command], Awaitable[str | None]]] = {
            block: self._free_block for block in FREE_BLOCKS
        }
        return {
            "DEVICE": self._device,
            "INPUT": self._input,
            "START": self._input,
            "DELAY": self._delay_block,
            "RECORD": self._record,
            "RAW": self._raw,
            **free,
        }

    # -- common commands ----------------------------------------------------------------

    async def _common(self, command: Command) -> str | None:
        name, query = command.nodes[0], command.query
        if name == "*IDN" and query:
            return IDENTITY
        if name == "*RST" and not query:
            self._reset_state()
            for channel in range(self._n):
                await self._call(self.twin.set_channel_delay_ps(channel, 0))
            return ""
        if name in ("*CLS", "*OPC", "*WAI") and not query:
            return ""
        if name == "*OPC" and query:
            return "1"
        if name in ("*TST", "*ESR", "*STB") and query:
            return "0"
        if name in ("*ESE", "*SRE"):
            if query:
                return str(self.status[name])
            value = number(_one(command), "")
            if value != int(value) or not 0 <= value <= 255:
                raise ScpiError(INVALID_VALUE, f"{name} takes 0..255")
            self.status[name] = int(value)
            return ""
        raise ScpiError(INVALID_CMD, f"unknown common command {name}{'?' * query}")

    # -- DEVIce -------------------------------------------------------------------------

    async def _device(self, command: Command) -> str | None:
        rest, query = command.nodes[1:], command.query
        if rest == ("RESOLUTION", "BWIDTH") and query:
            return str(int(self.twin.resolution_ps))
        if rest == ("RESOLUTION",):
            return self._setting(command, "RESOLUTION", ("HIRES", "LOWRes"))
        if rest == ("SYNC",):
            return self._setting(command, "SYNC", ("INTernal", "EXTernal"))
        if rest == ("CONFIGURATION", "LOAD") and not query:
            word = _one(command).upper()
            if word not in ("INIT", "HISTO", "COUNT", "BLANK"):
                raise ScpiError(INVALID_VALUE, f"no configuration {word!r}")
            self.device["CONFIGURATION"] = word
            return ""
        if rest == ("SAMPLING", "RECALIBRATE") and not query:
            return ""
        raise ScpiError(INVALID_CMD, ":".join(command.nodes))

    def _setting(self, command: Command, key: str, options: tuple[str, ...]) -> str:
        if command.query:
            return self.device[key]
        self.device[key] = choice(_one(command), *options)
        return ""

    # -- INPUt<n> / STARt ---------------------------------------------------------------

    async def _input(self, command: Command) -> str | None:
        is_start = command.nodes[0] == "START"
        if is_start:
            state, channel = self.start_input, None
        else:
            index = command.suffix(0)
            if not 1 <= index <= self._n:
                raise ScpiError(NUM_SUF_INVALID, f"no INPUt{index}")
            state, channel = self.inputs[index - 1], index - 1
        rest, query = command.nodes[1:], command.query
        if rest == ("ENABLE",):
            if query:
                return _on_off(state.enabled)
            state.enabled = boolean(_optional(command), default=True)
            return ""
        if rest == ("THRESHOLD",):
            if query:
                return f"{state.threshold_v:g}V"
            state.threshold_v = number(_one(command), "V", sub_units=True)
            return ""
        enums = {
            ("COUPLING",): ("coupling", ("AC", "DC")),
            ("EDGE",): ("edge", ("RISing", "FALLing")),
            ("SELECT",): ("select", ("UNSHaped", "SHAPed", "OUTPut", "LOOP")),
            ("COUNTER", "MODE"): ("counter_mode", ("CYCLe", "ACCUmulate")),
        }
        if not is_start:
            enums[("RESYNCPOLICY",)] = ("resync", ("AUTO", "MANUal"))
        if rest in enums:
            attr, options = enums[rest]
            if query:
                return str(getattr(state, attr))
            setattr(state, attr, choice(_one(command), *options))
            return ""
        if rest == ("DELAY",) and is_start:
            if query:
                return f"{state.delay_ps}TB"
            state.delay_ps = _delay(_one(command))
            return ""
        if rest == ("COUNTER", "INTEGRATIONTIME"):
            if query:
                return str(state.integration_ms)
            value = number(_one(command), "")
            if value != int(value) or not 1 <= value <= 65_535:
                raise ScpiError(INVALID_VALUE, "integration time is 1..65535 ms")
            state.integration_ms = int(value)
            return ""
        if rest == ("COUNTER", "RESET") and not query:
            state.reset_at_s = time.monotonic()
            return "Counter value set to 0 "
        if rest == ("COUNTER",) and query:
            return str(await self._counter(state, channel))
        if rest == ("HIRES", "ERRORS") and query:
            return "0"
        if rest == ("HIRES", "ERRORS", "CLEAR") and not query:
            return "Cleared Highres errors"
        raise ScpiError(INVALID_CMD, ":".join(command.nodes))

    async def _counter(self, state: InputState, channel: int | None) -> int:
        """Events counted: the last integration window (CYCLe) or since RESEt (ACCUmulate)."""
        if channel is None or not state.enabled:
            return 0
        rates = await self._call(self.twin.get_count_rates_hz(self._counter_window_s))
        if state.counter_mode == "CYCLE":
            window_s = state.integration_ms / 1000.0
        else:
            window_s = time.monotonic() - state.reset_at_s
        return round(float(rates[channel]) * window_s)

    # -- DELAy<n> -----------------------------------------------------------------------

    async def _delay_block(self, command: Command) -> str | None:
        index = command.suffix(0)
        if not 1 <= index <= N_DELAY_BLOCKS:
            raise ScpiError(NUM_SUF_INVALID, f"no DELAy{index}")
        rest, query = command.nodes[1:], command.query
        if rest == ("VALUE",):
            if query:
                return f"{self.delay_ps[index - 1]}TB"
            self.delay_ps[index - 1] = _delay(_one(command))
        elif rest in (("LINK",), ("INPORT", "LINK")):
            if query:
                return _short_link(self.delay_link[index - 1])
            self.delay_link[index - 1] = _link(_one(command))
        else:
            raise ScpiError(INVALID_CMD, ":".join(command.nodes))
        await self._apply_delays()
        return ""

    async def _apply_delays(self) -> None:
        """Each input gets the value of the lowest-numbered delay block linked to it."""
        for channel in range(self._n):
            target = f"INPUT{channel + 1}"
            linked = [k for k, link in enumerate(self.delay_link) if link == target]
            delay = self.delay_ps[linked[0]] if linked else 0
            if int(await self._call(self.twin.get_channel_delay_ps(channel))) != delay:
                await self._call(self.twin.set_channel_delay_ps(channel, delay))

    # -- RECord -------------------------------------------------------------------------

    async def _record(self, command: Command) -> str | None:
        rec, rest, query = self.record, command.nodes[1:], command.query
        rec.running()  # a finished series is over before anything changes it
        if rest == ("PLAY",) and not query:
            if rec.enabled:
                rec.playing, rec.started_s = True, time.monotonic()
            return ""
        if rest == ("STOP",) and not query:
            rec.playing = False
            return ""
        if rest == ("STAGE",) and query:
            return "PLAYING" if rec.running() else "STOPPED"
        if rest == ("ENABLE",):
            if query:
                return _on_off(rec.enabled)
            rec.enabled = boolean(_optional(command), default=True)
            return ""
        if rest == ("NUMBER",):
            if query:
                return "INF" if rec.number is None else str(rec.number)
            word = _one(command)
            if word.upper().startswith("INF"):
                rec.number = None
            else:
                value = number(word, "")
                if value != int(value) or value < 0:
                    raise ScpiError(INVALID_VALUE, f"record number {word!r}")
                rec.number = int(value) or None  # 0 records: as many as it takes (INF)
            return ""
        if rest in (("DURATION",), ("PWIDTH",), ("PPERIOD",)):
            attr = "pper_ps" if rest == ("PPERIOD",) else "pwid_ps"
            if query:
                return f"{getattr(rec, attr)}TB"
            value = _time_ps(_one(command), MAX_RECORD_PS)
            if value <= 0:
                raise ScpiError(INVALID_VALUE, "a record lasts more than 0 TB")
            setattr(rec, attr, value)
            if rest == ("DURATION",):
                rec.pper_ps = max(rec.pper_ps, value)
            return ""
        if rest == ("TRIGGER", "ARM", "MODE"):
            if query:
                return rec.arm_mode
            rec.arm_mode = choice(_one(command), "MANUal", "AUTO")
            return ""
        raise ScpiError(INVALID_CMD, ":".join(command.nodes))

    # -- RAW<n> -------------------------------------------------------------------------

    async def _raw(self, command: Command) -> str | None:
        index = command.suffix(0)
        if not 1 <= index <= self._n:
            raise ScpiError(NUM_SUF_INVALID, f"no RAW{index}")
        rest, query = command.nodes[1:], command.query
        if rest == ("SEND",):
            if query:
                return _on_off(self.raw_send[index - 1])
            self.raw_send[index - 1] = boolean(_optional(command))
            return ""
        if rest == ("ERRORS",) and query:
            return "0"
        if rest == ("ERRORS", "CLEAR") and not query:
            return ""
        if rest in (("REF", "LINK"), ("STOP", "LINK")):
            key = (index, rest[0])
            if query:
                return _short_link(self.raw_links.get(key, "NONE"))
            self.raw_links[key] = _link(_one(command))
            return ""
        raise ScpiError(INVALID_CMD, ":".join(command.nodes))

    # -- blocks accepted but not simulated ----------------------------------------------

    async def _free_block(self, command: Command) -> str | None:
        key = ":".join(
            f"{node}{'' if suffix is None else suffix}"
            for node, suffix in zip(command.nodes, command.suffixes, strict=True)
        )
        last = command.nodes[-1]
        if command.query:
            if last == "DATA" and command.nodes[0] == "HISTOGRAM":
                head = key.rsplit(":", 1)[0]
                bins = int(float(self.free.get(f"{head}:BCOUNT", "1")))
                return "[" + ",".join(["0"] * bins) + "]"
            if last == "COUNTER":
                return "0"
            return self.free.get(key, "0")
        if last == "FLUSH":
            return "Flushed Histogram!"
        self.free[key] = ",".join(command.args)
        return ""

    # -- stream -------------------------------------------------------------------------

    def _streamed_channels(self) -> list[bool]:
        return [self.raw_send[ch] and self.inputs[ch].enabled for ch in range(self._n)]

    async def _sync_stream(self) -> None:
        """Pump exactly while a record runs and some input's raw timestamps are sent."""
        want = self.record.running() and any(self._streamed_channels())
        if want and not self.streaming:
            await self._call(self.twin.start_stream())
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        elif not want and self._pump_task is not None:
            task, self._pump_task = self._pump_task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._call(self.twin.stop_stream())

    async def _pump(self) -> None:
        sock = self._stream
        assert sock is not None
        pacer = StreamPacer()
        while self.record.running():
            outcome = await attempt(self.twin.read_batch(READ_TIMEOUT_S))
            if outcome.fate is Fate.LOST:
                log.info("%s: twin link lost, tag stream stops", self.name)
                return
            if outcome.fate is Fate.GARBLED:
                await sock.send(GARBAGE)
                continue
            if outcome.fate is not Fate.OK:
                pacer.flush()  # what was gathered before it is lost with it
                self.encoder.skip()  # a window the device could not deliver: a seq gap
                continue
            batch: TagBatch = outcome.value
            gathered = pacer.add(_only(batch, self._streamed_channels()))
            if gathered is not None:
                for frame in self.encoder.encode(gathered):
                    await sock.send(frame, copy=False)
            await pacer.pace(batch.stop_ps)
            # A send that did not block returns at once: let control requests in.
            await asyncio.sleep(0)
        self.record.playing = False
        with contextlib.suppress(Exception):
            await self.twin.stop_stream()


def _only(batch: TagBatch, streamed: list[bool]) -> TagBatch:
    """The batch with only the tags of streamed channels."""
    if all(streamed):
        return batch
    keep = np.asarray(streamed, dtype=bool)[batch.channel]
    return dataclasses.replace(batch, channel=batch.channel[keep], time_ps=batch.time_ps[keep])


def _one(command: Command) -> str:
    if len(command.args) != 1:
        raise ScpiError(PARAM_COUNT, f"{':'.join(command.nodes)} takes one value")
    return command.args[0]


def _optional(command: Command) -> str | None:
    if len(command.args) > 1:
        raise ScpiError(PARAM_COUNT, f"{':'.join(command.nodes)} takes at most one value")
    return command.args[0] if command.args else None


def _on_off(value: bool) -> str:
    return "ON" if value else "OFF"


def _delay(text: str) -> int:
    """A delay in time-base units (1 TB = 1 ps), 0..1 s."""
    return _time_ps(text, MAX_DELAY_PS)


def _time_ps(text: str, most_ps: int) -> int:
    """A whole number of time-base units (1 TB = 1 ps) in 0..``most_ps``."""
    value = number(text, "TB")
    if value != int(value) or not 0 <= value <= most_ps:
        raise ScpiError(INVALID_VALUE, f"{text!r} is not 0..{most_ps} TB")
    return int(value)


def _link(text: str) -> str:
    """A block reference (``INPU1``, ``DELA3``, ``NONE``...) in canonical long form."""
    match = NODE_RE.fullmatch(text.strip())
    word = LINK_VOCABULARY.canonical(match[1]) if match else None
    if match is None or word is None:
        raise ScpiError(INVALID_VALUE, f"no block {text!r}")
    return f"{word}{match[2]}"


def _short_link(link: str) -> str:
    """A canonical block reference as the controller prints it (short form)."""
    match = NODE_RE.fullmatch(link)
    assert match is not None
    for spelled in LINKABLE:
        if spelled.upper() == match[1]:
            short = "".join(ch for ch in spelled if not ch.islower())
            return f"{short}{match[2]}"
    return link

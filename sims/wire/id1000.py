"""A time-tagger twin behind the ID Quantique ID1000's SCPI-over-ZMQ protocol + tag stream.

Control: a ZMQ ROUTER socket (wire-compatible with the controller's REP for REQ clients;
ROUTER lets a faulted request go unanswered without wedging the socket). One request =
one SCPI command without terminator; setting commands answer an empty message, refused
or unknown ones ``SCPI_ERR: <code> <why>``. Served (short forms, case-insensitive):
``*IDN?``, ``DEVI:RES:BWID?``, ``INPU<n>:DELA <ps>[TB]``/``?``, ``INPU<n>:THRE <v>[mV]``
/``?``, ``INPU<n>:COUN?`` (rate over ``counter_window_s`` of sim time), ``RAW:SEND
ON|OFF``, ``REC:PLAY``, ``REC:STOP``.

Stream: while raw sending is on and the recorder plays, every batch the twin reads goes out
as frames (``sims.wire.tagframe``) on a PUSH socket (default: a slow reader slows the
simulation instead of losing tags) or a PUB socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any, Literal

import zmq
import zmq.asyncio

from sims.wire.base import GARBAGE, Fate, Outcome, attempt, ensure_link, log
from sims.wire.tagframe import FrameEncoder

IDENTITY = "ID Quantique,ID1000,LCTWIN0002,7.2"
READ_TIMEOUT_S = 1.0
_INPUT_RE = re.compile(r"INPU(\d+):(DELA|THRE|COUN)(\?)?")
StreamPattern = Literal["push", "pub"]


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
        self._raw_send = False
        self._playing = False
        self._thresholds_mv = [0.0] * int(twin.n_channels)
        self.encoder = FrameEncoder()

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
                reply = b"SCPI_ERR: -300 device-specific error"
            if reply is not None:
                await self._control.send_multipart([*envelope, reply])

    async def _answer(self, body: bytes) -> bytes | None:
        if not await ensure_link(self.twin):
            return None  # unreachable: the REQ side times out, as with a pulled cable
        command = body.decode("ascii", errors="replace").strip()
        outcome = await self._execute(command)
        if outcome.fate is Fate.OK:
            return str(outcome.value).encode("ascii")
        if outcome.fate is Fate.REFUSED:
            return f"SCPI_ERR: -222 {outcome.message}".encode("ascii", errors="replace")
        if outcome.fate is Fate.GARBLED:
            return GARBAGE
        return None

    async def _execute(self, command: str) -> Outcome:
        header, _, argument = command.partition(" ")
        header, argument = header.upper(), argument.strip()
        twin = self.twin
        if header == "*IDN?":
            return Outcome(Fate.OK, IDENTITY)
        if header == "DEVI:RES:BWID?":
            return Outcome(Fate.OK, str(int(twin.resolution_ps)))
        if header == "RAW:SEND":
            if argument.upper() not in ("ON", "OFF"):
                return Outcome(Fate.REFUSED, message=f"RAW:SEND takes ON or OFF, not {argument!r}")
            self._raw_send = argument.upper() == "ON"
            return await self._update_stream()
        if header in ("REC:PLAY", "REC:STOP"):
            self._playing = header == "REC:PLAY"
            return await self._update_stream()
        match = _INPUT_RE.fullmatch(header)
        if match is None:
            return Outcome(Fate.REFUSED, message=f"undefined header {header!r}")
        channel = int(match[1]) - 1
        if not 0 <= channel < len(self._thresholds_mv):
            return Outcome(Fate.REFUSED, message=f"no input {match[1]}")
        what, query = match[2], bool(match[3])
        if what == "DELA":
            if query:
                return await attempt(twin.get_channel_delay_ps(channel))
            delay = _number(argument, ("TB", "PS"))
            if delay is None or delay != int(delay):
                return Outcome(Fate.REFUSED, message=f"bad delay {argument!r}")
            return _empty(await attempt(twin.set_channel_delay_ps(channel, int(delay))))
        if what == "THRE":
            if query:
                return Outcome(Fate.OK, f"{self._thresholds_mv[channel]:g}mV")
            level = _number(argument, ("MV",))
            if level is None:
                return Outcome(Fate.REFUSED, message=f"bad threshold {argument!r}")
            self._thresholds_mv[channel] = level
            return Outcome(Fate.OK, "")
        if not query:
            return Outcome(Fate.REFUSED, message="COUN is a query")
        rates = await attempt(twin.get_count_rates_hz(self._counter_window_s))
        if rates.fate is not Fate.OK:
            return rates
        return Outcome(Fate.OK, f"{rates.value[channel]:.1f}")

    # -- stream -------------------------------------------------------------------------

    async def _update_stream(self) -> Outcome:
        """Start or stop pumping so that it runs exactly while raw send is on and playing."""
        want = self._raw_send and self._playing
        if want and not self.streaming:
            outcome = await attempt(self.twin.start_stream())
            if outcome.fate is not Fate.OK:
                return outcome
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        elif not want and self._pump_task is not None:
            task, self._pump_task = self._pump_task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return _empty(await attempt(self.twin.stop_stream()))
        return Outcome(Fate.OK, "")

    async def _pump(self) -> None:
        sock = self._stream
        assert sock is not None
        while True:
            outcome = await attempt(self.twin.read_batch(READ_TIMEOUT_S))
            if outcome.fate is Fate.LOST:
                log.info("%s: twin link lost, tag stream stops", self.name)
                return
            if outcome.fate is Fate.GARBLED:
                await sock.send(GARBAGE)
                continue
            if outcome.fate is not Fate.OK:
                self.encoder.skip()  # a window the device could not deliver: a seq gap
                continue
            for frame in self.encoder.encode(outcome.value):
                await sock.send(frame, copy=False)
            # A send that did not block returns at once: let control requests in.
            await asyncio.sleep(0)


def _number(text: str, suffixes: tuple[str, ...]) -> float | None:
    """A number with an optional unit suffix, or None."""
    body = text.strip().upper()
    for suffix in suffixes:
        if body.endswith(suffix):
            body = body[: -len(suffix)].strip()
            break
    try:
        return float(body)
    except ValueError:
        return None


def _empty(outcome: Outcome) -> Outcome:
    """A setting that worked answers an empty message."""
    return Outcome(Fate.OK, "") if outcome.fate is Fate.OK else outcome

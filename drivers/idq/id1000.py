"""ID Quantique ID1000 / ID900 time controller: SCPI over ZMQ REQ/REP plus a tag stream.

Protocol facts (Time Controller user manual, IDQ's published Python examples, public lab
drivers of the ID900): a ZMQ REQ socket connects to the controller's REP socket on port
5555; each request is one SCPI program message without terminator and gets one reply
message. Headers are case-insensitive with short and long forms (``INPU1:THRE`` =
``INPUt1:THREshold``); several commands may share a message, separated by ``;`` (a
leading ``:`` restarts from the root), and their query answers come back one per line.
``*IDN?`` names the unit; ``DEVI:RES:BWID?`` is the timestamp bin width in ps; times may
carry the time-base unit ``TB`` (1 TB = 1 ps). A refused command is answered with the
parser's error code, ``SCPI_ERR_INVALID_CMD``, ``SCPI_ERR_PARAM_TYPE``... (IDQ's scripts
test for ``SCPI_ERR_`` in the reply; the driver raises InstrumentFault with that text).
Setting commands mostly answer nothing, some answer a line of text (``Counter value set
to 0 ``, ``Flushed Histogram!``): any reply without an error code is accepted.

Inputs: an input's delay is set on the delay block linked to it, ``DELAy<n>:VALUe`` with
``DELAy<n>:LINK INPUt<n>`` (as IDQ's examples do); the threshold is
``INPUt<n>:THREshold`` (mV given, the device answers volts); ``INPUt<n>:COUNter?`` is the
number of events in the input's last counter window, ``INPUt<n>:COUNter:INTEgrationtime``
ms long, so the rate is their ratio (the counters are assumed in their power-up CYCLe
mode; ``integration_s`` cannot shorten the device's window, it only has to be positive).
Inputs are counted from 0 in labctl and from 1 on the wire (``INPU1`` = channel 0).

Recording: the RECord generator gates acquisition. ``start_stream`` stops any record, sets
it enabled, endless (``NUM INF``) and manually armed, turns ``RAW<n>:SEND ON`` for every
streamed input (setting ``stream_inputs``, default all: a channel whose timestamps nobody
reads, such as a 1 MHz clock marker, is better left off the wire), then ``REC:PLAY``;
``stop_stream`` sends ``REC:STOP`` and ``RAW<n>:SEND OFF``.

The tag stream is an assumption, because the controller's own timestamp transport is not
public: with ``RAW<n>:SEND ON`` the controller pushes timestamps to IDQ's
DataLinkTargetService (a PC-side program, commands on ZMQ port 6060), which writes files or
re-streams each input on its own ZMQ PAIR socket (port 4241 + n) as bare little-endian
uint64 timestamps (pairs with the reference index under ``--with-ref-index``), reset at each
record. Neither leg carries the window, overflow or merged channels a TagBatch needs, so
labctl reads one merged stream in the frame format of ``drivers.idq.tagframe`` (spoken by
the wire twin; in the lab a bridge next to the DataLinkTargetService must produce it) on a
separate ZMQ socket: the transport option ``stream_address`` (default port 5556 on the
same host); option ``stream_pattern`` is ``sub`` (the stream is a PUB socket, the
default) or ``pull`` (a PUSH socket: lossless, with backpressure); ``stream_hwm`` bounds
the frames queued in memory (default 1000).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, Self, TypeVar

from drivers.idq.tagframe import SEQ_MODULO, decode_frame
from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
)
from labctl.instrument.recovery import operation, resend_garbled
from labctl.instrument.scpi import ScpiLink
from labctl.instrument.settings import Setting
from labctl.instrument.validate import (
    check_channel,
    check_int,
    check_length,
    check_number,
    parse_float,
    parse_int,
)
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import ConfigError, InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.interfaces.tags import TagBatch
from labctl.transport.base import Transport
from labctl.transport.recovery import policy_of

MAX_INPUTS = 4  # the ID1000's inputs; a station may use fewer (n_channels)
DELAY_RANGE_PS = (0, 1_000_000_000)  # up to 1 ms
THRESHOLD_RANGE_MV = (-2000.0, 2000.0)
ORDER_STREAM = 10  # restart the stream only after delays and thresholds are back
NOT_REPEATABLE = frozenset({"REC:PLAY"})
"""Commands whose message is not re-sent after a garbled reply. Queries, delays, thresholds,
``RAW<n>:SEND``, ``REC:STOP`` and the record set-up set absolute states; ``REC:PLAY`` arms
the record and the manual does not say what a second PLAY does to a running acquisition,
so its garbled reply is a ProtocolError (``start_stream`` as a whole is safe to run again
after a reconnect, since it stops any record first)."""
T = TypeVar("T")


class FrameSource(Protocol):
    """Where tag frames come from (labctl.transport.zmq_sub.ZmqSubscriber in the lab)."""

    @property
    def is_open(self) -> bool:
        """True while receiving."""
        ...

    async def open(self) -> None:
        """Start receiving."""
        ...

    async def close(self) -> None:
        """Stop receiving."""
        ...

    async def recv(self, timeout_s: float) -> bytes:
        """The next frame; InstrumentTimeout after ``timeout_s``."""
        ...


class ID1000(DriverBase):
    """Driver for the ID Quantique ID1000 (and ID900) (implements labctl's TimeTagger)."""

    model = "ID Quantique ID1000"
    settings = (
        Setting(
            "delays_ps",
            "integer",
            DELAY_RANGE_PS,
            read=lambda d: d._delays_ps(),
            channels=MAX_INPUTS,
            apply_channel=lambda d, ch, ps: d._write(_delay_command(ch, ps)),
        ),
        # The snapshot reports the thresholds as set; it asks the controller only for delays.
        Setting(
            "thresholds_mv",
            "number",
            THRESHOLD_RANGE_MV,
            read=lambda d: d._thresholds_set_mv(),
            channels=MAX_INPUTS,
            apply_channel=lambda d, ch, mv: d._write(_threshold_command(ch, mv)),
        ),
    )

    def __init__(
        self,
        name: str,
        transport: Transport,
        stream: FrameSource,
        *,
        n_channels: int = 4,
        stream_inputs: list[int] | None = None,
    ) -> None:
        super().__init__(name, transport)
        self._scpi = ScpiLink(transport, terminator=b"")
        self._stream = stream
        self._n_channels = check_int(name, "n_channels", n_channels, 1, MAX_INPUTS)
        inputs = range(self._n_channels) if stream_inputs is None else stream_inputs
        self._stream_inputs = sorted({check_channel(name, ch, self._n_channels) for ch in inputs})
        self._resolution_ps = 1
        self._next_seq: int | None = None
        self._overflow_seen = False
        self._stream_gap = False  # a reconnect happened: flag the next batch

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: n_channels, delays_ps, thresholds_mv,
        stream_inputs."""
        from labctl.transport.zmq_sub import ZmqSubscriber

        transport_spec = require_transport(spec, ("zmq",))
        name = spec.name
        n_channels = spec.settings.get("n_channels", MAX_INPUTS)
        validators = cls.config_validators(name)
        # Per-input settings take one value for each input in use, not just up to four.
        for key in ("delays_ps", "thresholds_mv"):
            validators[key] = _one_per_input(name, key, n_channels, validators[key])
        validated = validate_config_settings(
            spec,
            {
                **validators,
                # How the driver is built, never written to the controller: nothing to
                # remember or re-apply.
                "n_channels": lambda v: check_int(name, "n_channels", v, 1, MAX_INPUTS),
                "stream_inputs": lambda v: _channel_list(name, "stream_inputs", v, n_channels),
            },
        )
        stream_address = transport_spec.options.get("stream_address")
        if stream_address is None:
            host = transport_spec.address.rsplit(":", 1)[0]
            stream_address = f"{host}:5556"
        pattern = transport_spec.options.get("stream_pattern", "sub")
        if pattern not in ("sub", "pull"):
            raise ConfigError(
                f"stream_pattern must be 'sub' (PUB stream) or 'pull' (PUSH stream), "
                f"got {pattern!r}",
                file=spec.source.file,
                line=spec.source.line,
                field=f"instruments.{name}.transport.options.stream_pattern",
            )
        hwm = transport_spec.options.get("stream_hwm", 1000)
        if isinstance(hwm, bool) or not isinstance(hwm, int) or hwm < 0:
            raise ConfigError(
                f"stream_hwm must be an integer >= 0 (frames queued), got {hwm!r}",
                file=spec.source.file,
                line=spec.source.line,
                field=f"instruments.{name}.transport.options.stream_hwm",
            )
        stream = ZmqSubscriber(
            str(stream_address),
            instrument=name,
            timeout_s=transport_spec.timeout_s,
            pattern=pattern,
            rcvhwm=hwm,
        )
        scpi = make_transport(
            spec,
            transport_spec,
            driver_options=("stream_address", "stream_pattern", "stream_hwm"),
        )
        driver = cls(
            name,
            scpi,
            stream,
            n_channels=validated.get("n_channels", MAX_INPUTS),
            stream_inputs=validated.get("stream_inputs"),
        )
        for setting in cls.settings:
            if setting.name in validated:
                driver._remember_declared(setting.name, validated[setting.name])
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        reply = await self._ask("*IDN?")
        fields = [part.strip() for part in reply.split(",")]
        if len(fields) != 4 or not any(m in fields[1].upper() for m in ("ID1000", "ID900")):
            raise ProtocolError(
                f"not an ID1000/ID900 identity: {reply!r}", instrument=self.name, command="*IDN?"
            )
        self._resolution_ps = await self._ask_time_ps("DEVI:RES:BWID?")
        if self._resolution_ps < 1:
            raise ProtocolError(
                f"bin width {self._resolution_ps} ps makes no sense",
                instrument=self.name,
                command="DEVI:RES:BWID?",
            )
        return {"vendor": fields[0], "model": fields[1], "serial": fields[2], "firmware": fields[3]}

    def _after_reconnect(self) -> None:
        # The controller may have restarted: tags were lost meanwhile and its time base may
        # have restarted too, which the frame numbers of a restarted stream do not show.
        self._stream_gap = True

    async def _close_links(self) -> None:
        """Close the tag stream and the SCPI link (a reconnect restarts a running stream)."""
        await self._stream.close()
        await super()._close_links()

    @operation
    async def snapshot(self) -> dict[str, Any]:
        """Identity, resolution and every input's delay as read back."""
        return {
            "model": self.model,
            **self.identity,
            "resolution_ps": self._resolution_ps,
            **await self._declared_snapshot(),
            "streaming": self._stream.is_open,
        }

    @operation
    async def safe_state(self) -> None:
        """Stop the stream (the controller drives no light, so stopping is the safe state)."""
        await self.stop_stream()

    @operation
    async def health(self) -> Health:
        """Read every input's rate; unhealthy when the stream overflowed since last asked."""
        rates = await self.get_count_rates_hz(1.0)
        readings: dict[str, float | int | str | bool] = {
            f"rate_{ch}_hz": rate for ch, rate in enumerate(rates)
        }
        readings["overflow"] = self._overflow_seen
        ok = not self._overflow_seen
        self._overflow_seen = False
        return Health(ok=ok, detail="ok" if ok else "tag stream overflowed", readings=readings)

    # -- TimeTagger interface -----------------------------------------------------------

    @property
    def n_channels(self) -> int:
        """Inputs in use (up to 4)."""
        return self._n_channels

    @property
    def resolution_ps(self) -> int:
        """Timestamp bin width read at connect, picoseconds."""
        return self._resolution_ps

    @operation
    async def set_channel_delay_ps(self, channel: int, delay_ps: int) -> None:
        """Delay every tag of one input by ``delay_ps`` (0..1 ms), on its delay block."""
        check_channel(self.name, channel, self._n_channels)
        await self._set_declared_channel("delays_ps", channel, delay_ps)

    @operation
    async def get_channel_delay_ps(self, channel: int) -> int:
        """The delay of one input (its delay block's value), picoseconds."""
        check_channel(self.name, channel, self._n_channels)
        return await self._ask_time_ps(f"DELA{channel + 1}:VALU?")

    @operation
    async def set_threshold_mv(self, channel: int, level_mv: float) -> None:
        """Discriminator threshold of one input, millivolts."""
        check_channel(self.name, channel, self._n_channels)
        await self._set_declared_channel("thresholds_mv", channel, level_mv)

    @operation
    async def start_stream(self) -> None:
        """Open the tag socket, then ask the controller to send raw timestamps."""
        await self._stream.open()
        self._next_seq = None
        raw_on = "".join(f";:RAW{ch + 1}:SEND ON" for ch in self._stream_inputs)
        await self._write(f"REC:STOP;ENAB ON;NUM INF;TRIG:ARM:MODE MANU{raw_on}")
        await self._write("REC:PLAY")
        # A running stream is no station setting, but a reconnect restarts it.
        self._remember("streaming", True, self._restart_stream, order=ORDER_STREAM)

    @operation
    async def stop_stream(self) -> None:
        """Stop the controller's stream and drop whatever was not read."""
        raw_off = "".join(f";:RAW{n}:SEND OFF" for n in range(1, self._n_channels + 1))
        await self._write(f"REC:STOP{raw_off}")
        await self._stream.close()
        self._memory.forget("streaming")

    @operation
    async def read_batch(self, timeout_s: float) -> TagBatch:
        """The next frame as a TagBatch; a gap in frame numbers marks it overflowed."""
        check_number(self.name, "timeout_s", timeout_s, 0.0, 3600.0)
        # A frame that does not decode is a lost frame (it cannot be asked for again): skip
        # it, flag the next batch as missing data, give up after garbled_retries in a row.
        skips_left = policy_of(self._transport).garbled_retries
        lost_frames = False
        while True:
            frame = await self._stream.recv(timeout_s)
            try:
                seq, batch = decode_frame(frame, instrument=self.name, n_channels=self._n_channels)
                break
            except ProtocolError:
                if skips_left <= 0:
                    raise
                skips_left -= 1
                lost_frames = True
        expected, self._next_seq = self._next_seq, (seq + 1) % SEQ_MODULO
        gap, self._stream_gap = self._stream_gap, False
        if gap or lost_frames or (expected is not None and seq != expected):
            batch = dataclasses.replace(batch, overflow=True)
        self._overflow_seen = self._overflow_seen or batch.overflow
        return batch

    @operation
    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """Every input's count rate over its counter window, hertz (one request)."""
        check_number(self.name, "integration_s", integration_s, 1e-6, 3600.0)
        command = ";:".join(
            f"INPU{n}:COUN:INTE?;:INPU{n}:COUN?" for n in range(1, self._n_channels + 1)
        )
        # One answer per line (ID1000); older firmware runs them together with ';'.
        lines = [part for part in re.split(r"[;\s]+", await self._ask(command)) if part]
        if len(lines) != 2 * self._n_channels:
            raise ProtocolError(
                f"expected {2 * self._n_channels} answers (window, counts per input), "
                f"got {len(lines)}",
                instrument=self.name,
                command=command,
            )
        rates = []
        for window_text, counts_text in zip(lines[::2], lines[1::2], strict=True):
            window_ms = parse_float(
                _unitless(window_text, "MS"), instrument=self.name, command=command
            )
            counts = parse_float(counts_text, instrument=self.name, command=command)
            if window_ms <= 0 or counts < 0:
                raise ProtocolError(
                    f"{counts:g} events in a {window_ms:g} ms window makes no sense",
                    instrument=self.name,
                    command=command,
                )
            rates.append(counts * 1000.0 / window_ms)
        return rates

    # -- internals ----------------------------------------------------------------------

    async def _delays_ps(self) -> list[int]:
        """Every input's delay as read back."""
        return [await self.get_channel_delay_ps(ch) for ch in range(self._n_channels)]

    async def _thresholds_set_mv(self) -> list[float | None]:
        """Every input's threshold as last set (None where none was)."""
        return [
            self.remembered_settings.get(f"thresholds_mv[{ch}]") for ch in range(self._n_channels)
        ]

    async def _restart_stream(self) -> None:
        await self._stream.close()
        await self.start_stream()

    async def _ask(self, command: str) -> str:
        """A message's reply (an error code -> InstrumentFault); garbled re-sent if safe."""

        async def exchange() -> str:
            return await self._ask_once(command)

        return await self._resend(command, exchange)

    async def _ask_once(self, command: str) -> str:
        reply = await self._scpi.ask(command)
        if "SCPI_ERR" in reply:
            raise InstrumentFault(reply, instrument=self.name, command=command)
        return reply

    async def _write(self, command: str) -> None:
        """A setting command: any reply but an error code (some settings answer text)."""
        await self._ask(command)

    async def _ask_time_ps(self, command: str) -> int:
        async def exchange() -> int:
            reply = await self._ask_once(command)
            return parse_int(_unitless(reply, "TB"), instrument=self.name, command=command)

        return await self._resend(command, exchange)

    async def _resend(self, command: str, exchange: Callable[[], Awaitable[T]]) -> T:
        repeatable = not any(unit in NOT_REPEATABLE for unit in _headers(command))
        return await resend_garbled(self._transport, exchange, repeatable=repeatable)


def _headers(message: str) -> list[str]:
    """The header of every command in a program message (``A 1;:B?`` -> ``A``, ``B?``)."""
    return [unit.strip().lstrip(":").split(" ")[0].upper() for unit in message.split(";")]


def _delay_command(channel: int, delay_ps: int) -> str:
    return f"DELA{channel + 1}:VALU {delay_ps};LINK INPU{channel + 1}"


def _unitless(text: str, unit: str) -> str:
    """``text`` without a trailing ``unit`` (any case)."""
    stripped = text.strip()
    return stripped[: -len(unit)] if stripped.upper().endswith(unit) else stripped


def _threshold_command(channel: int, level_mv: float) -> str:
    return f"INPU{channel + 1}:THRE {level_mv:g}mV"


def _one_per_input(
    instrument: str, setting: str, n_channels: int, check: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """``check`` (the declaration's), then exactly one value per input in use."""

    def validate(values: Any) -> Any:
        checked = check(values)
        check_length(instrument, setting, checked, n_channels)
        return checked

    return validate


def _channel_list(instrument: str, setting: str, values: Any, n_channels: int) -> list[int]:
    if not isinstance(values, list) or not values:
        raise ValueError(
            f"{instrument}: {setting} needs a non-empty list of inputs, got {values!r}"
        )
    return [check_int(instrument, setting, v, 0, n_channels - 1) for v in values]

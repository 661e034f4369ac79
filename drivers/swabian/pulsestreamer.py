"""Swabian Instruments Pulse Streamer 8/2 as Alice's transmitter: JSON-RPC 2.0 over HTTP.

Protocol facts (vendor client ``pulsestreamer`` 2.1.2 and its documentation): the device
answers JSON-RPC 2.0 requests POSTed to ``http://<host>:8050/json-rpc`` with positional
params. Methods used here: ``getSerial``, ``getFirmwareVersion``, ``getHardwareVersion``,
``setTrigger(start, rearm)`` (start 0 immediate, 1 software, 2..4 hardware edges; rearm
0 auto, 1 manual), ``getTriggerStart``, ``getTriggerRearm``, ``stream(b64, n_runs, final)``
(n_runs -1 = repeat forever; final = ``[0, mask, ao0, ao1]``, the state held after the
sequence), ``startNow``, ``forceFinal``, ``isStreaming``, ``hasSequence``, ``hasFinished``,
``constant([0, mask, ao0, ao1])`` and ``getUnderflow``. The sequence format is in
:mod:`drivers.swabian.sequence`.

Pattern mode (setting ``streaming``):

* ``continuous`` (default) -> **STREAMED**. Firmware 2.1's continuous streaming, as the
  vendor client 2.1.2 exposes it: ``upload(slot, ...)`` over the binary upload protocol
  (TCP port 21328, :mod:`drivers.swabian.upload`) into two slots played back to back,
  ``start(slot, slots_to_run)`` and ``isReadyForData(slot)`` over JSON-RPC.
  ``load_pattern`` uploads slot 0; each ``append_pattern`` waits until the other slot is
  free and uploads there with "switch slot, expect new data" and, should data come late,
  the idle state (no light) until it does (``getUnderflow`` then reports it in
  ``health``). Needs firmware >= 2.1.0 (checked at connect).
* ``repeating`` -> **REPEATING**: JSON-RPC ``stream`` only, one sequence cycled or played
  once; ``append_pattern`` is refused. For older firmware; demonstrations only, never key.

Memory: one sequence holds at most 2,000,000 steps (vendor client 2.1.2 refuses longer
ones: "The resulting sequence length exceeds the limit of two million sequence steps").
A pattern pulse is at most one step (merged runs are fewer), so in REPEATING mode
``memory_pulses`` is 2,000,000. In STREAMED mode two slots are filled at once; assuming
they share that memory, a chunk holds at most 1,000,000 pulses (a documented assumption,
conservative). Longer patterns are refused with both numbers, never truncated.

The device has no notion of a pulse period or marker divider: both live in this driver
and shape the next encoded sequence. The trigger is set to *software start* at connect,
so ``load_pattern`` arms a sequence and ``start()`` plays it (``start(0, -1)`` when
STREAMED, ``startNow`` when REPEATING).
Pattern contents never reach a log line or an exception.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from drivers.swabian.sequence import (
    N_DIGITAL,
    ChannelMap,
    encode_base64,
    encode_steps,
    output_state,
)
from drivers.swabian.upload import UploadTransport
from labctl.instrument.base import DriverBase, require_transport, validate_config_settings
from labctl.instrument.recovery import operation, operation_once
from labctl.instrument.settings import Setting
from labctl.instrument.validate import RefusedType, RefusedValue
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import (
    ConfigError,
    InstrumentFault,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.interfaces.instrument import Health
from labctl.interfaces.pattern import PatternMode, PulsePattern
from labctl.transport.core import check_timeout_s
from labctl.transport.factory import parse_host_port
from labctl.transport.jsonrpc_http import JsonRpcHttpTransport

DEFAULT_PORT = 8050
DEFAULT_PATH = "/json-rpc"
MEMORY_STEPS = 2_000_000
SLOT_STEPS = MEMORY_STEPS // 2  # two slots in flight while streaming continuously
DEFAULT_UPLOAD_PORT = 21328
CONTINUOUS_FIRMWARE = (2, 1)
READY_POLL_S = 0.002
REPEAT_FOREVER = -1
TRIGGER_SOFTWARE = 1
REARM_AUTO = 0
# The device's 1 ns grid. Its analog outputs sample at 125 MHz (hardware manual): below
# 8 ns per pulse the intensity drive cannot follow every pulse (fine for a twin's 1 GHz).
MIN_PERIOD_NS = 1
MAX_PERIOD_NS = 0xFFFFFFFF
PERIOD_RANGE_PS = (MIN_PERIOD_NS * 1000, MAX_PERIOD_NS * 1000)
DIVIDER_RANGE = (1, 1 << 31)  # clock marker every n-th pulse
LEVEL_RANGE_V = (-1.0, 1.0)  # the analog outputs' full scale
OUTPUTS = (0, N_DIGITAL - 1)  # digital outputs
MAX_INTENSITY_CLASSES = 256  # a PulsePattern's intensity class is one byte
UPLOAD_BYTES_PER_S = 5e6  # extra reply time granted per byte of a stream() request
TRANSPORT_OPTIONS = frozenset({"open_timeout_s", "max_reply_bytes", "path", "upload_port"})
STREAMING_MODES = ("continuous", "repeating")


async def _held(value: Any) -> Any:
    """A value the driver holds, as a declared setting's read."""
    return value


class PulseStreamer(DriverBase):
    """Driver for the Swabian Pulse Streamer 8/2 (implements labctl's Transmitter).

    pattern_mode is STREAMED when an upload link is given (continuous streaming over the
    binary upload port, firmware >= 2.1), else REPEATING (JSON-RPC ``stream`` of one
    sequence, cycled or once; ``append_pattern`` raises InstrumentFault). See the module
    docstring.
    """

    model: ClassVar[str] = "Swabian Instruments Pulse Streamer 8/2"
    memory_steps: ClassVar[int] = MEMORY_STEPS
    # The device has none of these: the driver holds them from construction on and encodes
    # the next sequence with them, so none has an apply or anything to re-apply. The station
    # file's ``streaming`` (a word, fixed at construction) is checked in config_validators.
    settings = (
        Setting("period_ps", "integer", PERIOD_RANGE_PS, read=lambda d: d.get_period_ps()),
        Setting("marker_divider", "integer", DIVIDER_RANGE, read=lambda d: d.get_marker_divider()),
        Setting(
            "intensity_levels_v",
            "number",
            LEVEL_RANGE_V,
            read=lambda d: _held(list(d._levels_v)),
            channels=MAX_INTENSITY_CLASSES,
        ),
        Setting("off_level_v", "number", LEVEL_RANGE_V, read=lambda d: _held(d._off_level_v)),
        Setting(
            "basis_channel", "integer", OUTPUTS, read=lambda d: _held(d.channels.basis_channel)
        ),
        Setting("bit_channel", "integer", OUTPUTS, read=lambda d: _held(d.channels.bit_channel)),
        Setting(
            "clock_channel", "integer", OUTPUTS, read=lambda d: _held(d.channels.clock_channel)
        ),
        Setting(
            "frame_channel", "integer", OUTPUTS, read=lambda d: _held(d.channels.frame_channel)
        ),
    )

    def __init__(
        self,
        name: str,
        transport: JsonRpcHttpTransport,
        *,
        upload: UploadTransport | None = None,
        channels: ChannelMap | None = None,
        intensity_levels_v: Sequence[float] = (0.8, 0.3, 0.0),
        off_level_v: float = 0.0,
        period_ps: int = 10_000,
        marker_divider: int = 1000,
    ) -> None:
        super().__init__(name, transport)
        self._rpc = transport
        self._levels_v = tuple(float(v) for v in intensity_levels_v)
        self._off_level_v = float(off_level_v)
        self._channels = channels or ChannelMap.from_levels(
            basis_channel=0,
            bit_channel=1,
            clock_channel=2,
            frame_channel=3,
            intensity_levels_v=self._levels_v,
            off_level_v=self._off_level_v,
        )
        self._period_ns = self._check_period(period_ps)
        self._divider: int = self.declared("marker_divider").check(name, marker_divider)
        self._upload = upload
        self._loaded: tuple[int, bool] | None = None  # (pulses, repeat) of the armed pattern
        self._played = 0  # pulses uploaded since the load (clock-marker phase of the next)
        self._stopped = False  # forceFinal ends a stream: chunks cannot follow it
        self._next_slot = 0
        self._last_chunk_s = 0.0

    @classmethod
    def config_validators(cls, name: str) -> dict[str, Callable[[Any], Any]]:
        """The declared settings' checks and what a declaration cannot say: the pattern
        mode (a word) and the period's 1 ns grid."""
        validators = super().config_validators(name)
        validators["period_ps"] = functools.partial(check_period_ps, name)
        validators["streaming"] = functools.partial(_check_streaming, name)
        return validators

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry.

        ``transport: {kind: tcp, address: host:8050, timeout_s, options: {path,
        upload_port}}`` (upload_port: the binary upload port, default 21328, same host);
        settings: ``streaming`` (``continuous`` = STREAMED, default, or ``repeating``),
        ``period_ps`` (whole ns), ``marker_divider``, ``intensity_levels_v``
        (one analog-0 level per intensity class, within +/-1 V), ``off_level_v`` (analog-0
        level outside patterns), ``basis_channel``, ``bit_channel``, ``clock_channel``,
        ``frame_channel`` (distinct digital outputs 0..7; defaults 0, 1, 2, 3).
        """
        transport_spec = require_transport(spec, ("tcp",))
        name = spec.name

        def fail(field: str, message: str) -> ConfigError:
            return ConfigError(
                message,
                file=spec.source.file,
                line=spec.source.line,
                field=f"instruments.{name}.{field}",
            )

        for key in transport_spec.options:
            if key not in TRANSPORT_OPTIONS:
                raise fail(
                    f"transport.options.{key}",
                    f"unknown option (known: {', '.join(sorted(TRANSPORT_OPTIONS))})",
                )
        try:
            host, port = parse_host_port(transport_spec.address)
        except ValueError as exc:
            raise fail("transport.address", f"bad tcp address: {exc}") from None
        try:
            timeout_s = check_timeout_s(transport_spec.timeout_s, "timeout_s")
        except ValueError as exc:
            raise fail("transport.timeout_s", str(exc)) from None
        options = dict(transport_spec.options)
        upload_port = options.pop("upload_port", DEFAULT_UPLOAD_PORT)
        if isinstance(upload_port, bool) or not isinstance(upload_port, int):
            raise fail("transport.options.upload_port", f"must be a port, got {upload_port!r}")
        if not 0 < upload_port < 65536:
            raise fail("transport.options.upload_port", f"must be 1..65535, got {upload_port}")
        path = options.pop("path", DEFAULT_PATH)
        if not isinstance(path, str) or not path.startswith("/"):
            raise fail(
                "transport.options.path", f"must be an HTTP path such as /json-rpc, got {path!r}"
            )
        try:
            transport = JsonRpcHttpTransport(
                host, port, instrument=name, path=path, timeout_s=timeout_s, **options
            )
        except (TypeError, ValueError) as exc:
            raise fail("transport.options", str(exc)) from None
        validated = validate_config_settings(spec, cls.config_validators(name))
        upload = None
        if validated.get("streaming", "continuous") == "continuous":
            upload = UploadTransport(host, upload_port, instrument=name, timeout_s=timeout_s)
        levels = validated.get("intensity_levels_v", (0.8, 0.3, 0.0))
        off_level_v = validated.get("off_level_v", 0.0)
        try:
            channels = ChannelMap.from_levels(
                basis_channel=validated.get("basis_channel", 0),
                bit_channel=validated.get("bit_channel", 1),
                clock_channel=validated.get("clock_channel", 2),
                frame_channel=validated.get("frame_channel", 3),
                intensity_levels_v=levels,
                off_level_v=off_level_v,
            )
        except ValueError as exc:
            raise fail("settings", str(exc)) from None
        try:
            return cls(
                name,
                transport,
                upload=upload,
                channels=channels,
                intensity_levels_v=levels,
                off_level_v=off_level_v,
                period_ps=validated.get("period_ps", 10_000),
                marker_divider=validated.get("marker_divider", 1000),
            )
        except (TypeError, ValueError) as exc:
            message = exc.message if isinstance(exc, InstrumentFault) else str(exc)
            raise fail("settings", message) from None

    # -- Transmitter properties -----------------------------------------------------------

    @property
    def memory_pulses(self) -> int:
        """The most pulses one pattern (chunk) may hold: one step per pulse at most."""
        return self._chunk_steps

    @property
    def upload_pulses(self) -> int:
        """One pattern per upload: the whole chunk (a slot holds no more)."""
        return self._chunk_steps

    @property
    def _chunk_steps(self) -> int:
        return SLOT_STEPS if self._upload is not None else self.memory_steps

    @property
    def pattern_mode(self) -> PatternMode:
        """STREAMED over the upload port (continuous streaming), else REPEATING."""
        return PatternMode.REPEATING if self._upload is None else PatternMode.STREAMED

    @property
    def channels(self) -> ChannelMap:
        """The output mapping patterns are encoded with."""
        return self._channels

    # -- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the JSON-RPC link (identity, trigger), then the upload link if streaming."""
        await super().connect()
        if self._upload is not None and not self._upload.is_open:
            await self._upload.open()

    async def close(self) -> None:
        """Close both links; the device keeps playing what it plays."""
        if self._upload is not None:
            await self._upload.close()
        await super().close()

    def _link_suspect(self) -> bool:
        # HTTP hides a restart: a restarted device closed our idle keep-alive connection,
        # and the next call would reopen it silently on a device with factory trigger
        # settings (immediate start). Re-identify (software trigger) before going on.
        return self._rpc.peer_closed_idle()

    async def _open_and_restore(self) -> None:
        """Both links, as connect() opens them (also after a dropped link)."""
        await super()._open_and_restore()
        if self._upload is not None and not self._upload.is_open:
            await self._upload.open()

    async def _close_links(self) -> None:
        if self._upload is not None:
            await self._upload.close()
        await super()._close_links()

    async def _identify(self) -> dict[str, str]:
        serial = await self._rpc.call("getSerial")
        firmware = await self._rpc.call("getFirmwareVersion")
        hardware = await self._rpc.call("getHardwareVersion")
        for method, value in (
            ("getSerial", serial),
            ("getFirmwareVersion", firmware),
            ("getHardwareVersion", hardware),
        ):
            if not isinstance(value, str) or not value:
                raise ProtocolError(
                    f"expected a non-empty string, got {value!r}",
                    instrument=self.name,
                    command=method,
                )
        if self._upload is not None and _version(firmware) < CONTINUOUS_FIRMWARE:
            raise InstrumentFault(
                f"firmware {firmware} has no continuous streaming (needs 2.1.0 or newer); "
                "set streaming: repeating",
                instrument=self.name,
                command="getFirmwareVersion",
            )
        # Patterns wait for start(): a stream() must never light the fiber by itself.
        await self._rpc.call("setTrigger", [TRIGGER_SOFTWARE, REARM_AUTO])
        return {
            "vendor": "Swabian Instruments",
            "model": "Pulse Streamer 8/2",
            "serial": serial,
            "firmware": firmware,
            "hardware": hardware,
        }

    @operation
    async def snapshot(self) -> dict[str, Any]:
        """Identity, the driver's pattern settings and the device's streaming state."""
        loaded = self._loaded
        return {
            "model": self.model,
            **self.identity,
            "pattern_mode": str(self.pattern_mode),
            "memory_pulses": self.memory_pulses,
            **await self._declared_snapshot(),
            "loaded_pulses": None if loaded is None else loaded[0],
            "loaded_repeat": None if loaded is None else loaded[1],
            "streamed_pulses": self._played,
            "trigger_start": await self._call_int("getTriggerStart"),
            "trigger_rearm": await self._call_int("getTriggerRearm"),
            "has_sequence": await self._call_bool("hasSequence"),
            "streaming": await self._call_bool("isStreaming"),
        }

    @operation
    async def safe_state(self) -> None:
        """Stop any sequence and hold every output at zero (digital low, analog 0 V)."""
        await self._rpc.call("constant", [output_state(0, 0, 0)])
        self._loaded = None

    @operation
    async def health(self) -> Health:
        """Healthy when the device answers and reports no buffer underflow."""
        underflow = await self._rpc.call("getUnderflow")
        if isinstance(underflow, bool) or not isinstance(underflow, int):
            raise ProtocolError(
                f"expected an integer, got {underflow!r}",
                instrument=self.name,
                command="getUnderflow",
            )
        streaming = await self._call_bool("isStreaming")
        readings: dict[str, float | int | str | bool] = {
            "underflow": underflow,
            "streaming": streaming,
        }
        if underflow:
            return Health(
                ok=False, detail=f"sequence underflow reported ({underflow})", readings=readings
            )
        return Health(ok=True, detail="ok", readings=readings)

    # -- Transmitter ----------------------------------------------------------------------

    @operation
    async def set_period_ps(self, period_ps: int) -> None:
        """Set the pulse period (a whole number of ns) for the next pattern."""
        self._period_ns = self._check_period(period_ps)

    @operation
    async def get_period_ps(self) -> int:
        """The pulse period in picoseconds."""
        return self._period_ns * 1000

    @operation
    async def set_marker_divider(self, divider: int) -> None:
        """Mark every ``divider``-th pulse on the clock channel (from the next pattern on)."""
        self._divider = self.declared("marker_divider").check(self.name, divider)

    @operation
    async def get_marker_divider(self) -> int:
        """Pulses between two clock markers."""
        return self._divider

    @operation_once
    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        """Stop and arm ``pattern`` (cycled when ``repeat``, else played once) for start()."""
        if not isinstance(repeat, bool):
            raise RefusedType("repeat must be True or False", instrument=self.name, command="load")
        steps = self._encode(pattern, "load_pattern", pulses_before=0)
        n_runs = REPEAT_FOREVER if repeat else 1
        await self._rpc.call("forceFinal")
        self._loaded = None
        if self._upload is not None:
            await self._upload.upload(
                steps.tobytes(),
                slot=0,
                n_runs=n_runs,
                idle=(0, self._channels.off_code, 0),
                timeout_s=self._upload_timeout_s(steps.nbytes),
            )
            self._next_slot = 1
        else:
            encoded = encode_base64(steps)
            final = output_state(0, self._channels.off_code)
            await self._rpc.call(
                "stream",
                [encoded, n_runs, final],
                timeout_s=self._upload_timeout_s(len(encoded)),
            )
        self._loaded = (len(pattern), repeat)
        self._stopped = False
        self._played = len(pattern)
        self._last_chunk_s = len(pattern) * self._period_ns * 1e-9

    @operation_once
    async def append_pattern(self, pattern: PulsePattern) -> None:
        """Queue a chunk right after the previous one (STREAMED: the next free slot).

        Waits while both slots hold unplayed data (``isReadyForData``), at most the link
        timeout plus two chunk durations. REPEATING devices refuse.
        """
        if self._upload is None:
            raise InstrumentFault(
                "append_pattern needs continuous streaming (streaming: continuous, firmware "
                ">= 2.1, binary upload port); this instrument is REPEATING: "
                "load_pattern(..., repeat=True) cycles one pattern",
                instrument=self.name,
                command="append_pattern",
            )
        if self._loaded is None:
            raise InstrumentFault(
                "nothing loaded to append to", instrument=self.name, command="append_pattern"
            )
        if self._stopped:
            raise InstrumentFault(
                "stopped: a stream cannot be continued after stop(); load_pattern first",
                instrument=self.name,
                command="append_pattern",
            )
        if self._loaded[1]:
            raise InstrumentFault(
                "the loaded pattern cycles: nothing follows it",
                instrument=self.name,
                command="append_pattern",
            )
        steps = self._encode(pattern, "append_pattern", pulses_before=self._played)
        slot = self._next_slot
        await self._wait_ready(slot)
        await self._upload.upload(
            steps.tobytes(),
            slot=slot,
            n_runs=1,
            idle=(0, self._channels.off_code, 0),
            timeout_s=self._upload_timeout_s(steps.nbytes),
        )
        self._next_slot = 1 - slot
        self._played += len(pattern)
        self._last_chunk_s = len(pattern) * self._period_ns * 1e-9

    @operation_once
    async def start(self) -> None:
        """Play the armed pattern from its first pulse (``start(0, -1)`` or ``startNow``)."""
        if self._loaded is None:
            raise InstrumentFault("no pattern loaded", instrument=self.name, command="start")
        if self._upload is not None:
            await self._rpc.call("start", [0, REPEAT_FOREVER])
        else:
            await self._rpc.call("startNow")

    @operation
    async def stop(self) -> None:
        """Stop playing: the outputs go to the final state (no light) at once."""
        await self._rpc.call("forceFinal")
        self._stopped = True

    @operation
    async def is_running(self) -> bool:
        """True while the device streams a sequence."""
        return await self._call_bool("isStreaming")

    # -- internals ------------------------------------------------------------------------

    def _encode(
        self, pattern: PulsePattern, command: str, *, pulses_before: int
    ) -> npt.NDArray[np.void]:
        """The pattern's steps after every check; refusals carry numbers, never states."""
        if not isinstance(pattern, PulsePattern):
            raise RefusedType(
                f"{command} needs a PulsePattern", instrument=self.name, command=command
            )
        n = len(pattern)
        if n == 0:
            raise RefusedValue(
                "a pattern of no pulses cannot be played", instrument=self.name, command=command
            )
        if n > self.memory_pulses:
            raise RefusedValue(
                f"pattern of {n} pulses exceeds the sequence memory of {self.memory_pulses} "
                f"pulses ({self.pattern_mode} mode); split it into chunks",
                instrument=self.name,
                command=command,
            )
        try:
            steps = encode_steps(
                pattern,
                self._channels,
                period_ns=self._period_ns,
                marker_divider=self._divider,
                pulses_before=pulses_before,
            )
        except ValueError as exc:
            raise RefusedValue(str(exc), instrument=self.name, command=command) from None
        if steps.size > self._chunk_steps:
            raise RefusedValue(
                f"pattern encodes to {steps.size} steps, over the {self._chunk_steps}-step memory",
                instrument=self.name,
                command=command,
            )
        return steps

    def _upload_timeout_s(self, n_bytes: int) -> float:
        return self._rpc.timeout_s + n_bytes / UPLOAD_BYTES_PER_S

    async def _wait_ready(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        budget_s = self._rpc.timeout_s + 2 * self._last_chunk_s
        deadline = loop.time() + budget_s
        while not await self._call_bool("isReadyForData", [slot]):
            if loop.time() > deadline:
                raise InstrumentTimeout(
                    f"slot {slot} still busy after {budget_s:g} s",
                    instrument=self.name,
                    command="isReadyForData",
                )
            await asyncio.sleep(READY_POLL_S)

    def _check_period(self, period_ps: int) -> int:
        return check_period_ps(self.name, period_ps) // 1000

    async def _call_bool(self, method: str, params: Sequence[int] = ()) -> bool:
        value = await self._rpc.call(method, params)
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ProtocolError(
            f"expected a boolean, got {value!r}", instrument=self.name, command=method
        )

    async def _call_int(self, method: str) -> int:
        value = await self._rpc.call(method)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(
                f"expected an integer, got {value!r}", instrument=self.name, command=method
            )
        return value


def check_period_ps(name: str, period_ps: Any) -> int:
    """``period_ps`` when it is a whole number of ns (>= 1 ns), else RefusedValue."""
    value: int = PulseStreamer.declared("period_ps").check(name, period_ps)
    if value % 1000:
        raise RefusedValue(
            f"period_ps={value} is not a whole number of ns (the Pulse Streamer's 1 ns grid)",
            instrument=name,
            command="period_ps",
        )
    return value


def _check_streaming(name: str, value: Any) -> str:
    if value not in STREAMING_MODES:
        raise RefusedValue(
            f"streaming must be one of {', '.join(STREAMING_MODES)}, got {value!r}",
            instrument=name,
            command="streaming",
        )
    return str(value)


def _version(text: str) -> tuple[int, ...]:
    """``2.1.0`` -> (2, 1, 0); anything unparsable counts as (0,)."""
    parts: list[int] = []
    for piece in text.split(" ")[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts) or (0,)

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

Pattern mode: **REPEATING**. Continuous streaming of appended sequences (firmware 2.1) is
exposed by the vendor client 2.1.2 only as ``upload(slot, ...)`` over a separate binary
TCP protocol on port 21328 (plus ``start(slot, slots_to_run)``/``isReadyForData`` over
JSON-RPC); this driver speaks JSON-RPC only, so ``append_pattern`` is refused and a
pattern longer than a block cycles: demonstrations only, never key.

Memory: one sequence holds at most 2,000,000 steps (vendor client 2.1.2 refuses longer
ones: "The resulting sequence length exceeds the limit of two million sequence steps").
A pattern pulse is at most one step (merged runs are fewer), so ``memory_pulses`` is
2,000,000; a longer pattern is refused with both numbers, never truncated.

The device has no notion of a pulse period or marker divider: both live in this driver
and shape the next encoded sequence. The trigger is set to *software start* at connect,
so ``load_pattern`` arms a sequence and ``start()`` (``startNow``) plays it.
Pattern contents never reach a log line or an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

from drivers.common.base import DriverBase, require_transport, validate_config_settings
from drivers.common.validate import (
    RefusedType,
    RefusedValue,
    check_int,
    check_number,
)
from drivers.swabian.sequence import (
    ChannelMap,
    encode_base64,
    encode_steps,
    output_state,
)
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import ConfigError, InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.interfaces.pattern import PatternMode, PulsePattern
from labctl.transport.core import check_timeout_s
from labctl.transport.factory import parse_host_port
from labctl.transport.jsonrpc_http import JsonRpcHttpTransport

DEFAULT_PORT = 8050
DEFAULT_PATH = "/json-rpc"
MEMORY_STEPS = 2_000_000
REPEAT_FOREVER = -1
TRIGGER_SOFTWARE = 1
REARM_AUTO = 0
# The device's 1 ns grid. Its analog outputs sample at 125 MHz (hardware manual): below
# 8 ns per pulse the intensity drive cannot follow every pulse (fine for a twin's 1 GHz).
MIN_PERIOD_NS = 1
MAX_PERIOD_NS = 0xFFFFFFFF
UPLOAD_BYTES_PER_S = 5e6  # extra reply time granted per byte of a stream() request
TRANSPORT_OPTIONS = frozenset({"open_timeout_s", "max_reply_bytes", "path"})


class PulseStreamer(DriverBase):
    """Driver for the Swabian Pulse Streamer 8/2 (implements labctl's Transmitter).

    pattern_mode is REPEATING (see the module docstring): the JSON-RPC interface streams
    one sequence at a time, cycled or once; ``append_pattern`` raises InstrumentFault.
    """

    model: ClassVar[str] = "Swabian Instruments Pulse Streamer 8/2"
    memory_steps: ClassVar[int] = MEMORY_STEPS

    def __init__(
        self,
        name: str,
        transport: JsonRpcHttpTransport,
        *,
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
        self._divider = self._check_divider(marker_divider)
        self._loaded: tuple[int, bool] | None = None  # (pulses, repeat) of the armed pattern

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry.

        ``transport: {kind: tcp, address: host:8050, timeout_s, options: {path}}``;
        settings: ``period_ps`` (whole ns), ``marker_divider``, ``intensity_levels_v``
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

        def channel(key: str) -> Any:
            return lambda v: check_int(name, key, v, 0, 7)

        validated = validate_config_settings(
            spec,
            {
                "period_ps": lambda v: check_period_ps(name, v),
                "marker_divider": lambda v: check_int(name, "marker_divider", v, 1, 1 << 31),
                "intensity_levels_v": lambda v: _check_levels(name, v),
                "off_level_v": lambda v: check_number(name, "off_level_v", v, -1.0, 1.0),
                "basis_channel": channel("basis_channel"),
                "bit_channel": channel("bit_channel"),
                "clock_channel": channel("clock_channel"),
                "frame_channel": channel("frame_channel"),
            },
        )
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
        """The most pulses one pattern may hold: one sequence step per pulse at most."""
        return self.memory_steps

    @property
    def pattern_mode(self) -> PatternMode:
        """REPEATING: one sequence at a time over JSON-RPC, no appended chunks."""
        return PatternMode.REPEATING

    @property
    def channels(self) -> ChannelMap:
        """The output mapping patterns are encoded with."""
        return self._channels

    # -- lifecycle ------------------------------------------------------------------------

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
        # Patterns wait for start(): a stream() must never light the fiber by itself.
        await self._rpc.call("setTrigger", [TRIGGER_SOFTWARE, REARM_AUTO])
        return {
            "vendor": "Swabian Instruments",
            "model": "Pulse Streamer 8/2",
            "serial": serial,
            "firmware": firmware,
            "hardware": hardware,
        }

    async def snapshot(self) -> dict[str, Any]:
        """Identity, the driver's pattern settings and the device's streaming state."""
        loaded = self._loaded
        return {
            "model": self.model,
            **self.identity,
            "pattern_mode": str(self.pattern_mode),
            "memory_pulses": self.memory_pulses,
            "period_ps": self._period_ns * 1000,
            "marker_divider": self._divider,
            "intensity_levels_v": list(self._levels_v),
            "off_level_v": self._off_level_v,
            "basis_channel": self._channels.basis_channel,
            "bit_channel": self._channels.bit_channel,
            "clock_channel": self._channels.clock_channel,
            "frame_channel": self._channels.frame_channel,
            "loaded_pulses": None if loaded is None else loaded[0],
            "loaded_repeat": None if loaded is None else loaded[1],
            "trigger_start": await self._call_int("getTriggerStart"),
            "trigger_rearm": await self._call_int("getTriggerRearm"),
            "has_sequence": await self._call_bool("hasSequence"),
            "streaming": await self._call_bool("isStreaming"),
        }

    async def safe_state(self) -> None:
        """Stop any sequence and hold every output at zero (digital low, analog 0 V)."""
        await self._rpc.call("constant", [output_state(0, 0, 0)])
        self._loaded = None

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

    async def set_period_ps(self, period_ps: int) -> None:
        """Set the pulse period (a whole number of ns) for the next pattern."""
        self._period_ns = self._check_period(period_ps)

    async def get_period_ps(self) -> int:
        """The pulse period in picoseconds."""
        return self._period_ns * 1000

    async def set_marker_divider(self, divider: int) -> None:
        """Mark every ``divider``-th pulse on the clock channel (from the next pattern on)."""
        self._divider = self._check_divider(divider)

    async def get_marker_divider(self) -> int:
        """Pulses between two clock markers."""
        return self._divider

    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        """Stop and arm ``pattern`` (cycled when ``repeat``, else played once) for start()."""
        if not isinstance(pattern, PulsePattern):
            raise RefusedType(
                "load_pattern needs a PulsePattern", instrument=self.name, command="stream"
            )
        if not isinstance(repeat, bool):
            raise RefusedType(
                "repeat must be True or False", instrument=self.name, command="stream"
            )
        n = len(pattern)
        if n == 0:
            raise RefusedValue(
                "a pattern of no pulses cannot be played", instrument=self.name, command="stream"
            )
        if n > self.memory_pulses:
            raise RefusedValue(
                f"pattern of {n} pulses exceeds the sequence memory of {self.memory_pulses} "
                "pulses; split it (REPEATING device: a longer block cycles)",
                instrument=self.name,
                command="stream",
            )
        try:
            steps = encode_steps(
                pattern, self._channels, period_ns=self._period_ns, marker_divider=self._divider
            )
        except ValueError as exc:
            raise RefusedValue(str(exc), instrument=self.name, command="stream") from None
        if steps.size > self.memory_steps:
            raise RefusedValue(
                f"pattern encodes to {steps.size} steps, over the {self.memory_steps}-step memory",
                instrument=self.name,
                command="stream",
            )
        encoded = encode_base64(steps)
        final = output_state(0, self._channels.off_code)
        n_runs = REPEAT_FOREVER if repeat else 1
        await self._rpc.call("forceFinal")
        self._loaded = None
        await self._rpc.call(
            "stream",
            [encoded, n_runs, final],
            timeout_s=self._rpc.timeout_s + len(encoded) / UPLOAD_BYTES_PER_S,
        )
        self._loaded = (n, repeat)

    async def append_pattern(self, pattern: PulsePattern) -> None:
        """Refused: continuous streaming needs the binary upload port, not JSON-RPC."""
        raise InstrumentFault(
            "append_pattern needs continuous streaming, which the Pulse Streamer offers only "
            "through its binary upload protocol (port 21328); this JSON-RPC driver is "
            "REPEATING: load_pattern(..., repeat=True) cycles one pattern",
            instrument=self.name,
            command="append_pattern",
        )

    async def start(self) -> None:
        """Play the armed pattern from its first pulse (``startNow``)."""
        if self._loaded is None:
            raise InstrumentFault("no pattern loaded", instrument=self.name, command="startNow")
        await self._rpc.call("startNow")

    async def stop(self) -> None:
        """Stop playing: the outputs go to the final state (no light) at once."""
        await self._rpc.call("forceFinal")

    async def is_running(self) -> bool:
        """True while the device streams a sequence."""
        return await self._call_bool("isStreaming")

    # -- internals ------------------------------------------------------------------------

    def _check_period(self, period_ps: int) -> int:
        return check_period_ps(self.name, period_ps) // 1000

    def _check_divider(self, divider: int) -> int:
        return check_int(self.name, "marker_divider", divider, 1, 1 << 31)

    async def _call_bool(self, method: str) -> bool:
        value = await self._rpc.call(method)
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


def check_period_ps(name: str, period_ps: int) -> int:
    """``period_ps`` when it is a whole number of ns (>= 1 ns), else RefusedValue."""
    value = check_int(name, "period_ps", period_ps, MIN_PERIOD_NS * 1000, MAX_PERIOD_NS * 1000)
    if value % 1000:
        raise RefusedValue(
            f"period_ps={value} is not a whole number of ns (the Pulse Streamer's 1 ns grid)",
            instrument=name,
            command="period_ps",
        )
    return value


def _check_levels(name: str, value: Any) -> tuple[float, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise RefusedValue(
            f"intensity_levels_v must be a list of volts, one per intensity class, got {value!r}",
            instrument=name,
            command="intensity_levels_v",
        )
    return tuple(check_number(name, "intensity_levels_v", v, -1.0, 1.0) for v in value)

"""A transmitter twin behind the Swabian Pulse Streamer 8/2's JSON-RPC 2.0 over HTTP.

Served as the device does: ``POST /json-rpc`` on HTTP/1.1 (keep-alive unless the client
asks to close), JSON-RPC 2.0 with positional params, the method names, parameter lists and
return values the vendor client ``pulsestreamer`` 2.1.2 uses (see ``_METHODS``). Errors
are JSON-RPC error objects: -32700 parse error, -32600 invalid request, -32601 method not
found, -32602 invalid params, -32000 the device refused (a bad sequence, a twin refusal).
Bad HTTP gets a 4xx reply and the connection is closed; the server keeps serving.

Sequences (``stream``) are base64 packed ``<IBhh`` steps (duration ns, digital mask, ao0,
ao1). A sequence that encodes a pattern the way the driver does (analog 0 = intensity
level, basis/bit/clock/frame on digital channels, the frame marker on the first pulse
only, whose step lasts one pulse period) is decoded back into a PulsePattern and handed to
the twin: ``load_pattern(pattern, repeat=n_runs == -1)``, with the pulse period and the
marker divider read off the sequence and set on the twin when they differ. A sequence that
is not such a pattern is kept as the device would keep it, but the twin plays nothing.

The binary upload protocol (TCP port 21328 on the device, ``binary_port`` here) is served
too, because the vendor client 2.1.2 sends every ``stream`` there once the firmware is
1.1.0 or newer. A message is a 32-byte header ``<4I2Q`` (magic 0x53504953, command id,
command, 0, payload bytes, 0) and a payload of a 32-byte sub-header, the 9-byte steps and
zero padding. Command 0x0 is ``stream`` (sub-header ``<qQ2h4BQ``: n_runs, steps, idle
ao0, ao1, mask, 3 x 0, slot); command 0x100 is ``upload`` for continuous streaming
(``<qQ2h8BI``: n_runs, steps, idle ao0, ao1, mask, 3 x 0, slot, next action, when, on no
data, 0). The reply is the header ``<4I2Q`` echoing the command id with error code 0 in its
third field (non-zero on a refused sequence) and, for upload, 32 more bytes ``<8i`` whose
first is the return value. The first upload after a reset, ``constant``, ``stream`` or
``forceFinal`` loads the twin's pattern and waits for ``start(slot, slots_to_run)``; the
following ones are appended (``append_pattern``): chunks played back to back.
``isReadyForData`` always answers true, since the twin queues appended chunks itself.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.interfaces.devices import Transmitter
from labctl.interfaces.pattern import PulsePattern
from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link

log = logging.getLogger("sims.wire")

STEP_DTYPE = np.dtype([("ticks", "<u4"), ("digi", "u1"), ("ao0", "<i2"), ("ao1", "<i2")])
SERIAL = "00:26:32:f0:4c:7a"
FPGA_ID = "0x1a2b3c4d5e6f"
FIRMWARE = "2.1.0"
HARDWARE = "1.2"
MEMORY_STEPS = 2_000_000
MAX_HEADER_BYTES = 16384
MAX_BODY_BYTES = 64 << 20  # a full 2e6-step sequence is ~24 MB of base64
MAX_DECODED_PULSES = 1 << 27
BINARY_MAGIC = 0x53504953
BINARY_HEADER = struct.Struct("<4I2Q")
STREAM_HEADER = struct.Struct("<qQ2h4BQ")
UPLOAD_HEADER = struct.Struct("<qQ2h8BI")
COMMAND_STREAM = 0x0
COMMAND_UPLOAD = 0x100
BINARY_ERROR = 1
HTTP_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
}
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
DEVICE_ERROR = -32000


@dataclass(frozen=True, slots=True)
class WireChannels:
    """How patterns sit on the outputs (the driver's mapping, configured the same way)."""

    basis_channel: int = 0
    bit_channel: int = 1
    clock_channel: int = 2
    frame_channel: int = 3
    intensity_levels_v: tuple[float, ...] = (0.8, 0.3, 0.0)

    def codes(self) -> dict[int, int]:
        """Analog-0 code -> intensity class."""
        return {round(0x7FFF * v): k for k, v in enumerate(self.intensity_levels_v)}


class RpcFault(Exception):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class DeviceState:
    """What the Pulse Streamer holds besides the twin: trigger, clock, sequence flags."""

    trigger_start: int = 0
    trigger_rearm: int = 0
    clock_source: int = 0
    clock_param: float = 10.0
    clock_phase: int = 0
    square_wave_mask: int = 0
    has_sequence: bool = False
    started: bool = False
    forced_final: bool = False
    n_runs: int = 0
    decoded: bool = False
    constant: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    final: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    hostname: str = "pulsestreamer"
    network: dict[str, Any] = field(
        default_factory=lambda: {
            "dhcp": True,
            "ip": "169.254.8.2",
            "netmask": "255.255.0.0",
            "gateway": "0.0.0.0",
        }
    )
    calibration: dict[str, float] = field(
        default_factory=lambda: {
            "dc_offset_a0": 0.0,
            "dc_offset_a1": 0.0,
            "slope_a0": 1.0,
            "slope_a1": 1.0,
        }
    )


class PulseStreamerWire:
    """Serves a Transmitter twin as a Pulse Streamer 8/2 (JSON-RPC over HTTP)."""

    def __init__(
        self,
        name: str,
        twin: Transmitter,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        binary_port: int | None = 0,
        path: str = "/json-rpc",
        firmware: str = FIRMWARE,
        channels: WireChannels | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.name = name
        self.twin = twin
        self.path = path
        self.firmware = firmware
        self.channels = channels or WireChannels()
        self._codes = self.channels.codes()
        self._max_body_bytes = max_body_bytes
        self._tcp = TcpEndpoint(host, port, self._connection)
        self._binary = (
            None if binary_port is None else TcpEndpoint(host, binary_port, self._binary_connection)
        )
        self._fresh = True  # the next upload loads a pattern (later ones are appended)
        self.state = DeviceState()
        self.requests = 0  # JSON-RPC requests answered (for tests and cost figures)
        self.body_bytes = 0  # request body bytes received
        self._methods: dict[str, tuple[Sequence[_Param], Callable[..., Awaitable[Outcome]]]] = {
            "getSerial": ((_Param(int, optional=True),), self._get_serial),
            "getFPGAID": ((), self._fixed(FPGA_ID)),
            "getFirmwareVersion": ((), self._fixed(firmware)),
            "getHardwareVersion": ((), self._fixed(HARDWARE)),
            "reset": ((), self._reset),
            "reboot": ((), self._reset),
            "constant": ((_Param(list),), self._constant),
            "stream": ((_Param(str), _Param(int), _Param(list)), self._stream_base64),
            "startNow": ((), self._start_now),
            "start": ((_Param(int), _Param(int)), self._start_slot),
            "forceFinal": ((), self._force_final),
            "isStreaming": ((), self._is_streaming),
            "isRunning": ((), self._is_streaming),
            "hasSequence": ((), self._has_sequence),
            "hasFinished": ((), self._has_finished),
            "isReadyForData": ((_Param(int),), self._is_ready_for_data),
            "setTrigger": ((_Param(int), _Param(int)), self._set_trigger),
            "getTriggerStart": ((), self._state_value("trigger_start")),
            "getTriggerRearm": ((), self._state_value("trigger_rearm")),
            "rearm": ((), self._rearm),
            "selectClock": ((_Param(int),), self._select_clock),
            "getClock": ((), self._state_value("clock_source")),
            "setClkParam": ((_Param(float),), self._set_clock_param),
            "shiftClkPhase": ((_Param(int),), self._shift_clock_phase),
            "setSquareWave125MHz": ((_Param(int),), self._set_square_wave),
            "getTemperature": ((), self._fixed(42.0)),
            "getUnderflow": ((), self._fixed(0)),
            "getStatusRegister": ((), self._fixed(0)),
            "getSupplyState": ((), self._fixed(True)),
            "getStreamingState": ((), self._streaming_state),
            "getSequenceControlData": ((_Param(int),), self._sequence_control_data),
            "setHostname": ((_Param(str),), self._set_hostname),
            "getHostname": ((), self._state_value("hostname")),
            "setNetworkConfiguration": (
                (_Param(bool), _Param(str), _Param(str), _Param(str), _Param(bool)),
                self._set_network,
            ),
            "getNetworkConfiguration": ((_Param(bool),), self._get_network),
            "applyNetworkConfiguration": ((), self._fixed(0)),
            "setAnalogCalibration": (
                (_Param(float), _Param(float), _Param(float), _Param(float)),
                self._set_calibration,
            ),
            "getAnalogCalibration": ((), self._get_calibration),
        }

    async def start(self) -> None:
        """Listen for clients (JSON-RPC, and the binary upload port unless disabled)."""
        await self._tcp.start()
        if self._binary is not None:
            try:
                await self._binary.start()
            except BaseException:
                await self._tcp.stop()
                raise

    async def stop(self) -> None:
        """Close the listeners and every connection."""
        if self._binary is not None:
            await self._binary.stop()
        await self._tcp.stop()

    def endpoints(self) -> dict[str, str]:
        """``control``: host:port of the JSON-RPC HTTP server; ``upload``: the binary port."""
        points = {"control": self._tcp.address}
        if self._binary is not None:
            points["upload"] = self._binary.address
        return points

    @property
    def host(self) -> str:
        """The bound host."""
        return self._tcp.host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        return self._tcp.port

    # -- HTTP -------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not await ensure_link(self.twin):
            return  # the device is unreachable: the connection closes at once
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    await _respond(writer, 400, b"incomplete request", close=True)
                return
            except asyncio.LimitOverrunError:
                await _respond(writer, 431, b"header too large", close=True)
                return
            request = _parse_head(head)
            if isinstance(request, tuple):
                await _respond(writer, request[0], request[1].encode(), close=True)
                return
            if request.method != "POST":
                await _respond(writer, 405, b"only POST is served", close=True)
                return
            if request.path.split("?", 1)[0] != self.path:
                await _respond(writer, 404, b"no such path", close=True)
                return
            if request.length is None:
                await _respond(writer, 411, b"Content-Length required", close=True)
                return
            if request.length > self._max_body_bytes:
                await _respond(writer, 413, b"body too large", close=True)
                return
            body = await reader.readexactly(request.length)
            self.body_bytes += len(body)
            reply = await self._answer(body)
            if reply.fate is Fate.LOST:
                return
            if reply.fate is Fate.SILENT:
                await asyncio.Event().wait()  # never answer; the client's timeout fires
            payload = GARBAGE if reply.fate is Fate.GARBLED else reply.value
            if payload is None:
                await _respond(writer, 204, b"", close=request.close)
            else:
                await _respond(writer, 200, payload, close=request.close, json_body=True)
            if request.close:
                return

    # -- binary upload ----------------------------------------------------------------------

    async def _binary_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if not await ensure_link(self.twin):
            return
        while True:
            try:
                header = await reader.readexactly(BINARY_HEADER.size)
            except asyncio.IncompleteReadError:
                return
            magic, command_id, command, _, length, _ = BINARY_HEADER.unpack(header)
            if magic != BINARY_MAGIC or command not in (COMMAND_STREAM, COMMAND_UPLOAD):
                log.warning("%s: binary message with a bad magic or command: closing", self.name)
                return
            if not 32 <= length <= self._max_body_bytes:
                log.warning("%s: binary message of %d bytes refused: closing", self.name, length)
                return
            payload = await reader.readexactly(length)
            self.body_bytes += BINARY_HEADER.size + length
            outcome = await self._binary_command(command, payload)
            if outcome.fate is Fate.LOST:
                return
            if outcome.fate is Fate.SILENT:
                await asyncio.Event().wait()
            if outcome.fate is Fate.GARBLED:
                writer.write(GARBAGE * 8)
                await writer.drain()
                continue
            error = 0 if outcome.fate is Fate.OK else BINARY_ERROR
            extra = struct.pack("<8i", 0 if error == 0 else -1, *([0] * 7))
            extra_size = len(extra) if command == COMMAND_UPLOAD else 0
            reply = BINARY_HEADER.pack(BINARY_MAGIC, command_id, error, 0, extra_size, 0)
            writer.write(reply + (extra if extra_size else b""))
            await writer.drain()

    async def _binary_command(self, command: int, payload: bytes) -> Outcome:
        if command == COMMAND_STREAM:
            n_runs, n_steps, ao0, ao1, digi, *_ = STREAM_HEADER.unpack_from(payload)
        else:
            n_runs, n_steps, ao0, ao1, digi, *_ = UPLOAD_HEADER.unpack_from(payload)
        data = payload[STREAM_HEADER.size : STREAM_HEADER.size + n_steps * STEP_DTYPE.itemsize]
        if len(data) != n_steps * STEP_DTYPE.itemsize:
            return Outcome(Fate.REFUSED, message="payload shorter than its step count")
        final = [0, digi, ao0, ao1]
        try:
            if command == COMMAND_STREAM:
                return await self._stream(data, n_runs, final)
            return await self._upload(data, n_runs, final)
        except RpcFault as fault:
            return Outcome(Fate.REFUSED, message=fault.message)

    async def _upload(self, raw: bytes, n_runs: int, final: list[Any]) -> Outcome:
        """A continuous-streaming chunk: the first after a reset loads, the rest append."""
        if not self._fresh and self.state.has_sequence and self.state.decoded:
            if n_runs == 0 or n_runs < -1:
                raise RpcFault(INVALID_PARAMS, f"n_runs must be -1 or >= 1, got {n_runs}")
            pattern, _, _ = self._decode(_steps(raw))
            if pattern is None:
                return Outcome(Fate.REFUSED, message="chunk is not a frame-marked pattern")
            if n_runs > 1:
                pattern = PulsePattern.concatenate([pattern] * n_runs)
            return await attempt(self.twin.append_pattern(pattern))
        trigger = self.state.trigger_start
        self.state.trigger_start = 1  # an upload waits for start(slot, ...)
        try:
            outcome = await self._stream(raw, n_runs, final)
        finally:
            self.state.trigger_start = trigger
        self._fresh = False
        return outcome

    # -- JSON-RPC ---------------------------------------------------------------------------

    async def _answer(self, body: bytes) -> Outcome:
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Outcome(Fate.OK, _error_body(None, PARSE_ERROR, "Parse error"))
        if isinstance(message, list):
            if not message:
                return Outcome(Fate.OK, _error_body(None, INVALID_REQUEST, "Invalid Request"))
            replies: list[dict[str, Any]] = []
            for item in message:
                outcome = await self._one(item)
                if outcome.fate is not Fate.OK:
                    return outcome
                if outcome.value is not None:
                    replies.append(outcome.value)
            return Outcome(Fate.OK, _dump(replies) if replies else None)
        outcome = await self._one(message)
        if outcome.fate is Fate.OK and outcome.value is not None:
            return Outcome(Fate.OK, _dump(outcome.value))
        return outcome

    async def _one(self, message: Any) -> Outcome:
        """One request -> Outcome whose value is the reply object (None for a notification)."""
        if (
            not isinstance(message, dict)
            or message.get("jsonrpc") != "2.0"
            or not isinstance(message.get("method"), str)
        ):
            request_id = message.get("id") if isinstance(message, dict) else None
            return Outcome(Fate.OK, _error(request_id, INVALID_REQUEST, "Invalid Request"))
        request_id = message.get("id")
        notification = "id" not in message
        params = message.get("params", [])
        if not isinstance(params, list):
            return Outcome(Fate.OK, _error(request_id, INVALID_PARAMS, "Invalid params"))
        entry = self._methods.get(message["method"])
        if entry is None:
            return Outcome(Fate.OK, _error(request_id, METHOD_NOT_FOUND, "Method not found"))
        spec, handler = entry
        try:
            args = _bind(spec, params)
            outcome = await handler(*args)
        except RpcFault as fault:
            return Outcome(
                Fate.OK, None if notification else _error(request_id, fault.code, fault.message)
            )
        self.requests += 1
        if outcome.fate is Fate.REFUSED:
            return Outcome(Fate.OK, _error(request_id, DEVICE_ERROR, outcome.message))
        if outcome.fate is not Fate.OK:
            return outcome
        if notification:
            return Outcome(Fate.OK, None)
        return Outcome(Fate.OK, {"jsonrpc": "2.0", "id": request_id, "result": outcome.value})

    # -- methods ----------------------------------------------------------------------------

    def _fixed(self, value: Any) -> Callable[[], Awaitable[Outcome]]:
        async def handler() -> Outcome:
            return Outcome(Fate.OK, value)

        return handler

    def _state_value(self, attribute: str) -> Callable[[], Awaitable[Outcome]]:
        async def handler() -> Outcome:
            return Outcome(Fate.OK, getattr(self.state, attribute))

        return handler

    async def _get_serial(self, which: int | None = None) -> Outcome:
        return Outcome(Fate.OK, FPGA_ID if which == 0 else SERIAL)

    async def _reset(self) -> Outcome:
        stopped = await attempt(self.twin.stop())
        if stopped.fate is not Fate.OK:
            return stopped
        self.state = DeviceState(hostname=self.state.hostname, network=self.state.network)
        self._fresh = True
        return Outcome(Fate.OK, 0)

    async def _constant(self, state: list[Any]) -> Outcome:
        self.state.constant = _output_state(state)
        stopped = await attempt(self.twin.stop())
        if stopped.fate is not Fate.OK:
            return stopped
        self.state.has_sequence = False
        self.state.started = False
        self.state.decoded = False
        self._fresh = True
        return Outcome(Fate.OK, 0)

    async def _stream_base64(self, encoded: str, n_runs: int, final: list[Any]) -> Outcome:
        """JSON-RPC ``stream``: the steps come base64 encoded."""
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RpcFault(INVALID_PARAMS, "Invalid params: sequence is not base64") from None
        return await self._stream(raw, n_runs, final)

    async def _stream(self, raw: bytes, n_runs: int, final: list[Any]) -> Outcome:
        final_state = _output_state(final)
        if n_runs == 0 or n_runs < -1:
            raise RpcFault(INVALID_PARAMS, f"n_runs must be -1 (forever) or >= 1, got {n_runs}")
        steps = _steps(raw)
        pattern, period_ns, divider = self._decode(steps)
        if pattern is not None and n_runs > 1:
            if len(pattern) * n_runs > MAX_DECODED_PULSES:
                raise RpcFault(DEVICE_ERROR, "n_runs too large for the simulated transmitter")
            pattern = PulsePattern.concatenate([pattern] * n_runs)
        stopped = await attempt(self.twin.stop())
        if stopped.fate is not Fate.OK:
            return stopped
        self._fresh = True
        state = self.state
        state.has_sequence = True
        state.started = False
        state.forced_final = False
        state.n_runs = n_runs
        state.final = final_state
        state.decoded = pattern is not None
        if pattern is None:
            return Outcome(Fate.OK, 0)
        if period_ns is not None:
            outcome = await self._sync_setting(
                self.twin.get_period_ps, self.twin.set_period_ps, period_ns * 1000
            )
            if outcome.fate is not Fate.OK:
                return outcome
        if divider is not None:
            outcome = await self._sync_setting(
                self.twin.get_marker_divider, self.twin.set_marker_divider, divider
            )
            if outcome.fate is not Fate.OK:
                return outcome
        loaded = await attempt(self.twin.load_pattern(pattern, repeat=n_runs == -1))
        if loaded.fate is not Fate.OK:
            state.has_sequence = False
            return loaded
        if state.trigger_start == 0:  # immediate: the sequence plays as soon as it arrives
            return await self._play()
        return Outcome(Fate.OK, 0)

    async def _sync_setting(
        self,
        read: Callable[[], Awaitable[int]],
        write: Callable[[int], Awaitable[None]],
        value: int,
    ) -> Outcome:
        current = await attempt(read())
        if current.fate is not Fate.OK or current.value == value:
            return current
        return await attempt(write(value))

    async def _play(self) -> Outcome:
        state = self.state
        if not state.has_sequence:
            return Outcome(Fate.OK, 0)
        if state.decoded:
            started = await attempt(self.twin.start())
            if started.fate is not Fate.OK:
                return started
        state.started = True
        state.forced_final = False
        return Outcome(Fate.OK, 0)

    async def _start_now(self) -> Outcome:
        return await self._play()

    async def _start_slot(self, slot_nr: int, slots_to_run: int) -> Outcome:
        if slot_nr not in (0, 1):
            raise RpcFault(INVALID_PARAMS, f"slot_nr must be 0 or 1, got {slot_nr}")
        return await self._play()

    async def _force_final(self) -> Outcome:
        stopped = await attempt(self.twin.stop())
        if stopped.fate is not Fate.OK:
            return stopped
        if self.state.started:
            self.state.forced_final = True
        self.state.started = False
        self._fresh = True
        return Outcome(Fate.OK, 0)

    async def _running(self) -> Outcome:
        if not (self.state.has_sequence and self.state.started):
            return Outcome(Fate.OK, False)
        if not self.state.decoded:
            return Outcome(Fate.OK, True)
        return await attempt(self.twin.is_running())

    async def _is_streaming(self) -> Outcome:
        running = await self._running()
        if running.fate is not Fate.OK:
            return running
        return Outcome(Fate.OK, bool(running.value))

    async def _has_sequence(self) -> Outcome:
        return Outcome(Fate.OK, self.state.has_sequence)

    async def _has_finished(self) -> Outcome:
        if self.state.forced_final:
            return Outcome(Fate.OK, True)
        if not (self.state.has_sequence and self.state.started):
            return Outcome(Fate.OK, False)
        running = await self._running()
        if running.fate is not Fate.OK:
            return running
        return Outcome(Fate.OK, not running.value)

    async def _is_ready_for_data(self, slot_nr: int) -> Outcome:
        """Always ready: the twin queues appended chunks itself (a deep-memory device)."""
        if slot_nr not in (0, 1):
            raise RpcFault(INVALID_PARAMS, f"slot_nr must be 0 or 1, got {slot_nr}")
        return Outcome(Fate.OK, True)

    async def _set_trigger(self, start: int, rearm: int) -> Outcome:
        if not 0 <= start <= 4:
            raise RpcFault(INVALID_PARAMS, f"trigger start must be 0..4, got {start}")
        if rearm not in (0, 1):
            raise RpcFault(INVALID_PARAMS, f"trigger rearm must be 0 or 1, got {rearm}")
        self.state.trigger_start = start
        self.state.trigger_rearm = rearm
        return Outcome(Fate.OK, 0)

    async def _rearm(self) -> Outcome:
        finished = await self._has_finished()
        if finished.fate is not Fate.OK:
            return finished
        if self.state.has_sequence and finished.value:
            self.state.started = False
            self.state.forced_final = False
            return Outcome(Fate.OK, True)
        return Outcome(Fate.OK, False)

    async def _select_clock(self, source: int) -> Outcome:
        if source not in (0, 1, 2):
            raise RpcFault(INVALID_PARAMS, f"clock source must be 0, 1 or 2, got {source}")
        self.state.clock_source = source
        return Outcome(Fate.OK, 0)

    async def _set_clock_param(self, value: float) -> Outcome:
        self.state.clock_param = value
        return Outcome(Fate.OK, 0)

    async def _shift_clock_phase(self, value: int) -> Outcome:
        self.state.clock_phase = value
        return Outcome(Fate.OK, 0)

    async def _set_square_wave(self, mask: int) -> Outcome:
        if not 0 <= mask <= 0xFF:
            raise RpcFault(INVALID_PARAMS, f"channel mask must be 0..255, got {mask}")
        self.state.square_wave_mask = mask
        return Outcome(Fate.OK, 0)

    async def _streaming_state(self) -> Outcome:
        running = await self._running()
        if running.fate is not Fate.OK:
            return running
        finished = await self._has_finished()
        if finished.fate is not Fate.OK:
            return finished
        if running.value:
            state_code = 2  # STREAMING
        elif finished.value:
            state_code = 3  # FINISHED
        else:
            state_code = 0  # IDLING
        waiting = 4 if self.state.has_sequence and not self.state.started else 0
        return Outcome(
            Fate.OK,
            {
                "TotalTime": 0,
                "StreamingTime": 0,
                "UnderflowTime": 0,
                "WaitingDataTime": 0,
                "State": state_code,
                "StateCondition": waiting,
                "ErrorMessage": "",
                "SlotChanges": 0,
            },
        )

    async def _sequence_control_data(self, slot_nr: int) -> Outcome:
        if slot_nr not in (0, 1):
            raise RpcFault(INVALID_PARAMS, f"slot_nr must be 0 or 1, got {slot_nr}")
        has = self.state.has_sequence and slot_nr == 0
        return Outcome(Fate.OK, {"n_runs": self.state.n_runs if has else 0, "has_data": has})

    async def _set_hostname(self, hostname: str) -> Outcome:
        if not hostname or len(hostname) > 63:
            raise RpcFault(INVALID_PARAMS, "hostname must be 1..63 characters")
        self.state.hostname = hostname
        return Outcome(Fate.OK, 0)

    async def _set_network(
        self, dhcp: bool, ip: str, netmask: str, gateway: str, testmode: bool
    ) -> Outcome:
        self.state.network = {"dhcp": dhcp, "ip": ip, "netmask": netmask, "gateway": gateway}
        return Outcome(Fate.OK, 0)

    async def _get_network(self, permanent: bool) -> Outcome:
        return Outcome(Fate.OK, dict(self.state.network))

    async def _set_calibration(
        self, offset_a0: float, offset_a1: float, slope_a0: float, slope_a1: float
    ) -> Outcome:
        self.state.calibration = {
            "dc_offset_a0": offset_a0,
            "dc_offset_a1": offset_a1,
            "slope_a0": slope_a0,
            "slope_a1": slope_a1,
        }
        return Outcome(Fate.OK, 0)

    async def _get_calibration(self) -> Outcome:
        return Outcome(Fate.OK, dict(self.state.calibration))

    # -- sequences --------------------------------------------------------------------------

    def _decode(
        self, steps: npt.NDArray[np.void]
    ) -> tuple[PulsePattern | None, int | None, int | None]:
        """(pattern, period_ns, marker divider) of a pattern sequence, or (None, ...) if not."""
        channels = self.channels
        ticks = steps["ticks"].astype(np.int64)
        digi = steps["digi"]
        frame_bit = np.uint8(1 << channels.frame_channel)
        period_ns = int(ticks[0])
        if period_ns == 0 or not digi[0] & frame_bit:
            log.warning(
                "%s: sequence does not start with a frame-marked pulse: plays nothing", self.name
            )
            return None, None, None
        if np.any(ticks % period_ns):
            log.warning("%s: step durations are not whole pulse periods: plays nothing", self.name)
            return None, None, None
        counts = ticks // period_ns
        total = int(counts.sum())
        if total > MAX_DECODED_PULSES:
            raise RpcFault(DEVICE_ERROR, f"sequence of {total} pulses is too long to simulate")
        codes = steps["ao0"]
        table = np.zeros(1 << 16, dtype=np.uint8)
        known = np.zeros(1 << 16, dtype=bool)
        for code, klass in self._codes.items():
            table[code & 0xFFFF] = klass
            known[code & 0xFFFF] = True
        if not known[codes.view(np.uint16)].all():
            log.warning("%s: analog-0 levels match no intensity class: plays nothing", self.name)
            return None, None, None
        mask = np.repeat(digi, counts)
        intensity = table[np.repeat(codes.view(np.uint16), counts)]
        basis = ((mask >> np.uint8(channels.basis_channel)) & 1).astype(np.uint8)
        bit = ((mask >> np.uint8(channels.bit_channel)) & 1).astype(np.uint8)
        frames = np.flatnonzero(mask & frame_bit)
        if frames.size != 1:
            log.warning(
                "%s: %d frame markers in one sequence: plays nothing", self.name, frames.size
            )
            return None, None, None
        markers = np.flatnonzero(mask & np.uint8(1 << channels.clock_channel))
        divider: int | None = None
        if markers.size >= 2:
            gaps = np.diff(markers)
            divider = int(gaps[0])
            if np.any(gaps != divider):
                log.warning("%s: clock markers are not evenly spaced", self.name)
        return PulsePattern(intensity, basis, bit), period_ns, divider


@dataclass(frozen=True, slots=True)
class _Param:
    """One positional JSON-RPC parameter: its JSON type, optional or not."""

    kind: type
    optional: bool = False


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    length: int | None
    close: bool


def _bind(spec: Sequence[_Param], params: list[Any]) -> list[Any]:
    required = sum(1 for p in spec if not p.optional)
    if not required <= len(params) <= len(spec):
        raise RpcFault(INVALID_PARAMS, f"Invalid params: expected {required}..{len(spec)} params")
    args: list[Any] = []
    for param, value in zip(spec, params, strict=False):
        if param.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if param.kind is int and isinstance(value, bool):
            raise RpcFault(INVALID_PARAMS, "Invalid params: expected an integer")
        if not isinstance(value, param.kind):
            raise RpcFault(INVALID_PARAMS, f"Invalid params: expected {param.kind.__name__}")
        args.append(value)
    return args


def _output_state(state: list[Any]) -> list[int]:
    """``[0, mask, ao0, ao1]`` (the vendor client's form), checked."""
    if len(state) != 4 or any(isinstance(v, bool) or not isinstance(v, int) for v in state):
        raise RpcFault(INVALID_PARAMS, "Invalid params: an output state is [ticks, mask, ao0, ao1]")
    _, mask, ao0, ao1 = state
    if not 0 <= mask <= 0xFF or not all(-0x8000 <= a <= 0x7FFF for a in (ao0, ao1)):
        raise RpcFault(INVALID_PARAMS, "Invalid params: output state out of range")
    return [int(v) for v in state]


def _steps(raw: bytes) -> npt.NDArray[np.void]:
    if not raw or len(raw) % STEP_DTYPE.itemsize:
        raise RpcFault(
            INVALID_PARAMS,
            f"Invalid params: sequence of {len(raw)} bytes is not whole 9-byte steps",
        )
    steps = np.frombuffer(raw, dtype=STEP_DTYPE)
    if steps.size > MEMORY_STEPS:
        raise RpcFault(
            DEVICE_ERROR, f"sequence of {steps.size} steps exceeds the {MEMORY_STEPS}-step memory"
        )
    return steps


def _parse_head(head: bytes) -> _Request | tuple[int, str]:
    if len(head) > MAX_HEADER_BYTES:
        return 431, "header too large"
    try:
        text = head.decode("iso-8859-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return 400, "bad header"
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, "bad request line"
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return 400, "bad header line"
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return 411, "chunked bodies are not served"
    length: int | None = None
    if "content-length" in headers:
        if not headers["content-length"].isdigit():
            return 400, "bad Content-Length"
        length = int(headers["content-length"])
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (parts[2] == "HTTP/1.0" and connection != "keep-alive")
    return _Request(parts[0], parts[1], length, close)


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, *, close: bool, json_body: bool = False
) -> None:
    content_type = "application/json" if json_body else "text/plain"
    head = (
        f"HTTP/1.1 {status} {HTTP_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
    ).encode("ascii")
    writer.write(head + body)
    await writer.drain()


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _error_body(request_id: Any, code: int, message: str) -> bytes:
    return _dump(_error(request_id, code, message))


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")

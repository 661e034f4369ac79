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
import json
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.interfaces.devices import Transmitter
from labctl.interfaces.pattern import PulsePattern
from sims.wire.base import GARBAGE, Fate, Outcome, TcpEndpoint, attempt, ensure_link
from sims.wire.pulsestreamer_format import (
    BINARY_ERROR,
    BINARY_HEADER,
    BINARY_MAGIC,
    COMMAND_STREAM,
    COMMAND_UPLOAD,
    DEVICE_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MAX_BODY_BYTES,
    MAX_DECODED_PULSES,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    STEP_DTYPE,
    STREAM_HEADER,
    UPLOAD_HEADER,
    Param,
    RpcFault,
    WireChannels,
    bind_params,
    decode_pattern,
    decode_steps,
    dump_json,
    error_body,
    output_state,
    parse_head,
    respond,
    rpc_error,
)

log = logging.getLogger("sims.wire")

SERIAL = "00:26:32:f0:4c:7a"
FPGA_ID = "0x1a2b3c4d5e6f"
FIRMWARE = "2.1.0"
HARDWARE = "1.2"


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
        self._max_body_bytes = max_body_bytes
        self._tcp = TcpEndpoint(host, port, self._connection)
        self._binary = (
            None if binary_port is None else TcpEndpoint(host, binary_port, self._binary_connection)
        )
        self._fresh = True  # the next upload loads a pattern (later ones are appended)
        self.state = DeviceState()
        self.requests = 0  # JSON-RPC requests answered (for tests and cost figures)
        self.body_bytes = 0  # request body bytes received
        self._methods: dict[str, tuple[Sequence[Param], Callable[..., Awaitable[Outcome]]]] = {
            "getSerial": ((Param(int, optional=True),), self._get_serial),
            "getFPGAID": ((), self._fixed(FPGA_ID)),
            "getFirmwareVersion": ((), self._fixed(firmware)),
            "getHardwareVersion": ((), self._fixed(HARDWARE)),
            "reset": ((), self._reset),
            "reboot": ((), self._reset),
            "constant": ((Param(list),), self._constant),
            "stream": ((Param(str), Param(int), Param(list)), self._stream),
            "startNow": ((), self._start_now),
            "start": ((Param(int), Param(int)), self._start_slot),
            "forceFinal": ((), self._force_final),
            "isStreaming": ((), self._is_streaming),
            "isRunning": ((), self._is_streaming),
            "hasSequence": ((), self._has_sequence),
            "hasFinished": ((), self._has_finished),
            "isReadyForData": ((Param(int),), self._is_ready_for_data),
            "setTrigger": ((Param(int), Param(int)), self._set_trigger),
            "getTriggerStart": ((), self._state_value("trigger_start")),
            "getTriggerRearm": ((), self._state_value("trigger_rearm")),
            "rearm": ((), self._rearm),
            "selectClock": ((Param(int),), self._select_clock),
            "getClock": ((), self._state_value("clock_source")),
            "setClkParam": ((Param(float),), self._set_clock_param),
            "shiftClkPhase": ((Param(int),), self._shift_clock_phase),
            "setSquareWave125MHz": ((Param(int),), self._set_square_wave),
            "getTemperature": ((), self._fixed(42.0)),
            "getUnderflow": ((), self._fixed(0)),
            "getStatusRegister": ((), self._fixed(0)),
            "getSupplyState": ((), self._fixed(True)),
            "getStreamingState": ((), self._streaming_state),
            "getSequenceControlData": ((Param(int),), self._sequence_control_data),
            "setHostname": ((Param(str),), self._set_hostname),
            "getHostname": ((), self._state_value("hostname")),
            "setNetworkConfiguration": (
                (Param(bool), Param(str), Param(str), Param(str), Param(bool)),
                self._set_network,
            ),
            "getNetworkConfiguration": ((Param(bool),), self._get_network),
            "applyNetworkConfiguration": ((), self._fixed(0)),
            "setAnalogCalibration": (
                (Param(float), Param(float), Param(float), Param(float)),
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
                    await respond(writer, 400, b"incomplete request", close=True)
                return
            except asyncio.LimitOverrunError:
                await respond(writer, 431, b"header too large", close=True)
                return
            request = parse_head(head)
            if isinstance(request, tuple):
                await respond(writer, request[0], request[1].encode(), close=True)
                return
            if request.method != "POST":
                await respond(writer, 405, b"only POST is served", close=True)
                return
            if request.path.split("?", 1)[0] != self.path:
                await respond(writer, 404, b"no such path", close=True)
                return
            if request.length is None:
                await respond(writer, 411, b"Content-Length required", close=True)
                return
            if request.length > self._max_body_bytes:
                await respond(writer, 413, b"body too large", close=True)
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
                await respond(writer, 204, b"", close=request.close)
            else:
                await respond(writer, 200, payload, close=request.close, json_body=True)
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
        encoded = base64.b64encode(data).decode("ascii")
        final = [0, digi, ao0, ao1]
        try:
            if command == COMMAND_STREAM:
                return await self._stream(encoded, n_runs, final)
            return await self._upload(encoded, n_runs, final)
        except RpcFault as fault:
            return Outcome(Fate.REFUSED, message=fault.message)

    async def _upload(self, encoded: str, n_runs: int, final: list[Any]) -> Outcome:
        """A continuous-streaming chunk: the first after a reset loads, the rest append."""
        if not self._fresh and self.state.has_sequence and self.state.decoded:
            if n_runs == 0 or n_runs < -1:
                raise RpcFault(INVALID_PARAMS, f"n_runs must be -1 or >= 1, got {n_runs}")
            pattern, _, _ = decode_pattern(decode_steps(encoded), self.channels, self.name)
            if pattern is None:
                return Outcome(Fate.REFUSED, message="chunk is not a frame-marked pattern")
            if n_runs > 1:
                pattern = PulsePattern.concatenate([pattern] * n_runs)
            return await attempt(self.twin.append_pattern(pattern))
        trigger = self.state.trigger_start
        self.state.trigger_start = 1  # an upload waits for start(slot, ...)
        try:
            outcome = await self._stream(encoded, n_runs, final)
        finally:
            self.state.trigger_start = trigger
        self._fresh = False
        return outcome

    # -- JSON-RPC ---------------------------------------------------------------------------

    async def _answer(self, body: bytes) -> Outcome:
        try:
            message = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Outcome(Fate.OK, error_body(None, PARSE_ERROR, "Parse error"))
        if isinstance(message, list):
            if not message:
                return Outcome(Fate.OK, error_body(None, INVALID_REQUEST, "Invalid Request"))
            replies: list[dict[str, Any]] = []
            for item in message:
                outcome = await self._one(item)
                if outcome.fate is not Fate.OK:
                    return outcome
                if outcome.value is not None:
                    replies.append(outcome.value)
            return Outcome(Fate.OK, dump_json(replies) if replies else None)
        outcome = await self._one(message)
        if outcome.fate is Fate.OK and outcome.value is not None:
            return Outcome(Fate.OK, dump_json(outcome.value))
        return outcome

    async def _one(self, message: Any) -> Outcome:
        """One request -> Outcome whose value is the reply object (None for a notification)."""
        if (
            not isinstance(message, dict)
            or message.get("jsonrpc") != "2.0"
            or not isinstance(message.get("method"), str)
        ):
            request_id = message.get("id") if isinstance(message, dict) else None
            return Outcome(Fate.OK, rpc_error(request_id, INVALID_REQUEST, "Invalid Request"))
        request_id = message.get("id")
        notification = "id" not in message
        params = message.get("params", [])
        if not isinstance(params, list):
            return Outcome(Fate.OK, rpc_error(request_id, INVALID_PARAMS, "Invalid params"))
        entry = self._methods.get(message["method"])
        if entry is None:
            return Outcome(Fate.OK, rpc_error(request_id, METHOD_NOT_FOUND, "Method not found"))
        spec, handler = entry
        try:
            args = bind_params(spec, params)
            outcome = await handler(*args)
        except RpcFault as fault:
            return Outcome(
                Fate.OK, None if notification else rpc_error(request_id, fault.code, fault.message)
            )
        self.requests += 1
        if outcome.fate is Fate.REFUSED:
            return Outcome(Fate.OK, rpc_error(request_id, DEVICE_ERROR, outcome.message))
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
        self.state.constant = output_state(state)
        stopped = await attempt(self.twin.stop())
        if stopped.fate is not Fate.OK:
            return stopped
        self.state.has_sequence = False
        self.state.started = False
        self.state.decoded = False
        self._fresh = True
        return Outcome(Fate.OK, 0)

    async def _stream(self, encoded: str, n_runs: int, final: list[Any]) -> Outcome:
        final_state = output_state(final)
        if n_runs == 0 or n_runs < -1:
            raise RpcFault(INVALID_PARAMS, f"n_runs must be -1 (forever) or >= 1, got {n_runs}")
        steps = decode_steps(encoded)
        pattern, period_ns, divider = decode_pattern(steps, self.channels, self.name)
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

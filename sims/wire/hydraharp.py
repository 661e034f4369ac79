"""A time-tagger twin behind a PicoQuant HydraHarp 400 in T2 mode (HHLib calls + FiFo).

The HydraHarp is driven through PicoQuant's HHLib, whose calls are public (HHLib
manual); the library talks USB, so the wire here is the bridge described in
drivers/picoquant/hydraharp.py: one JSON object a line on a TCP control socket
(``{"call": "HH_SetInputChannelOffset", "args": [0, 1, 500]}`` ->
``{"ret": 0, "values": []}``, errors ``{"ret": -5, "error": "..."}``) and the FiFo's
T2 records on a ZMQ PUSH socket, one message per ``HH_ReadFiFo``: little-endian uint32
records, HydraHarp V2 T2 layout (bit 31 special, bits 25..30 channel, bits 0..24 time in
1 ps units; special channel 63 = overflow, its time field counting wraps of 2**25).

Calls served: HH_GetLibraryVersion, HH_OpenDevice, HH_CloseDevice, HH_Initialize (mode 2
= T2 only), HH_GetHardwareInfo, HH_GetSerialNumber, HH_GetNumOfInputChannels,
HH_GetResolution, HH_GetBaseResolution, HH_SetSyncDiv, HH_SetSyncCFD,
HH_SetSyncChannelOffset, HH_SetInputCFD (mV: level 0..1000, zero cross 0..40),
HH_SetInputChannelOffset (-99 999..99 999 ps, on the twin's channel delay),
HH_SetInputChannelEnable, HH_StartMeas (ms, 1..360 000 000), HH_StopMeas, HH_CTCStatus,
HH_GetCountRate, HH_GetSyncRate, HH_GetWarnings. While a measurement runs the twin's
batches are pumped as records; times count from the measurement's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from labctl.interfaces.tags import TagBatch
from sims.wire.base import GARBAGE, Fate, TcpEndpoint, attempt, ensure_link, log
from sims.wire.pacing import StreamPacer

WRAP = 1 << 25
OFFSET_RANGE_PS = (-99_999, 99_999)
TACQ_RANGE_MS = (1, 360_000_000)
MODE_T2 = 2
READ_TIMEOUT_S = 1.0
ERRORS = {
    "device": (-1, "HH_ERROR_DEVICE_OPEN_FAIL"),
    "argument": (-5, "HH_ERROR_INVALID_ARGUMENT"),
    "mode": (-6, "HH_ERROR_INVALID_MODE"),
    "state": (-16, "HH_ERROR_INSTANCE_RUNNING"),
    "unknown": (-99, "HH_ERROR_UNKNOWN_FUNCTION"),
    "twin": (-21, "HH_ERROR_USB_BADARGS"),
}


class HhError(Exception):
    """A call HHLib refuses: (code, name) from ERRORS."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(detail)
        self.code, self.label = ERRORS[kind]
        self.detail = detail


class RecordEncoder:
    """Tag batches -> HydraHarp V2 T2 records, time counted from the measurement start."""

    def __init__(self, origin_ps: int) -> None:
        self.origin_ps = origin_ps
        self.wraps = 0

    def encode(self, batch: TagBatch) -> bytes:
        """Records of one batch: each click after the overflows that lead to it, then the
        overflows up to the batch's end (vectorized: one pass, no loop per tag)."""
        after = batch.time_ps >= self.origin_ps
        ticks = (batch.time_ps[after] - self.origin_ps).astype(np.int64)
        channel = batch.channel[after].astype(np.int64)
        end_wraps = max(self.wraps, (batch.stop_ps - self.origin_ps) >> 25)
        wraps = np.append(ticks >> 25, end_wraps)  # the end as a last "event"
        jumps = np.diff(wraps, prepend=np.int64(self.wraps))
        self.wraps = int(end_wraps)
        counts = -(-jumps // (WRAP - 1))  # overflow records before each event
        position = np.arange(wraps.size) + np.cumsum(counts)  # where each event goes
        records = np.empty(int(position[-1]) + 1, dtype=np.int64)
        is_overflow = np.ones(records.size, dtype=bool)
        is_overflow[position] = False
        values = np.full(int(counts.sum()), WRAP - 1, dtype=np.int64)
        if values.size:
            values[np.cumsum(counts[counts > 0]) - 1] = jumps[counts > 0] - (
                counts[counts > 0] - 1
            ) * (WRAP - 1)
        records[is_overflow] = (1 << 31) | (63 << 25) | values
        records[position[:-1]] = (channel << 25) | (ticks & (WRAP - 1))
        return records[:-1].astype("<u4").tobytes()  # the end marker is no record


class HydraHarpWire:
    """Serves a TimeTagger twin as a HydraHarp 400 behind its HHLib bridge."""

    def __init__(
        self,
        name: str,
        twin: Any,
        *,
        host: str = "127.0.0.1",
        control_port: int = 0,
        stream_port: int = 0,
    ) -> None:
        self.name = name
        self.twin = twin
        self._host = host
        self._stream_port = stream_port
        self._endpoint = TcpEndpoint(host, control_port, self._connection)
        self._context = zmq.asyncio.Context.instance()
        self._stream: zmq.asyncio.Socket | None = None
        self._stream_address = ""
        self._pump_task: asyncio.Task[None] | None = None
        self.opened = False
        self.mode: int | None = None
        self.cfd: dict[int, tuple[int, int]] = {}
        self.offsets_ps: dict[int, int] = {}
        self.enabled: dict[int, bool] = {}
        self.sync_div = 1
        self._deadline_s = 0.0

    async def start(self) -> None:
        """Listen for control, bind the FiFo stream."""
        await self._endpoint.start()
        sock = self._context.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 4)  # little queued: sim time follows the reader
        if self._stream_port:
            sock.bind(f"tcp://{self._host}:{self._stream_port}")
            port = self._stream_port
        else:
            port = sock.bind_to_random_port(f"tcp://{self._host}")
        self._stream, self._stream_address = sock, f"tcp://{self._host}:{port}"

    async def stop(self) -> None:
        """Stop pumping, close everything."""
        await self._halt()
        await self._endpoint.stop()
        if self._stream is not None:
            self._stream.close(linger=0)
            self._stream = None

    def endpoints(self) -> dict[str, str]:
        """``control`` (JSON lines, TCP) and ``stream`` (ZMQ PULL connects here)."""
        return {"control": self._endpoint.address, "stream": self._stream_address}

    @property
    def measuring(self) -> bool:
        """True while records are pumped."""
        return self._pump_task is not None and not self._pump_task.done()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if not line.strip():
                continue
            if not await ensure_link(self.twin):
                return
            reply = await self._call(line)
            if reply is None:
                return
            writer.write(reply)
            await writer.drain()

    async def _call(self, line: bytes) -> bytes | None:
        try:
            request = json.loads(line)
            call, args = request["call"], request.get("args", [])
            if not isinstance(call, str) or not isinstance(args, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return json.dumps({"ret": -5, "error": "HH_ERROR_INVALID_ARGUMENT"}).encode() + b"\n"
        handler = getattr(self, "_" + call, None) if call.startswith("HH_") else None
        try:
            if handler is None:
                raise HhError("unknown", call)
            values = await handler(*args)
        except HhError as error:
            reply = {"ret": error.code, "error": error.label, "detail": error.detail}
            return json.dumps(reply).encode() + b"\n"
        except _TwinFailed as failed:
            if failed.fate is Fate.LOST:
                return None
            if failed.fate is Fate.GARBLED:
                return GARBAGE + b"\n"
            if failed.fate is Fate.SILENT:
                return b""
            return json.dumps({"ret": -21, "error": failed.message}).encode() + b"\n"
        except TypeError:
            reply = {"ret": -5, "error": "HH_ERROR_INVALID_ARGUMENT", "detail": "argument count"}
            return json.dumps(reply).encode() + b"\n"
        return json.dumps({"ret": 0, "values": values}).encode() + b"\n"

    async def _twin(self, call: Any) -> Any:
        outcome = await attempt(call)
        if outcome.fate is not Fate.OK:
            raise _TwinFailed(outcome.fate, outcome.message)
        return outcome.value

    def _device(self, devidx: Any) -> None:
        if devidx != 0:
            raise HhError("argument", f"device index {devidx!r}")
        if not self.opened:
            raise HhError("device", "device not open")

    def _input(self, devidx: Any, channel: Any) -> int:
        self._device(devidx)
        if not isinstance(channel, int) or not 0 <= channel < int(self.twin.n_channels):
            raise HhError("argument", f"channel {channel!r}")
        return channel

    # -- HHLib calls ----------------------------------------------------------------------

    async def _HH_GetLibraryVersion(self) -> list[Any]:
        return ["3.0"]

    async def _HH_OpenDevice(self, devidx: Any) -> list[Any]:
        if devidx != 0:
            raise HhError("device", f"no device {devidx!r}")
        self.opened = True
        return ["LCTWIN05"]

    async def _HH_CloseDevice(self, devidx: Any) -> list[Any]:
        await self._halt()
        self.opened = False
        return []

    async def _HH_Initialize(self, devidx: Any, mode: Any, refsource: Any) -> list[Any]:
        self._device(devidx)
        if mode != MODE_T2:
            raise HhError("mode", f"mode {mode!r}: this twin records T2 only")
        self.mode = MODE_T2
        return []

    async def _HH_GetHardwareInfo(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return ["HydraHarp 400", "930004", "2.0"]

    async def _HH_GetSerialNumber(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return ["LCTWIN05"]

    async def _HH_GetNumOfInputChannels(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return [int(self.twin.n_channels)]

    async def _HH_GetResolution(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return [float(self.twin.resolution_ps)]

    async def _HH_GetBaseResolution(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return [float(self.twin.resolution_ps), 0]

    async def _HH_SetSyncDiv(self, devidx: Any, div: Any) -> list[Any]:
        self._device(devidx)
        if div not in (1, 2, 4, 8, 16):
            raise HhError("argument", f"sync divider {div!r}")
        self.sync_div = div
        return []

    async def _HH_SetSyncCFD(self, devidx: Any, level: Any, zerox: Any) -> list[Any]:
        self._device(devidx)
        return []

    async def _HH_SetSyncChannelOffset(self, devidx: Any, offset: Any) -> list[Any]:
        self._device(devidx)
        return []

    async def _HH_SetInputCFD(self, devidx: Any, channel: Any, level: Any, zerox: Any) -> list[Any]:
        ch = self._input(devidx, channel)
        if not (isinstance(level, int) and 0 <= level <= 1000 and isinstance(zerox, int)):
            raise HhError("argument", f"CFD level {level!r} mV")
        if not 0 <= zerox <= 40:
            raise HhError("argument", f"CFD zero cross {zerox!r} mV")
        self.cfd[ch] = (level, zerox)
        return []

    async def _HH_SetInputChannelOffset(self, devidx: Any, channel: Any, offset: Any) -> list[Any]:
        ch = self._input(devidx, channel)
        if not isinstance(offset, int) or not OFFSET_RANGE_PS[0] <= offset <= OFFSET_RANGE_PS[1]:
            raise HhError("argument", f"offset {offset!r} ps")
        await self._twin(self.twin.set_channel_delay_ps(ch, offset))
        self.offsets_ps[ch] = offset
        return []

    async def _HH_SetInputChannelEnable(self, devidx: Any, channel: Any, enable: Any) -> list[Any]:
        ch = self._input(devidx, channel)
        self.enabled[ch] = bool(enable)
        return []

    async def _HH_StartMeas(self, devidx: Any, tacq: Any) -> list[Any]:
        self._device(devidx)
        if self.mode != MODE_T2:
            raise HhError("mode", "not initialized in T2 mode")
        if self.measuring:
            raise HhError("state", "a measurement runs")
        if not isinstance(tacq, int) or not TACQ_RANGE_MS[0] <= tacq <= TACQ_RANGE_MS[1]:
            raise HhError("argument", f"tacq {tacq!r} ms")
        await self._twin(self.twin.start_stream())
        loop = asyncio.get_running_loop()
        self._deadline_s = loop.time() + tacq / 1000.0
        self._pump_task = loop.create_task(self._pump())
        return []

    async def _HH_StopMeas(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        await self._halt()
        return []

    async def _HH_CTCStatus(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return [0 if self.measuring else 1]

    async def _HH_GetCountRate(self, devidx: Any, channel: Any) -> list[Any]:
        ch = self._input(devidx, channel)
        rates = await self._twin(self.twin.get_count_rates_hz(1e-3))
        return [round(float(rates[ch]))]

    async def _HH_GetSyncRate(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return [0]

    async def _HH_GetWarnings(self, devidx: Any) -> list[Any]:
        self._device(devidx)
        return [0]

    # -- FiFo -------------------------------------------------------------------------------

    async def _halt(self) -> None:
        task, self._pump_task = self._pump_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self.twin.stop_stream()

    async def _pump(self) -> None:
        sock = self._stream
        assert sock is not None
        encoder: RecordEncoder | None = None
        pacer = StreamPacer()
        loop = asyncio.get_running_loop()
        while loop.time() < self._deadline_s:
            outcome = await attempt(self.twin.read_batch(READ_TIMEOUT_S))
            if outcome.fate is Fate.LOST:
                log.info("%s: twin link lost, FiFo stops", self.name)
                return
            if outcome.fate is not Fate.OK:
                continue
            batch: TagBatch = outcome.value
            if encoder is None:
                encoder = RecordEncoder(batch.start_ps)
            keep = np.array(
                [self.enabled.get(c, True) for c in range(int(self.twin.n_channels))], dtype=bool
            )[batch.channel]
            shown = TagBatch(
                batch.channel[keep], batch.time_ps[keep], batch.start_ps, batch.stop_ps
            )
            gathered = pacer.add(shown)
            if gathered is not None:
                await sock.send(encoder.encode(gathered), copy=False)
            await pacer.pace(batch.stop_ps)
            await asyncio.sleep(0)
        with contextlib.suppress(Exception):
            await self.twin.stop_stream()


class _TwinFailed(Exception):
    def __init__(self, fate: Fate, message: str) -> None:
        super().__init__(message)
        self.fate = fate
        self.message = message or fate.value

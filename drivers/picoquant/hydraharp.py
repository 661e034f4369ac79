"""PicoQuant HydraHarp 400 in T2 mode as labctl's TimeTagger (HHLib calls, T2 records).

Public facts used: the HHLib programming interface (PicoQuant's HHLib manual and demos):
``HH_OpenDevice``, ``HH_Initialize(dev, mode, refsource)`` with mode 2 = T2,
``HH_GetHardwareInfo``, ``HH_GetNumOfInputChannels``, ``HH_GetResolution`` (ps),
``HH_SetInputCFD(dev, ch, level_mV, zerocross_mV)``,
``HH_SetInputChannelOffset(dev, ch, ps)`` (-99 999..99 999 ps), ``HH_StartMeas(dev,
tacq_ms)``, ``HH_StopMeas``, ``HH_GetCountRate(dev, ch)``; and the T2 record format of
``HH_ReadFiFo`` (HydraHarp V2: 32-bit little-endian; bit 31 special, bits 25..30 channel,
bits 0..24 timetag in units of the resolution; a special record with channel 63 is an
overflow whose timetag counts wraps of 2**25, 0 meaning 1; special channels 0 (sync) and
1..15 (markers) carry no click of an input). Times restart at 0 with every
``HH_StartMeas``.

Assumed, because HHLib is a USB library and not a network protocol: the device is
reached through a bridge process next to it that (1) executes HHLib calls sent as one
JSON object a line on a TCP socket, ``{"call": "HH_SetInputChannelOffset", "args": [0,
1, 500]}``, answering ``{"ret": 0, "values": [...]}`` (the call's output parameters) or
``{"ret": <negative HHLib error code>, "error": "<HH_GetErrorString text>"}``, and (2)
pushes every ``HH_ReadFiFo`` buffer unchanged as one message on a ZMQ PUSH socket
(transport option ``stream_address``, default port 5556 of the control host). The
sim's wire twin (sims/wire/hydraharp.py) is such a bridge. The SYNC input is not used:
clicks and Alice's clock marker go to inputs (labctl channel k = input k).

Batches: one per FiFo message; its window starts where the last one ended and ends after
its last record (an overflow record moves the end to its wrap boundary). Each
measurement's times are laid after the previous stream's end, so a restarted stream
never goes back in time. HHLib has no getter for offsets: the driver reports the offset
it set. Rates are ``HH_GetCountRate`` (the device's 100 ms gate), ``integration_s`` is
only checked.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from labctl.instrument.base import (
    DriverBase,
    make_transport,
    require_transport,
    validate_config_settings,
)
from labctl.instrument.settings import Setting
from labctl.instrument.validate import check_channel, check_number, decode_ascii
from labctl.interfaces.build import BuildContext, InstrumentSpec
from labctl.interfaces.errors import ConnectionLost, InstrumentFault, ProtocolError
from labctl.interfaces.instrument import Health
from labctl.interfaces.tags import TagBatch
from labctl.transport.base import Transport

DEVICE = 0
MODE_T2 = 2
OFFSET_RANGE_PS = (-99_999, 99_999)
MAX_INPUTS = 8  # the largest HydraHarp 400; the unit's own count is read at connect
ORDER_STREAM = 10  # a measurement restarts only after the offsets are back
CFD_LEVEL_MV = 50  # HHLib demos' default discriminator level
CFD_ZEROCROSS_MV = 10
TACQ_MS = 360_000_000  # the longest acquisition HHLib accepts (100 h): stop ends it
WRAP = 1 << 25


class FrameSource(Protocol):
    """Where FiFo buffers come from (labctl.transport.zmq_sub.ZmqSubscriber in the lab)."""

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
        """The next buffer; InstrumentTimeout after ``timeout_s``."""
        ...


class HydraHarp400(DriverBase):
    """Driver for the PicoQuant HydraHarp 400 in T2 mode (implements labctl's TimeTagger)."""

    model: ClassVar[str] = "PicoQuant HydraHarp 400"
    settings = (
        # HHLib has no getter for offsets: the one remembered is the one set.
        Setting(
            "delays_ps",
            "integer",
            OFFSET_RANGE_PS,
            read=lambda d: d._offsets_set_ps(),
            channels=MAX_INPUTS,
            apply_channel=lambda d, ch, ps: d._call("HH_SetInputChannelOffset", DEVICE, ch, ps),
        ),
    )

    def __init__(self, name: str, transport: Transport, stream: FrameSource) -> None:
        super().__init__(name, transport)
        self._stream = stream
        self._n_channels = 0
        self._resolution_ps = 1
        self._wraps = 0
        self._origin_ps = 0  # labctl time of the running measurement's record time 0
        self._stop_ps = 0  # end of the last batch returned

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> Self:
        """Build from a station entry; settings: delays_ps (per input)."""
        from labctl.transport.zmq_sub import ZmqSubscriber

        transport_spec = require_transport(spec, ("tcp",))
        name = spec.name
        validated = validate_config_settings(spec, cls.config_validators(name))
        address = transport_spec.options.get("stream_address")
        if address is None:
            address = f"tcp://{transport_spec.address.rsplit(':', 1)[0]}:5556"
        stream = ZmqSubscriber(
            str(address), instrument=name, timeout_s=transport_spec.timeout_s, pattern="pull"
        )
        control = make_transport(spec, transport_spec, driver_options=("stream_address",))
        driver = cls(name, control, stream)
        for key, value in validated.items():
            driver._remember_declared(key, value)
        return driver

    # -- lifecycle ----------------------------------------------------------------------

    async def _identify(self) -> dict[str, str]:
        (serial,) = await self._call("HH_OpenDevice", DEVICE)
        await self._call("HH_Initialize", DEVICE, MODE_T2, 0)
        model, part, version = await self._call("HH_GetHardwareInfo", DEVICE)
        if "HydraHarp" not in str(model):
            raise ProtocolError(
                f"not a HydraHarp: {model!r}", instrument=self.name, command="HH_GetHardwareInfo"
            )
        (n_inputs,) = await self._call("HH_GetNumOfInputChannels", DEVICE)
        (resolution,) = await self._call("HH_GetResolution", DEVICE)
        if not isinstance(n_inputs, int) or not 1 <= n_inputs <= 8:
            raise ProtocolError(
                f"{n_inputs!r} inputs", instrument=self.name, command="HH_GetNumOfInputChannels"
            )
        self._n_channels = n_inputs
        self._resolution_ps = max(1, round(float(resolution)))
        for channel in range(n_inputs):
            await self._call("HH_SetInputCFD", DEVICE, channel, CFD_LEVEL_MV, CFD_ZEROCROSS_MV)
        return {
            "vendor": "PicoQuant",
            "model": str(model),
            "serial": str(serial),
            "part": part,
            "firmware": str(version),
        }

    async def close(self) -> None:
        """Close the FiFo stream and the control link."""
        await self._stream.close()
        await super().close()

    async def snapshot(self) -> dict[str, Any]:
        """Identity, resolution and every input's offset as set."""
        self._require_link("snapshot")
        return {
            "model": self.model,
            **self.identity,
            "resolution_ps": self._resolution_ps,
            **await self._declared_snapshot(),
            "streaming": self._stream.is_open,
        }

    async def safe_state(self) -> None:
        """Stop any measurement (the HydraHarp drives nothing)."""
        await self.stop_stream()

    async def health(self) -> Health:
        """Unhealthy when HH_GetWarnings reports anything; readings: input rates."""
        rates = await self.get_count_rates_hz(1.0)
        (warnings,) = await self._call("HH_GetWarnings", DEVICE)
        readings: dict[str, float | int | str | bool] = {
            f"rate_{c}_hz": r for c, r in enumerate(rates)
        }
        readings["warnings"] = int(warnings)
        ok = int(warnings) == 0
        return Health(
            ok=ok, detail="ok" if ok else f"warnings 0x{int(warnings):x}", readings=readings
        )

    # -- TimeTagger interface -----------------------------------------------------------

    @property
    def n_channels(self) -> int:
        """Inputs (read at connect)."""
        return self._n_channels

    @property
    def resolution_ps(self) -> int:
        """T2 time unit read at connect, picoseconds."""
        return self._resolution_ps

    async def set_channel_delay_ps(self, channel: int, delay_ps: int) -> None:
        """HH_SetInputChannelOffset (-99 999..99 999 ps)."""
        check_channel(self.name, channel, self._n_channels)
        await self._set_declared_channel("delays_ps", channel, delay_ps)

    async def get_channel_delay_ps(self, channel: int) -> int:
        """The offset set on an input (HHLib cannot read it back), picoseconds."""
        self._require_link("get_channel_delay_ps")
        check_channel(self.name, channel, self._n_channels)
        return self._offset_set_ps(channel)

    async def start_stream(self) -> None:
        """Open the FiFo stream, then HH_StartMeas; times continue after the last stream."""
        await self._stream.open()
        self._wraps = 0
        self._origin_ps = self._stop_ps
        await self._call("HH_StartMeas", DEVICE, TACQ_MS)
        # A running measurement is no station setting, but a reconnect resumes it.
        self._remember("streaming", True, self._restart, order=ORDER_STREAM)

    async def stop_stream(self) -> None:
        """HH_StopMeas and drop what was not read."""
        await self._call("HH_StopMeas", DEVICE)
        await self._stream.close()
        self._memory.forget("streaming")

    async def read_batch(self, timeout_s: float) -> TagBatch:
        """The next FiFo buffer as a TagBatch."""
        check_number(self.name, "timeout_s", timeout_s, 0.0, 3600.0)
        buffer = await self._stream.recv(timeout_s)
        if len(buffer) % 4:
            raise ProtocolError(
                f"FiFo buffer of {len(buffer)} bytes is not whole 32-bit records",
                instrument=self.name,
                command="HH_ReadFiFo",
            )
        records = np.frombuffer(buffer, dtype="<u4").astype(np.int64)
        special = (records >> 31) == 1
        channel = (records >> 25) & 63
        timetag = records & (WRAP - 1)
        overflow = special & (channel == 63)
        wraps = np.cumsum(np.where(overflow, np.where(timetag == 0, 1, timetag), 0)) + self._wraps
        ticks = np.where(overflow, wraps * WRAP, wraps * WRAP + timetag)
        self._wraps = int(wraps[-1]) if wraps.size else self._wraps
        clicks = ~special
        if np.any(channel[clicks] >= self._n_channels):
            raise ProtocolError(
                f"input {int(channel[clicks].max())} on a {self._n_channels}-input HydraHarp",
                instrument=self.name,
                command="HH_ReadFiFo",
            )
        time_ps = ticks[clicks] * self._resolution_ps + self._origin_ps
        start_ps = self._stop_ps
        # Any record shows the device's clock got there: an overflow to its wrap boundary,
        # a click, sync or marker to just past its time.
        ends = ticks * self._resolution_ps + np.where(overflow, 0, 1)
        end_ps = int(ends.max(initial=0)) + self._origin_ps
        self._stop_ps = max(start_ps, end_ps)
        return TagBatch(
            channel=channel[clicks].astype(np.uint8),
            time_ps=time_ps.astype(np.int64),
            start_ps=start_ps,
            stop_ps=self._stop_ps,
        )

    async def get_count_rates_hz(self, integration_s: float) -> list[float]:
        """HH_GetCountRate of every input, hertz."""
        check_number(self.name, "integration_s", integration_s, 1e-6, 3600.0)
        rates = []
        for channel in range(self._n_channels):
            (rate,) = await self._call("HH_GetCountRate", DEVICE, channel)
            rates.append(float(rate))
        return rates

    # -- internals ----------------------------------------------------------------------

    def _require_link(self, command: str) -> None:
        """Values kept by the driver are only given while connected, like the device's."""
        if not self.transport.is_open:
            raise ConnectionLost("not connected", instrument=self.name, command=command)

    def _offset_set_ps(self, channel: int) -> int:
        """The offset last set on an input (0, HHLib's default, when none was)."""
        value: int = self.remembered_settings.get(f"delays_ps[{channel}]", 0)
        return value

    async def _offsets_set_ps(self) -> list[int]:
        return [self._offset_set_ps(channel) for channel in range(self._n_channels)]

    async def _restart(self) -> None:
        await self._stream.close()
        await self.start_stream()

    async def _call(self, function: str, *args: int | float) -> list[Any]:
        """One HHLib call through the bridge: its output values, or InstrumentFault."""
        request = json.dumps({"call": function, "args": list(args)}, separators=(",", ":"))
        raw = await self.transport.query(
            request.encode() + b"\n", terminator=b"\n", command=function
        )
        text = decode_ascii(raw, instrument=self.name, command=function)
        try:
            reply = json.loads(text)
            ret = reply["ret"]
        except (ValueError, KeyError, TypeError):
            raise ProtocolError(
                f"not a bridge reply: {text[:80]!r}", instrument=self.name, command=function
            ) from None
        if ret != 0:
            raise InstrumentFault(
                f"{reply.get('error', 'error')} ({ret})", instrument=self.name, command=function
            )
        values = reply.get("values", [])
        if not isinstance(values, list):
            raise ProtocolError(
                f"values must be a list, got {values!r}", instrument=self.name, command=function
            )
        return values

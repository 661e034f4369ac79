"""Acceptance: Swabian's own client ``pulsestreamer`` 2.1.2, unmodified, drives the wire twin.

The client hard-codes port 8050 (JSON-RPC) and 21328 (binary upload), so each test binds
the twin on a random loopback address 127.x.y.z picked at run time. The client blocks
(requests, sockets), so it runs in a worker thread while the twin serves on the loop.
What the twin received is checked against the PulsePattern the sequence describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import numpy as np
import pulsestreamer
import pytest
from pulsestreamer import (
    ClockSource,
    OutputState,
    TriggerRearm,
    TriggerStart,
)

from labctl.interfaces.pattern import PulsePattern, seeded_pattern
from sims.wire.pulsestreamer import PulseStreamerWire
from tests.sims.wire.memory_transmitter import MemoryTransmitter

T = TypeVar("T")
PERIOD_NS = 10
LEVELS_V = (0.8, 0.3, 0.0)
BASIS, BIT, CLOCK, FRAME = 0, 1, 2, 3


async def serve_on_random_loopback(twin: MemoryTransmitter, **options: Any) -> PulseStreamerWire:
    """The twin on 127.x.y.z:8050 (+ :21328), retrying another address when one is taken."""
    for _ in range(20):
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        wire = PulseStreamerWire(
            "transmitter", twin, host=host, port=8050, binary_port=21328, **options
        )
        try:
            await wire.start()
        except OSError:
            continue
        return wire
    raise RuntimeError("no free loopback address for ports 8050/21328")


@contextlib.asynccontextmanager
async def served(**options: Any) -> AsyncIterator[tuple[MemoryTransmitter, PulseStreamerWire]]:
    twin = MemoryTransmitter()
    wire = await serve_on_random_loopback(twin, **options)
    try:
        yield twin, wire
    finally:
        await wire.stop()


async def client(wire: PulseStreamerWire, work: Callable[[Any], T]) -> T:
    """Run ``work(PulseStreamer(host))`` in a thread; the client is closed afterwards."""

    def run() -> T:
        device = pulsestreamer.PulseStreamer(wire.host)
        try:
            return work(device)
        finally:
            if device._socket is not None:
                device._socket.close()
                device._socket = None

    return await asyncio.wait_for(asyncio.to_thread(run), 30.0)


def vendor_sequence(device: Any, pattern: PulsePattern, divider: int) -> Any:
    """``pattern`` built channel by channel with setDigital/setAnalog (one pulse = 10 ns)."""
    n = len(pattern)
    clock = (np.arange(n) % divider == 0).astype(int)
    frame = np.zeros(n, int)
    frame[0] = 1
    seq = device.createSequence()
    seq.setDigital(BASIS, [(PERIOD_NS, int(v)) for v in pattern.basis])
    seq.setDigital(BIT, [(PERIOD_NS, int(v)) for v in pattern.bit])
    seq.setDigital(CLOCK, [(PERIOD_NS, int(v)) for v in clock])
    seq.setDigital(FRAME, [(PERIOD_NS, int(v)) for v in frame])
    seq.setAnalog(0, [(PERIOD_NS, LEVELS_V[int(k)]) for k in pattern.intensity])
    return seq


def same(a: PulsePattern | None, b: PulsePattern) -> bool:
    assert a is not None
    return bool(
        np.array_equal(a.intensity, b.intensity)
        and np.array_equal(a.basis, b.basis)
        and np.array_equal(a.bit, b.bit)
    )


PATTERN = seeded_pattern(200, [0.6, 0.3, 0.1], 0.5, seed=11)


async def test_identity_and_hardware_queries() -> None:
    async with served() as (_, wire):

        def work(device: Any) -> tuple[Any, ...]:
            return (
                device.getSerial(),
                device.getFPGAID(),
                device.getFirmwareVersion(),
                device.getHardwareVersion(),
                device.getClock(),
                device.getStreamingState()["State"].name,
                device._has_binary,
            )

        serial, fpga, firmware, hardware, clock, state, binary = await client(wire, work)
    assert serial == "00:26:32:f0:4c:7a"
    assert fpga.startswith("0x")
    assert (firmware, hardware) == ("2.1.0", "1.2")
    assert clock is ClockSource.INTERNAL
    assert state == "IDLING"
    assert binary is True


async def test_constant_output_stops_the_transmitter() -> None:
    async with served() as (twin, wire):
        await client(wire, lambda d: d.constant(OutputState([1, 2], 0.5, -0.25)))
        assert wire.state.constant == [0, 0b110, round(0x7FFF * 0.5), round(-0x7FFF * 0.25)]
        assert wire.state.has_sequence is False
        assert twin.calls[-1] == "stop"


def stream_and_play(device: Any, divider: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    device.setTrigger(TriggerStart.SOFTWARE, TriggerRearm.AUTO)
    seen["trigger"] = (device.getTriggerStart(), device.getTriggerRearm())
    device.stream(vendor_sequence(device, PATTERN, divider), device.REPEAT_INFINITELY)
    seen["armed"] = (device.hasSequence(), device.isStreaming(), device.hasFinished())
    device.startNow()
    seen["playing"] = (device.isStreaming(), device.hasFinished())
    device.forceFinal()
    seen["forced"] = (device.isStreaming(), device.hasFinished())
    seen["rearmed"] = device.rearm()
    device.reset()
    seen["reset"] = (device.hasSequence(), device.getTriggerStart())
    return seen


@pytest.mark.parametrize("firmware", ["2.1.0", "1.0.2"], ids=["binary-stream", "json-stream"])
async def test_sequence_streams_and_decodes_to_the_pattern(firmware: str) -> None:
    async with served(firmware=firmware) as (twin, wire):
        seen = await client(wire, lambda d: stream_and_play(d, divider=8))
        calls = twin.calls
    assert seen["trigger"] == (TriggerStart.SOFTWARE, TriggerRearm.AUTO)
    assert seen["armed"] == (True, False, False)
    assert seen["playing"] == (True, False)
    assert seen["forced"] == (False, True)
    assert seen["rearmed"] is True
    assert seen["reset"] == (False, TriggerStart.IMMEDIATE)
    assert same(twin.pattern, PATTERN)
    assert twin.repeat is True
    assert (twin.period_ps, twin.divider) == (PERIOD_NS * 1000, 8)
    assert calls.count("start") == 1 and "load_pattern" in calls


async def test_immediate_trigger_plays_on_arrival_and_finite_runs_repeat() -> None:
    async with served() as (twin, wire):

        def work(device: Any) -> bool:
            device.stream(vendor_sequence(device, PATTERN, 8), 3)
            return bool(device.isStreaming())

        playing = await client(wire, work)
    assert playing is True
    assert twin.repeat is False
    assert same(twin.pattern, PulsePattern.concatenate([PATTERN] * 3))


async def test_continuous_streaming_upload_appends_chunks() -> None:
    second = seeded_pattern(120, [0.6, 0.3, 0.1], 0.5, seed=12)
    async with served() as (twin, wire):

        def work(device: Any) -> tuple[Any, ...]:
            first = device.upload(device.AUTO, vendor_sequence(device, PATTERN, 8), 1)
            device.start(0, device.REPEAT_INFINITELY)
            ready = device.isReadyForData()
            then = device.upload(device.AUTO, vendor_sequence(device, second, 8), 1)
            return first, then, ready, device.isStreaming()

        first, then, ready, streaming = await client(wire, work)
    assert (first, then) == (0, 0)
    assert isinstance(ready, bool)
    assert streaming is True
    assert same(twin.pattern, PATTERN)
    assert len(twin.chunks) == 1 and same(twin.chunks[0], second)


async def test_triggers_clock_and_network_settings_round_trip() -> None:
    async with served() as (_, wire):

        def work(device: Any) -> tuple[Any, ...]:
            device.setTrigger(TriggerStart.HARDWARE_RISING, TriggerRearm.MANUAL)
            device.selectClock(ClockSource.EXT_10MHZ)
            device.setHostname("alice-ps")
            device.setSquareWave125MHz([0, 7])
            return (
                device.getTriggerStart(),
                device.getTriggerRearm(),
                device.getClock(),
                device.getHostname(),
                device.getNetworkConfiguration(),
                device.getAnalogCalibration(),
            )

        start, rearm, clock, hostname, network, calibration = await client(wire, work)
    assert (start, rearm) == (TriggerStart.HARDWARE_RISING, TriggerRearm.MANUAL)
    assert clock is ClockSource.EXT_10MHZ
    assert hostname == "alice-ps"
    assert wire.state.square_wave_mask == 0x81
    assert network["dhcp"] is True
    assert calibration["slope_a0"] == 1.0


async def test_unknown_method_is_a_json_rpc_error_the_client_raises() -> None:
    async with served() as (_, wire):

        def work(device: Any) -> str:
            try:
                device.proxy.selfDestruct()
            except Exception as exc:  # tinyrpc's RPCError
                return str(exc)
            return "no error"

        message = await client(wire, work)
        assert "Method not found" in message
        assert await client(wire, lambda d: d.getSerial()) == "00:26:32:f0:4c:7a"

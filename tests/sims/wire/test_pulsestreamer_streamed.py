"""The Pulse Streamer driver in continuous-streaming mode (STREAMED) against its wire twin:
the first chunk goes to slot 0 over the binary upload port, later chunks alternate slots
and reach the twin as appended patterns, with markers continuing across chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.swabian.pulsestreamer import PulseStreamer
from labctl.interfaces import ConfigError, InstrumentFault
from labctl.interfaces.pattern import PatternMode, PulsePattern, seeded_pattern
from sims.wire.pulsestreamer import PulseStreamerWire
from tests.sims.wire.memory_transmitter import MemoryTransmitter
from tests.sims.wire.test_pulsestreamer_driver import build_driver, same

DESIGN = ([0.7, 0.2, 0.1], 0.5)
STREAMED = {"period_ps": 8000, "marker_divider": 16}


@dataclass
class Rig:
    twin: MemoryTransmitter
    wire: PulseStreamerWire
    driver: PulseStreamer


async def serve(firmware: str = "2.1.0") -> tuple[MemoryTransmitter, PulseStreamerWire]:
    twin = MemoryTransmitter()
    wire = PulseStreamerWire("transmitter", twin, firmware=firmware)
    await wire.start()
    return twin, wire


def driver_for(wire: PulseStreamerWire) -> PulseStreamer:
    endpoints = wire.endpoints()
    upload_port = int(endpoints["upload"].rsplit(":", 1)[1])
    return build_driver(endpoints["control"], dict(STREAMED), upload_port=upload_port)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    twin, wire = await serve()
    driver = driver_for(wire)
    await driver.connect()
    try:
        yield Rig(twin, wire, driver)
    finally:
        await driver.close()
        await wire.stop()


async def test_mode_memory_and_snapshot(rig: Rig) -> None:
    assert rig.driver.pattern_mode is PatternMode.STREAMED
    assert rig.driver.memory_pulses == 1_000_000
    snapshot = await rig.driver.snapshot()
    assert snapshot["pattern_mode"] == "streamed"


async def test_chunks_play_back_to_back(rig: Rig) -> None:
    chunks = [seeded_pattern(5000 + 7 * k, *DESIGN, seed=20 + k) for k in range(4)]
    await rig.driver.load_pattern(chunks[0], repeat=False)
    await rig.driver.start()
    for chunk in chunks[1:]:
        await rig.driver.append_pattern(chunk)
    assert rig.twin.running
    assert rig.twin.repeat is False
    assert same(rig.twin.pattern, chunks[0])  # type: ignore[arg-type]
    assert len(rig.twin.chunks) == 3
    assert all(same(got, sent) for got, sent in zip(rig.twin.chunks, chunks[1:], strict=True))
    assert (rig.twin.period_ps, rig.twin.divider) == (8000, 16)
    assert await rig.driver.is_running()
    assert (await rig.driver.snapshot())["streamed_pulses"] == sum(len(c) for c in chunks)
    await rig.driver.stop()
    assert not rig.twin.running
    with pytest.raises(InstrumentFault, match="load_pattern first"):
        await rig.driver.append_pattern(chunks[0])
    await rig.driver.start()  # the armed stream plays again from its first chunk
    assert rig.twin.running


async def test_binary_upload_costs_nine_bytes_a_step(rig: Rig) -> None:
    n = 160_000
    flat = PulsePattern(np.zeros(n, np.uint8), np.zeros(n, np.uint8), np.zeros(n, np.uint8))
    upload = rig.driver._upload
    assert upload is not None
    before = upload.bytes_sent
    await rig.driver.load_pattern(flat, repeat=True)
    steps = 2 * n // 16  # marker pulse + one merged run per 16 pulses
    assert upload.bytes_sent - before == 32 + 32 + steps * 9 + (-(32 + steps * 9) % 32)
    assert same(rig.twin.pattern, flat)  # type: ignore[arg-type]
    assert rig.twin.repeat is True


async def test_append_refusals(rig: Rig) -> None:
    chunk = seeded_pattern(100, *DESIGN, seed=30)
    with pytest.raises(InstrumentFault, match="nothing loaded"):
        await rig.driver.append_pattern(chunk)
    await rig.driver.load_pattern(chunk, repeat=True)
    with pytest.raises(InstrumentFault, match="cycles"):
        await rig.driver.append_pattern(chunk)
    await rig.driver.load_pattern(chunk, repeat=False)
    too_long = PulsePattern(*(np.zeros(1_000_001, np.uint8) for _ in range(3)))
    with pytest.raises(ValueError, match=r"1000001 pulses exceeds .* 1000000 pulses \(streamed"):
        await rig.driver.append_pattern(too_long)
    assert rig.twin.chunks == []


async def test_old_firmware_is_refused_at_connect() -> None:
    _, wire = await serve(firmware="2.0.4")
    driver = driver_for(wire)
    try:
        with pytest.raises(InstrumentFault, match=r"firmware 2\.0\.4 .*streaming: repeating"):
            await driver.connect()
    finally:
        await driver.close()
        await wire.stop()


def test_streaming_setting_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"settings\.streaming.*continuous, repeating"):
        build_driver("127.0.0.1:8050", {"streaming": "sometimes"})
    with pytest.raises(ConfigError, match=r"options\.upload_port"):
        build_driver("127.0.0.1:8050", {}, upload_port=0)


async def test_upload_failures_are_typed(rig: Rig) -> None:
    from labctl.interfaces import ConnectionLost, InstrumentTimeout

    chunk = seeded_pattern(200, *DESIGN, seed=40)
    rig.twin.faults["load_pattern"] = InstrumentFault("no", instrument="twin", command="load")
    with pytest.raises(InstrumentFault, match=r"transmitter \[upload\]: .*error code 1"):
        await rig.driver.load_pattern(chunk, repeat=False)
    await rig.driver.load_pattern(chunk, repeat=False)  # the link still works
    rig.twin.faults["append_pattern"] = InstrumentTimeout("late", instrument="twin")
    with pytest.raises(InstrumentTimeout, match=r"transmitter \[upload\]"):
        await rig.driver.append_pattern(chunk)
    await rig.driver.append_pattern(chunk)  # on a fresh upload connection
    assert len(rig.twin.chunks) == 1
    await rig.wire.stop()
    with pytest.raises(ConnectionLost, match="transmitter"):
        await rig.driver.append_pattern(chunk)


async def test_pattern_states_never_reach_the_logs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    import base64
    import logging

    from drivers.swabian.sequence import encode_steps

    chunk = seeded_pattern(3000, *DESIGN, seed=50)
    raw = encode_steps(chunk, rig.driver.channels, period_ns=8, marker_divider=16).tobytes()
    with caplog.at_level(logging.DEBUG):
        await rig.driver.load_pattern(chunk, repeat=False)
        await rig.driver.append_pattern(chunk)
    assert "upload slot 0" in caplog.text  # the link does log, sizes only
    assert base64.b64encode(raw)[:16].decode() not in caplog.text
    assert repr(raw[9:40])[2:-1] not in caplog.text

"""The Pulse Streamer driver against its wire twin over real HTTP on loopback: patterns
arrive decoded exactly, the device's state follows start/stop, and every error path gives
the typed error naming instrument and method while the server keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.swabian.pulsestreamer import PulseStreamer
from labctl.interfaces import (
    BuildContext,
    ConnectionLost,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    TransportSpec,
)
from labctl.interfaces.devices import Transmitter
from labctl.interfaces.pattern import PatternMode, PulsePattern, seeded_pattern
from labctl.transport.jsonrpc_http import JsonRpcError
from sims.wire.pulsestreamer import PulseStreamerWire
from tests.sims.wire.memory_transmitter import MemoryTransmitter

DESIGN = ([0.7, 0.2, 0.1], 0.5)


@dataclass
class Rig:
    twin: MemoryTransmitter
    wire: PulseStreamerWire
    driver: PulseStreamer


REPEATING = {"period_ps": 8000, "marker_divider": 16, "streaming": "repeating"}


def build_driver(
    address: str, settings: dict[str, object] | None = None, upload_port: int | None = None
) -> PulseStreamer:
    options: dict[str, object] = {} if upload_port is None else {"upload_port": upload_port}
    spec = InstrumentSpec(
        name="transmitter",
        class_path="drivers.swabian.pulsestreamer:PulseStreamer",
        settings=settings if settings is not None else dict(REPEATING),
        transport=TransportSpec(kind="tcp", address=address, timeout_s=1.0, options=options),
    )
    return PulseStreamer.from_config(spec, BuildContext(lab="lab", node="alice"))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    twin = MemoryTransmitter()
    wire = PulseStreamerWire("transmitter", twin, binary_port=None)
    await wire.start()
    driver = build_driver(wire.endpoints()["control"])
    await driver.connect()
    try:
        yield Rig(twin, wire, driver)
    finally:
        await driver.close()
        await wire.stop()


def same(a: PulsePattern, b: PulsePattern) -> bool:
    return bool(
        np.array_equal(a.intensity, b.intensity)
        and np.array_equal(a.basis, b.basis)
        and np.array_equal(a.bit, b.bit)
    )


async def test_identity_mode_and_memory(rig: Rig) -> None:
    driver = rig.driver
    assert isinstance(driver, Transmitter)
    assert driver.identity["serial"] == "00:26:32:f0:4c:7a"
    assert driver.identity["firmware"] == "2.1.0"
    assert driver.pattern_mode is PatternMode.REPEATING
    assert driver.memory_pulses == 2_000_000
    assert rig.wire.state.trigger_start == 1  # software start: nothing plays on load


async def test_pattern_arrives_decoded_with_period_and_divider(rig: Rig) -> None:
    pattern = seeded_pattern(20_000, *DESIGN, seed=5)
    await rig.driver.load_pattern(pattern, repeat=True)
    assert rig.twin.pattern is not None
    assert same(rig.twin.pattern, pattern)
    assert rig.twin.repeat is True
    assert rig.twin.period_ps == 8000
    assert rig.twin.divider == 16
    assert not await rig.driver.is_running()
    await rig.driver.start()
    assert await rig.driver.is_running()
    assert rig.twin.running
    await rig.driver.stop()
    assert not await rig.driver.is_running()
    assert not rig.twin.running


async def test_settings_change_reaches_the_twin_with_the_next_pattern(rig: Rig) -> None:
    await rig.driver.set_period_ps(24_000)
    await rig.driver.set_marker_divider(3)
    assert await rig.driver.get_period_ps() == 24_000
    assert await rig.driver.get_marker_divider() == 3
    pattern = seeded_pattern(100, *DESIGN, seed=6)
    await rig.driver.load_pattern(pattern, repeat=False)
    assert rig.twin.repeat is False
    assert (rig.twin.period_ps, rig.twin.divider) == (24_000, 3)
    assert rig.twin.pattern is not None and same(rig.twin.pattern, pattern)


async def test_identical_pulses_merge_on_the_wire(rig: Rig) -> None:
    n = 100_000
    flat = PulsePattern(
        np.zeros(n, np.uint8), np.ones(n, np.uint8), np.zeros(n, np.uint8)
    )  # one state throughout: only the markers split the runs
    before = rig.wire.body_bytes
    await rig.driver.load_pattern(flat, repeat=True)
    sent = rig.wire.body_bytes - before
    # 2 steps per 16 pulses (marker pulse + merged run): 12,500 steps of 12 base64 bytes,
    # against 1.2 MB for one step per pulse.
    assert 150_000 <= sent < 151_000
    assert rig.twin.pattern is not None and same(rig.twin.pattern, flat)


async def test_refusals_name_the_numbers_and_touch_nothing(rig: Rig) -> None:
    requests = rig.wire.requests
    too_long = PulsePattern(*(np.zeros(2_000_001, np.uint8) for _ in range(3)))
    with pytest.raises(ValueError, match=r"2000001 pulses exceeds .* 2000000 pulses \(repeating"):
        await rig.driver.load_pattern(too_long, repeat=True)
    with pytest.raises(ValueError, match="no pulses"):
        await rig.driver.load_pattern(PulsePattern.empty(), repeat=True)
    bad_class = PulsePattern(np.array([3], np.uint8), np.zeros(1, np.uint8), np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="intensity class 3"):
        await rig.driver.load_pattern(bad_class, repeat=True)
    with pytest.raises(ValueError, match="whole number of ns"):
        await rig.driver.set_period_ps(8500)
    with pytest.raises(ValueError, match="period_ps"):
        await rig.driver.set_period_ps(0)
    with pytest.raises(InstrumentFault, match=r"append_pattern needs .*REPEATING"):
        await rig.driver.append_pattern(seeded_pattern(10, *DESIGN, seed=1))
    assert rig.wire.requests == requests


async def test_secret_states_stay_out_of_errors(rig: Rig) -> None:
    pattern = seeded_pattern(64, *DESIGN, seed=7)
    rig.twin.faults["load_pattern"] = InstrumentFault(
        "sequence refused", instrument="twin", command="load"
    )
    with pytest.raises(JsonRpcError) as caught:
        await rig.driver.load_pattern(pattern, repeat=True)
    assert caught.value.code == -32000
    text = str(caught.value)
    assert "transmitter [stream]" in text
    assert "sequence refused" in text
    assert len(text) < 200  # the method name, never the base64 states


async def test_safe_state_stops_and_zeroes(rig: Rig) -> None:
    await rig.driver.load_pattern(seeded_pattern(100, *DESIGN, seed=8), repeat=True)
    await rig.driver.start()
    await rig.driver.safe_state()
    assert not rig.twin.running
    assert rig.wire.state.constant == [0, 0, 0, 0]
    assert rig.wire.state.has_sequence is False
    with pytest.raises(InstrumentFault, match="no pattern loaded"):
        await rig.driver.start()


async def test_snapshot_and_health(rig: Rig) -> None:
    await rig.driver.load_pattern(seeded_pattern(1000, *DESIGN, seed=9), repeat=True)
    snap = await rig.driver.snapshot()
    assert snap["pattern_mode"] == "repeating"
    assert snap["memory_pulses"] == 2_000_000
    assert snap["period_ps"] == 8000
    settings = ["period_ps", "marker_divider", "intensity_levels_v", "off_level_v"]
    outputs = ["basis_channel", "bit_channel", "clock_channel", "frame_channel"]
    assert list(snap)[list(snap).index("memory_pulses") + 1 :][:8] == settings + outputs
    assert [snap[key] for key in settings[1:] + outputs] == [16, [0.8, 0.3, 0.0], 0.0, 0, 1, 2, 3]
    assert snap["loaded_pulses"] == 1000 and snap["has_sequence"] is True
    assert snap["trigger_start"] == 1
    json.dumps(snap)
    health = await rig.driver.health()
    assert health.ok and health.readings["underflow"] == 0


async def test_calls_share_one_keep_alive_connection(rig: Rig) -> None:
    connections = len(rig.wire._tcp._writers)
    for _ in range(5):
        await rig.driver.is_running()
    assert connections == len(rig.wire._tcp._writers) == 1


async def test_unknown_method_and_bad_params_are_json_rpc_errors(rig: Rig) -> None:
    transport = rig.driver.transport
    assert hasattr(transport, "call")
    with pytest.raises(JsonRpcError) as unknown:
        await transport.call("selfDestruct")
    assert unknown.value.code == -32601
    assert "transmitter [selfDestruct]" in str(unknown.value)
    with pytest.raises(JsonRpcError) as bad:
        await transport.call("setTrigger", ["soon"])
    assert bad.value.code == -32602
    assert await rig.driver.is_running() is False  # the link still works


async def test_silent_twin_times_out_then_recovers(rig: Rig) -> None:
    rig.twin.faults["is_running"] = InstrumentTimeout("no answer", instrument="twin")
    await rig.driver.load_pattern(seeded_pattern(10, *DESIGN, seed=2), repeat=True)
    await rig.driver.start()
    with pytest.raises(InstrumentTimeout, match=r"transmitter \[isStreaming\]"):
        await rig.driver.is_running()
    assert await rig.driver.is_running() is True  # a fresh connection after the timeout


async def test_server_gone_gives_connection_lost(rig: Rig) -> None:
    await rig.wire.stop()
    with pytest.raises(ConnectionLost, match="transmitter"):
        await rig.driver.is_running()


async def test_idle_connection_closed_by_server_is_reopened(rig: Rig) -> None:
    rig.wire._tcp.drop_connections()
    await asyncio.sleep(0.05)
    assert await rig.driver.is_running() is False


async def raw_exchange(address: str, data: bytes) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 2.0)
    writer.close()
    return reply


async def test_bad_requests_get_errors_and_the_server_keeps_serving(rig: Rig) -> None:
    address = rig.wire.endpoints()["control"]
    garbage = await raw_exchange(address, b"\xfe\xff garbage\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400")
    huge = await raw_exchange(
        address, b"POST /json-rpc HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"
    )
    assert huge.startswith(b"HTTP/1.1 413")
    wrong_path = await raw_exchange(address, b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert wrong_path.startswith(b"HTTP/1.1 404")
    body = b"{not json"
    bad_json = await raw_exchange(
        address,
        b"POST /json-rpc HTTP/1.1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body),
    )
    assert bad_json.startswith(b"HTTP/1.1 200")
    assert json.loads(bad_json.split(b"\r\n\r\n", 1)[1])["error"]["code"] == -32700
    assert await rig.driver.is_running() is False


async def test_from_config_refuses_bad_entries() -> None:
    from labctl.interfaces import ConfigError

    with pytest.raises(ConfigError, match=r"settings\.period_ps.*whole number of ns"):
        build_driver("127.0.0.1:8050", {"period_ps": 8500})
    with pytest.raises(ConfigError, match=r"settings\.frobnicate.*unknown setting"):
        build_driver("127.0.0.1:8050", {"frobnicate": 1})
    with pytest.raises(ConfigError, match="distinct"):
        build_driver("127.0.0.1:8050", {"basis_channel": 2, "clock_channel": 2})
    with pytest.raises(ConfigError, match=r"settings\.intensity_levels_v: .*\[1\]=1\.5 is outside"):
        build_driver("127.0.0.1:8050", {"intensity_levels_v": [0.5, 1.5]})
    with pytest.raises(ConfigError, match=r"settings\.clock_channel: .*clock_channel=8"):
        build_driver("127.0.0.1:8050", {"clock_channel": 8})
    with pytest.raises(ConfigError, match="distinct"):
        build_driver("127.0.0.1:8050", {"intensity_levels_v": [0.5, 0.5]})
    with pytest.raises(ConfigError, match=r"transport\.address"):
        build_driver("no-port", {})


async def test_twin_serve_maps_a_transmitter_to_a_pulse_streamer() -> None:
    from sims.wire.serve import ServeSettings, WireTwins, build_servers

    (default,) = build_servers({"transmitter": MemoryTransmitter()}, ServeSettings())
    assert isinstance(default, PulseStreamerWire)
    assert default.endpoints() == {"control": "127.0.0.1:47030", "upload": "127.0.0.1:47031"}
    twin = MemoryTransmitter()
    async with WireTwins({"transmitter": twin}, ServeSettings(any_port=True)) as served:
        address = served.endpoints()["transmitter"]["control"]
        driver = build_driver(address)
        async with driver:
            await driver.load_pattern(seeded_pattern(50, *DESIGN, seed=3), repeat=False)
            await driver.start()
            assert twin.running


async def test_stream_body_never_reaches_the_logs(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from drivers.swabian.sequence import encode_base64, encode_steps

    pattern = seeded_pattern(3000, *DESIGN, seed=51)
    encoded = encode_base64(
        encode_steps(pattern, rig.driver.channels, period_ns=8, marker_divider=16)
    )
    with caplog.at_level(logging.DEBUG):
        await rig.driver.load_pattern(pattern, repeat=True)
    assert "POST /json-rpc stream" in caplog.text  # logged by name and size only
    assert encoded[:16] not in caplog.text

"""The Eos wire twin answers Single Quantum's JSON protocol as the vendor's clients use it."""

from __future__ import annotations

import asyncio
import json

import pytest

from sims.wire.eos import LABEL_PROPS
from tests.sims.wire.eos_client import ETB, ServedEos, served_eos
from tests.sims.wire.wired import WIRE_WORLD, wired_station


@pytest.fixture
async def eos() -> ServedEos:  # type: ignore[misc]
    async with served_eos() as served:
        yield served


async def test_label_props_publishes_every_label_with_properties(eos: ServedEos) -> None:
    await eos.send(json.dumps({"request": "labelProps", "value": "None"}))
    props = {}
    for _ in LABEL_PROPS:
        message = await eos.reply()
        props[message["label"]] = message["value"]
    assert set(props) == set(LABEL_PROPS)
    assert props["NumberOfDetectors"]["value"] == eos.twin.n_channels == 4
    assert props["InptMeasurementPeriod"] == {
        "value": 100,
        "unit": "ms",
        "min": 10,
        "max": 60000,
        "type": "int",
    }
    assert props["BiasCurrent"]["unit"] == "uA" and len(props["BiasCurrent"]["value"]) == 4


async def test_objects_back_to_back_whatever_separates_them(eos: ServedEos) -> None:
    period = json.dumps(
        {"command": "SetMeasurementPeriod", "label": "InptMeasurementPeriod", "value": 20}
    )
    triggers = json.dumps(
        {"command": "SetAllTriggerLevels", "label": "TriggerLevel", "value": [50, 60, 70, 80]}
    )
    await eos.send(period + triggers + "\r\n" + '{"request":"DetectorEnable"}\x17')
    assert await eos.reply() == {"label": "InptMeasurementPeriod", "value": 20}
    assert await eos.reply() == {"label": "TriggerLevel", "value": [50, 60, 70, 80]}
    assert await eos.reply() == {"label": "DetectorEnable", "value": eos.wire.system_on}
    assert eos.wire.period_ms == 20
    assert await eos.twin.get_trigger_level_mv(3) == 80.0


async def test_a_message_split_over_two_writes(eos: ServedEos) -> None:
    await eos.send('{"request": "Number')
    await asyncio.sleep(0.05)
    await eos.send('OfDetectors"}')
    assert await eos.reply() == {"label": "NumberOfDetectors", "value": 4}


async def test_bias_and_enable_arm_the_twin(eos: ServedEos) -> None:
    off = {"command": "DetectorEnable", "label": "DetectorEnable", "value": False}
    assert (await eos.ask(off))["value"] is False
    bias = [12.0, 0.0, 9.5, 0.0]
    reply = await eos.ask({"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": bias})
    assert reply == {"label": "BiasCurrent", "value": bias}
    assert not await eos.twin.get_enabled(0)  # the system switch is still off
    await eos.ask({"command": "DetectorEnable", "label": "DetectorEnable", "value": True})
    assert [await eos.twin.get_enabled(ch) for ch in range(4)] == [True, False, True, False]
    assert await eos.twin.get_bias_ua(2) == 9.5
    voltages = await eos.ask({"request": "BiasVoltage"})
    assert voltages["label"] == "BiasVoltage" and len(voltages["value"]) == 4


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (
            {"command": "SetMeasurementPeriod", "label": "InptMeasurementPeriod", "value": 5},
            "10..60000",
        ),
        (
            {"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [150, 0, 0, 0]},
            "0.0..100.0",
        ),
        ({"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [1, 2]}, "4 values"),
        ({"command": "DetectorEnable", "label": "DetectorEnable", "value": "yes"}, "true or false"),
        ({"command": "SelfDestruct", "value": True}, "unknown command"),
        ({"request": "NoSuchLabel"}, "unknown label"),
        ({"label": "BiasCurrent", "value": [1, 1, 1, 1]}, "cannot be set"),
        ({"hello": 1}, "neither a request nor a command"),
    ],
)
async def test_refusals_publish_an_error_label(
    eos: ServedEos, message: dict[str, object], why: str
) -> None:
    reply = await eos.ask(message)
    assert reply["label"] == "Error" and why in reply["value"]


async def test_garbage_is_refused_and_serving_goes_on(eos: ServedEos) -> None:
    await eos.send(b"hello" + ETB)
    assert (await eos.reply())["label"] == "Error"
    await eos.send(b"[1, 2]")
    assert "JSON object" in (await eos.reply())["value"]
    assert (await eos.ask({"request": "NumberOfDetectors"}))["value"] == 4


async def test_plain_labels_and_auto_calibration(eos: ServedEos) -> None:
    assert await eos.ask({"label": "IVScanStart", "value": 2.5}) == {
        "label": "IVScanStart",
        "value": 2.5,
    }
    assert (await eos.ask({"request": "IVScanStart"}))["value"] == 2.5
    dark = {"command": "DarkCountsAutoIV", "label": "DarkCountsAutoIV", "value": [50] * 4}
    assert (await eos.ask(dark))["value"] == [50] * 4
    await eos.ask({"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [7.0] * 4})
    assert await eos.ask({"command": "AutoCaliBiasCurrents", "value": True}) == {
        "label": "StartAutoIV",
        "value": False,
    }
    assert (await eos.ask({"request": "BiasCurrentAutoIV"}))["value"] == [7.0] * 4


async def test_counts_stream_lines(eos: ServedEos) -> None:
    await eos.ask(
        {"command": "SetMeasurementPeriod", "label": "InptMeasurementPeriod", "value": 10}
    )
    host, port = eos.wire.endpoints()["counts"].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for _ in range(3):
            line = (await asyncio.wait_for(reader.readline(), 5.0)).decode()
            fields = [float(field) for field in line.strip().split(",")]
            assert len(fields) == 5 and all(f >= 0 for f in fields)
    finally:
        writer.close()


async def test_a_counts_line_holds_every_dark_count_of_its_period(eos: ServedEos) -> None:
    # Darks only (100 Hz a channel): 10 counts a channel in each 100 ms line, not a 1 ms
    # sample scaled up (0 or a multiple of 100).
    eos.world.set_laser_enabled(False)
    await eos.ask({"command": "SetAllBiasCurrents", "label": "BiasCurrent", "value": [12.0] * 4})
    await eos.ask({"command": "DetectorEnable", "label": "DetectorEnable", "value": True})
    host, port = eos.wire.endpoints()["counts"].rsplit(":", 1)
    start_s = eos.world.clock.now_s()
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = []
        for _ in range(6):
            line = (await asyncio.wait_for(reader.readline(), 5.0)).decode()
            lines.append([float(field) for field in line.strip().split(",")])
    finally:
        writer.close()
    # Each line counted one whole period of sim time.
    assert lines[-1][0] / 1000.0 - start_s == pytest.approx(0.6, abs=0.002)
    totals = [sum(line[ch + 1] for line in lines) for ch in range(4)]
    assert all(20 < total < 100 for total in totals), (totals, lines)


async def test_eos_driver_counts_darks_in_a_short_look() -> None:
    # A dark check's 0.05 s look reads one 100 ms period: about 40 darks, 20 in 0.05 s, never 0.
    world = {**WIRE_WORLD, "detectors": {"dark_count_rate_hz": 100.0}}
    async with wired_station(["detector"], world_settings=world) as wired:
        wired.world.set_laser_enabled(False)
        detectors = wired.drivers["detectors"]
        counts = [sum(await detectors.get_count_rates_hz(0.05)) * 0.05 for _ in range(6)]
    assert all(0 < c < 50 for c in counts), counts
    assert 10 < sum(counts) / len(counts) < 30, counts

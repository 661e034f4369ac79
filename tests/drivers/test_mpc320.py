"""Exact-exchange tests of the Thorlabs MPC320 driver: every APT byte is listed."""

from __future__ import annotations

import struct

import pytest

from drivers.thorlabs.mpc320 import MPC320
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    ConnectionLost,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    PolarizationController,
    ProtocolError,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedTransport, Step

REQ_INFO = bytes.fromhex("0500 0000 5001")
ENABLE_ALL = bytes.fromhex("1002 0701 5001")


def info(model: bytes = b"MPC320\0\0") -> bytes:
    data = struct.pack("<I8sH", 38_000_321, model, 16) + bytes([3, 0, 1, 0])
    data += bytes(60) + struct.pack("<HHH", 1, 0, 3)
    return struct.pack("<HHBB", 0x0006, len(data), 0x81, 0x50) + data


CONNECT: list[Step] = [(REQ_INFO, info()), (ENABLE_ALL, b"")]


def status_request(channel_bit: int) -> bytes:
    return struct.pack("<HBBBB", 0x0490, channel_bit, 0, 0x50, 0x01)


def status_reply(channel_bit: int, counts: int, bits: int = 0x80000000, msg: int = 0x0491) -> bytes:
    data = struct.pack("<HiHhI", channel_bit, counts, 0, 0, bits)
    return struct.pack("<HHBB", msg, len(data), 0x81, 0x50) + data


def move(channel_bit: int, counts: int, *, reached: int | None = None) -> Step:
    request = struct.pack("<HHBB", 0x0453, 6, 0xD0, 0x01) + struct.pack("<Hi", channel_bit, counts)
    end = counts if reached is None else reached
    return (request, status_reply(channel_bit, end, msg=0x0464))


async def connected(script: list[Step]) -> tuple[MPC320, ScriptedTransport]:
    transport = ScriptedTransport(CONNECT + script, instrument="pc-bob")
    pc = MPC320("pc-bob", transport)
    await pc.connect()
    return pc, transport


async def test_connect_reads_identity_and_enables_paddles() -> None:
    pc, transport = await connected([])
    assert isinstance(pc, PolarizationController)
    assert pc.identity == {
        "vendor": "Thorlabs",
        "model": "MPC320",
        "serial": "38000321",
        "firmware": "1.0.3",
    }
    assert pc.n_axes == 3 and pc.voltage_range_mv == (-685.0, 685.0)
    transport.assert_complete()


async def test_moves_and_positions_exact_bytes() -> None:
    pc, transport = await connected(
        [
            move(0x01, 685 - 100),
            move(0x02, 685),
            move(0x04, 685 + 300),
            (status_request(0x01), status_reply(0x01, 585)),
            (status_request(0x02), status_reply(0x02, 685)),
            (status_request(0x04), status_reply(0x04, 985)),
            move(0x02, 1370),
        ]
    )
    await pc.set_voltages_mv([-100.0, 0.0, 300.4])
    assert await pc.get_voltages_mv() == [-100.0, 0.0, 300.0]
    await pc.set_angle_deg(1, 170.0)
    assert pc.remembered_settings == {
        "voltages_mv[0]": -100,
        "voltages_mv[1]": 685,
        "voltages_mv[2]": 300,
    }
    transport.assert_complete()


async def test_unsolicited_messages_are_skipped() -> None:
    homed = struct.pack("<HBBBB", 0x0444, 0x01, 0, 0x01, 0x50)  # a late MOT_MOVE_HOMED
    pc, transport = await connected(
        [
            (status_request(0x01), homed + status_reply(0x01, 700)),
            (status_request(0x02), status_reply(0x02, 685)),
            (status_request(0x04), status_reply(0x04, 0)),
        ]
    )
    assert await pc.get_voltages_mv() == [15.0, 0.0, -685.0]
    transport.assert_complete()


async def test_snapshot_health_and_safe_state() -> None:
    statuses = [
        (status_request(0x01), status_reply(0x01, 685)),
        (status_request(0x02), status_reply(0x02, 685, bits=0)),  # paddle 2 disabled
        (status_request(0x04), status_reply(0x04, 1370)),
    ]
    pc, transport = await connected(
        [*statuses, *statuses, move(0x01, 685), move(0x02, 685), move(0x04, 685)]
    )
    snap = await pc.snapshot()
    assert snap["voltages_mv"] == [0.0, 0.0, 685.0] and snap["angles_deg"] == [85.0, 85.0, 170.0]
    health = await pc.health()
    assert not health.ok and health.detail == "paddles [1] disabled"
    assert health.readings["position_2_counts"] == 1370
    await pc.safe_state()
    assert pc.remembered_settings == {
        "voltages_mv[0]": 0,
        "voltages_mv[1]": 0,
        "voltages_mv[2]": 0,
    }
    transport.assert_complete()


async def test_paddle_stopping_short_is_instrument_fault() -> None:
    pc, transport = await connected([move(0x04, 685 + 500, reached=685)])
    with pytest.raises(InstrumentFault) as info:
        await pc.set_voltage_mv(2, 500.0)
    assert info.value.command == "MOT_MOVE_ABSOLUTE paddle 3 to 1185"
    assert "stopped at 685 counts" in str(info.value)
    assert pc.remembered_settings == {}
    transport.assert_complete()


async def test_range_and_axis_checked_before_the_wire() -> None:
    pc, transport = await connected([])
    with pytest.raises(ValueError, match="voltage_mv"):
        await pc.set_voltage_mv(0, 686.0)
    with pytest.raises(ValueError, match="axis"):
        await pc.set_voltage_mv(3, 0.0)
    with pytest.raises(ValueError, match="voltages_mv"):
        await pc.set_voltages_mv([0.0] * 4)
    with pytest.raises(ValueError, match="angle_deg"):
        await pc.set_angle_deg(0, 171.0)
    transport.assert_complete()


async def test_wrong_model_silence_and_reconnect() -> None:
    stranger = ScriptedTransport([(REQ_INFO, info(b"KDC101\0\0"))], instrument="pc-bob")
    with pytest.raises(ProtocolError, match="not an MPC320"):
        await MPC320("pc-bob", stranger).connect()
    pc, transport = await connected(
        [
            move(0x01, 700),
            (status_request(0x01), status_reply(0x01, 700)),
            (status_request(0x02), SILENCE),
            (status_request(0x01), status_reply(0x01, 700)),
            (status_request(0x02), DISCONNECT),
            *CONNECT,
            move(0x01, 700),
        ]
    )
    await pc.set_voltage_mv(0, 15.0)
    with pytest.raises(InstrumentTimeout) as info_:
        await pc.health()  # the first paddle answers, the second is silent
    assert info_.value.command == "MOT_REQ_USTATUSUPDATE paddle 2"
    with pytest.raises(ConnectionLost):
        await pc.get_voltages_mv()
    await pc.connect()
    assert transport.open_count == 2
    transport.assert_complete()


def test_from_config_checks_positions() -> None:
    spec = InstrumentSpec(
        name="pc-bob",
        class_path="drivers.thorlabs.mpc320:MPC320",
        settings={"voltages_mv": [0.0, 0.0, 900.0]},
        transport=TransportSpec(kind="serial", address="/dev/ttyUSB2"),
    )
    with pytest.raises(ConfigError, match=r"settings\.voltages_mv"):
        MPC320.from_config(spec, BuildContext(lab="lab", node="bob"))
    spec.settings["voltages_mv"] = [0.4, -100.0, 685.0]
    pc = MPC320.from_config(spec, BuildContext(lab="lab", node="bob"))
    # Whole counts, one entry per paddle, re-applied paddle by paddle after a reconnect.
    assert pc.remembered_settings == {
        "voltages_mv[0]": 0,
        "voltages_mv[1]": -100,
        "voltages_mv[2]": 685,
    }

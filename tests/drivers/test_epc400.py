"""Exact-exchange tests of the OZ Optics EPC-400 driver: every byte on the wire is listed."""

from __future__ import annotations

import pytest

from drivers.ozoptics.epc400 import EPC400
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    PolarizationController,
    ProtocolError,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedTransport, Step

DONE = b"Done\r\n"
CONNECT: list[Step] = [
    (b"M?\r\n", b"Work Mode: DC\r\n" + DONE),
    (b"MDC\r\n", b"Set To DC Mode\r\n" + DONE),
]


def set_voltage(channel: int, mv: int) -> Step:
    """``V<ch>,<mV>`` and the manual's acknowledgement line."""
    ack = f"Set CH{channel} DC Voltage at: {mv}mV\r\n".encode()
    return (f"V{channel},{mv}\r\n".encode(), ack + DONE)


VOLTAGES = b"Voltage(mV): CH1 +2200 CH2 +5000 CH3 -1000 CH4 -4000\r\n"


async def connected(script: list[Step]) -> tuple[EPC400, ScriptedTransport]:
    transport = ScriptedTransport(CONNECT + script, instrument="epc")
    epc = EPC400("epc", transport)
    await epc.connect()
    return epc, transport


async def test_voltages_exact_bytes() -> None:
    epc, transport = await connected(
        [
            set_voltage(1, 100),
            set_voltage(2, -250),
            set_voltage(3, 5000),
            (b"V4,-5000\r\n", DONE),  # firmware without a content line
            (b"V3,1234\r\n", b"V3,1234\r\n" + DONE),  # firmware that echoes the command
            (b"V?\r\n", VOLTAGES + DONE),
        ]
    )
    assert isinstance(epc, PolarizationController)
    assert epc.n_axes == 4 and epc.voltage_range_mv == (-5000.0, 5000.0)
    await epc.set_voltages_mv([100, -250.4, 5000, -5000])
    await epc.set_voltage_mv(2, 1234.2)
    assert await epc.get_voltages_mv() == [2200.0, 5000.0, -1000.0, -4000.0]
    transport.assert_complete()


async def test_snapshot_health_and_scrambling() -> None:
    epc, transport = await connected(
        [
            (b"M?\r\n", b"Work Mode: DC\r\n" + DONE),
            (b"V?\r\n", VOLTAGES + DONE),
            (b"MAC\r\n", b"Set To AC Mode\r\n" + DONE),
            (b"F2,37\r\n", b"Set CH2 AC Frequency at: 37Hz\r\n" + DONE),
            (b"M?\r\n", b"Work Mode: AC(Sine)\r\n" + DONE),
            (b"V?\r\n", VOLTAGES + DONE),
        ]
    )
    snap = await epc.snapshot()
    assert snap["scrambling"] is False and snap["voltages_mv"][3] == -4000.0
    await epc.set_scrambling(True)
    await epc.set_frequency_hz(1, 37)
    health = await epc.health()
    assert health.ok and health.readings["voltage_0_mv"] == 2200.0
    transport.assert_complete()


async def test_health_flags_unexpected_mode() -> None:
    epc, transport = await connected(
        [
            (b"M?\r\n", b"Work Mode: AC(Triangle)\r\n" + DONE),
            (b"V?\r\n", VOLTAGES + DONE),
        ]
    )
    health = await epc.health()
    assert not health.ok and "AC" in health.detail
    transport.assert_complete()


async def test_safe_state_zeroes_every_squeezer() -> None:
    epc, transport = await connected(
        [(b"MDC\r\n", DONE)] + [(f"VZ{ch}\r\n".encode(), DONE) for ch in (1, 2, 3, 4)]
    )
    await epc.safe_state()
    assert epc.remembered_settings == {
        "scrambling": False,
        "voltages_mv[0]": 0,
        "voltages_mv[1]": 0,
        "voltages_mv[2]": 0,
        "voltages_mv[3]": 0,
    }
    transport.assert_complete()


async def test_error_reply_is_instrument_fault() -> None:
    epc, transport = await connected([(b"V1,4000\r\n", b"Error!\r\n")])
    with pytest.raises(InstrumentFault) as info:
        await epc.set_voltage_mv(0, 4000)
    assert info.value.instrument == "epc" and info.value.command == "V1,4000"
    assert "voltages_mv[0]" not in epc.remembered_settings
    transport.assert_complete()


async def test_error_after_content_lines_and_lf_only_line_ends() -> None:
    epc, transport = await connected(
        [
            (b"F1,50\r\n", b"Set CH1 AC Frequency at: 50Hz\nDone\n"),  # LF-only line ends
            (b"V2,100\r\n", b"Invalid channel voltage\r\nError!\r\n"),
        ]
    )
    await epc.set_frequency_hz(0, 50)
    with pytest.raises(InstrumentFault, match="Invalid channel voltage"):
        await epc.set_voltage_mv(1, 100)
    transport.assert_complete()


async def test_clamped_voltage_acknowledgement_is_a_fault() -> None:
    epc, transport = await connected(
        [(b"V3,4999\r\n", b"Set CH3 DC Voltage at: 4000mV\r\n" + DONE)]
    )
    with pytest.raises(InstrumentFault, match="4000mV") as info:
        await epc.set_voltage_mv(2, 4999)
    assert info.value.command == "V3,4999"
    assert "voltages_mv[2]" not in epc.remembered_settings
    transport.assert_complete()


async def test_garbled_replies_are_re_sent_twice_then_protocol_errors() -> None:
    good = b"Voltage(mV): CH1 +1 CH2 +2 CH3 +3 CH4 +4\r\n" + DONE
    epc, transport = await connected(
        [
            (b"V?\r\n", b"Voltage(mV): CH1 +2200 CH2\r\n" + DONE),
            (b"V?\r\n", b"\x80\x81\r\n"),
            (b"V?\r\n", good),  # re-sent after the garbled line
            (b"V?\r\n", b"\x80\x81\r\n"),
            (b"V?\r\n", b"\x80\x81\r\n"),
            (b"V?\r\n", b"\x80\x81\r\n"),
            (b"V1,0\r\n", b"?\r\n" * 8),
            (b"V1,0\r\n", DONE),  # an absolute setting is safe to send again
        ]
    )
    with pytest.raises(ProtocolError, match=r"CH1\.\.CH4"):
        await epc.get_voltages_mv()
    assert await epc.get_voltages_mv() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ProtocolError, match="not ASCII"):
        await epc.get_voltages_mv()
    await epc.set_voltage_mv(0, 0)
    assert epc.remembered_settings["voltages_mv[0]"] == 0
    transport.assert_complete()


async def test_silence_is_timeout() -> None:
    epc, transport = await connected([(b"V?\r\n", SILENCE)])
    with pytest.raises(InstrumentTimeout) as info:
        await epc.get_voltages_mv()
    assert info.value.command == "V?"
    transport.assert_complete()


async def test_bad_arguments_rejected_before_the_wire() -> None:
    epc, transport = await connected([])
    with pytest.raises(ValueError, match="needs 4 values"):
        await epc.set_voltages_mv([0, 0, 0])
    with pytest.raises(ValueError, match=r"voltages_mv\[2\]=6000"):
        await epc.set_voltages_mv([0, 0, 6000, 0])
    with pytest.raises(ValueError, match="axis=4"):
        await epc.set_voltage_mv(4, 0)
    with pytest.raises(ValueError, match=r"frequencies_hz\[0\]=101"):
        await epc.set_frequency_hz(0, 101)
    transport.assert_complete()


async def test_reconnect_reapplies_mode_then_voltages() -> None:
    script = [
        (b"V1,10\r\n", DONE),
        (b"V2,20\r\n", DONE),
        (b"V3,30\r\n", DONE),
        (b"V4,40\r\n", DONE),
        (b"MAC\r\n", DONE),
        (b"V?\r\n", DISCONNECT),
        *CONNECT[:1],
        (b"MAC\r\n", DONE),
        (b"V1,10\r\n", DONE),
        (b"V2,20\r\n", DONE),
        (b"V3,30\r\n", DONE),
        (b"V4,40\r\n", DONE),
        (b"V?\r\n", b"Voltage(mV): CH1 +10 CH2 +20 CH3 +30 CH4 +40\r\n" + DONE),
    ]
    transport = ScriptedTransport(CONNECT + script, instrument="epc")
    epc = EPC400("epc", transport)
    await epc.connect()
    await epc.set_voltages_mv([10, 20, 30, 40])
    await epc.set_scrambling(True)
    # The call reconnects on its own, restores mode then voltages, and is run again.
    assert await epc.get_voltages_mv() == [10.0, 20.0, 30.0, 40.0]
    assert transport.open_count == 2 and epc.reconnects == 1
    transport.assert_complete()


def test_from_config_rejects_bad_settings() -> None:
    spec = InstrumentSpec(
        name="epc",
        class_path="drivers.ozoptics.epc400:EPC400",
        settings={"voltages_mv": [0, 0, 0, 9000]},
        transport=TransportSpec(kind="serial", address="/dev/ttyUSB0"),
    )
    with pytest.raises(ConfigError, match=r"settings.voltages_mv: .*voltages_mv\[3\]"):
        EPC400.from_config(spec, BuildContext(lab="lab", node="bob"))
    wrong_kind = InstrumentSpec(
        name="epc",
        class_path="drivers.ozoptics.epc400:EPC400",
        transport=TransportSpec(kind="tcp", address="127.0.0.1:7000"),
    )
    with pytest.raises(ConfigError, match=r"transport\.kind"):
        EPC400.from_config(wrong_kind, BuildContext(lab="lab", node="bob"))

"""Exact-exchange tests of the Keysight N7776C driver: every byte on the wire is listed."""

from __future__ import annotations

import pytest

from drivers.keysight.n7776c import N7776C
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    ConnectionLost,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    Laser,
    ProtocolError,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedTransport, Step

OK: Step = (b":SYST:ERR?\n", b'+0,"No error"\n')


def connect_steps() -> list[Step]:
    """What the driver says on every (re)connect: identity, W unit, band and power range."""
    return [
        (b"*IDN?\n", b"Keysight Technologies,N7776C,DE52500123,V1.1.0\n"),
        (b"*CLS\n", b""),
        (b":SOUR0:POW:UNIT 1\n", b""),
        OK,
        (b":SOUR0:WAV? MIN\n", b"+1.48000000E-006\n"),
        (b":SOUR0:WAV? MAX\n", b"+1.62000000E-006\n"),
        (b":SOUR0:POW? MIN\n", b"+4.00000000E-005\n"),
        (b":SOUR0:POW? MAX\n", b"+2.00000000E-002\n"),
    ]


async def connected(script: list[Step]) -> tuple[N7776C, ScriptedTransport]:
    transport = ScriptedTransport(connect_steps() + script, instrument="laser")
    laser = N7776C("laser", transport)
    await laser.connect()
    return laser, transport


async def test_connect_reads_identity_band_and_power_range() -> None:
    laser, transport = await connected([])
    assert isinstance(laser, Laser)
    assert laser.identity == {
        "vendor": "Keysight Technologies",
        "model": "N7776C",
        "serial": "DE52500123",
        "firmware": "V1.1.0",
    }
    await laser.connect()  # idempotent: nothing more on the wire
    transport.assert_complete()


async def test_settings_exact_bytes_and_si_replies() -> None:
    laser, transport = await connected(
        [
            (b":SOUR0:POW 1.2500MW\n", b""),
            OK,
            (b":SOUR0:WAV 1550.1234NM\n", b""),
            OK,
            (b":SOUR0:POW:STAT 1\n", b""),
            OK,
            (b":SOUR0:POW?\n", b"+1.25000000E-003\n"),
            (b":SOUR0:WAV?\n", b"+1.55012340E-006\n"),
            (b":SOUR0:POW:STAT?\n", b"1\n"),
        ]
    )
    await laser.set_power_mw(1.25)
    await laser.set_wavelength_nm(1550.12341)
    await laser.set_output(True)
    assert await laser.get_power_mw() == pytest.approx(1.25)
    assert await laser.get_wavelength_nm() == pytest.approx(1550.1234)
    assert await laser.get_output() is True
    transport.assert_complete()


async def test_snapshot_health_and_safe_state() -> None:
    laser, transport = await connected(
        [
            (b":SOUR0:POW:STAT?\n", b"0\n"),
            (b":SOUR0:POW?\n", b"+1.00000000E-003\n"),
            (b":SOUR0:WAV?\n", b"+1.55000000E-006\n"),
            (b":LOCK?\n", b"0\n"),
            (b":SYST:ERR?\n", b'-222,"Data out of range"\n'),
            (b":LOCK?\n", b"1\n"),
            (b":SOUR0:POW:STAT 0\n", b""),
            OK,
        ]
    )
    snap = await laser.snapshot()
    assert snap["power_mw"] == pytest.approx(1.0) and snap["wavelength_nm"] == pytest.approx(1550)
    assert snap["wavelength_range_nm"] == pytest.approx([1480.0, 1620.0])
    assert snap["power_range_mw"] == pytest.approx([0.04, 20.0])
    health = await laser.health()
    assert not health.ok and "Data out of range" in health.detail
    assert health.readings["locked"] is True
    await laser.safe_state()
    assert laser.remembered_settings == {"output": False}
    transport.assert_complete()


async def test_device_error_is_instrument_fault_naming_the_command() -> None:
    laser, transport = await connected(
        [(b":SOUR0:POW:STAT 1\n", b""), (b":SYST:ERR?\n", b'-221,"Settings conflict"\n')]
    )
    with pytest.raises(InstrumentFault) as info:
        await laser.set_output(True)
    assert info.value.command == ":SOUR0:POW:STAT 1" and "-221" in str(info.value)
    assert "output" not in laser.remembered_settings
    transport.assert_complete()


async def test_out_of_band_values_never_reach_the_wire() -> None:
    laser, transport = await connected([])
    with pytest.raises(ValueError, match="wavelength_nm"):
        await laser.set_wavelength_nm(1630.0)  # inside the nominal union, outside this unit
    with pytest.raises(ValueError, match="power_mw"):
        await laser.set_power_mw(0.02)
    transport.assert_complete()


async def test_bad_identity_garbage_and_silence() -> None:
    transport = ScriptedTransport([(b"*IDN?\n", b"SANTEC,TSL-570,1,2\n")], instrument="laser")
    with pytest.raises(ProtocolError, match="not a Keysight"):
        await N7776C("laser", transport).connect()
    laser, transport = await connected(
        [
            (b":SOUR0:POW?\n", b'+0,"No error"\n'),  # a late reply to an abandoned query
            (b":SOUR0:POW?\n", b"+1.00000000E-03\n"),  # asked again after a flush
            *[(b":SOUR0:POW?\n", b"watts\n")] * 3,  # garbled every time: given up
            (b":SOUR0:WAV?\n", SILENCE),
        ]
    )
    assert await laser.get_power_mw() == pytest.approx(1.0)
    with pytest.raises(ProtocolError, match="did not parse 3 times"):
        await laser.get_power_mw()
    with pytest.raises(InstrumentTimeout) as info:
        await laser.get_wavelength_nm()
    assert info.value.command == ":SOUR0:WAV?"
    transport.assert_complete()


async def test_reconnect_reapplies_tuning_before_output() -> None:
    laser, transport = await connected(
        [
            (b":SOUR0:POW:STAT 1\n", b""),
            OK,
            (b":SOUR0:WAV 1551.0000NM\n", b""),
            OK,
            (b":SOUR0:POW?\n", DISCONNECT),
            *connect_steps(),
            (b":SOUR0:WAV 1551.0000NM\n", b""),
            OK,
            (b":SOUR0:POW:STAT 1\n", b""),
            OK,
        ]
    )
    await laser.set_output(True)
    await laser.set_wavelength_nm(1551.0)
    with pytest.raises(ConnectionLost):
        await laser.get_power_mw()
    await laser.connect()
    assert transport.open_count == 2
    transport.assert_complete()


def test_from_config_checks_settings_and_transport() -> None:
    spec = InstrumentSpec(
        name="laser",
        class_path="drivers.keysight.n7776c:N7776C",
        settings={"wavelength_nm": 1700.0},
        transport=TransportSpec(kind="visa", address="TCPIP::10.0.0.5::5025::SOCKET"),
    )
    with pytest.raises(ConfigError, match=r"settings\.wavelength_nm"):
        N7776C.from_config(spec, BuildContext(lab="lab", node="alice"))
    serial = InstrumentSpec(
        name="laser",
        class_path="drivers.keysight.n7776c:N7776C",
        transport=TransportSpec(kind="serial", address="/dev/ttyUSB0"),
    )
    with pytest.raises(ConfigError, match=r"transport\.kind"):
        N7776C.from_config(serial, BuildContext(lab="lab", node="alice"))

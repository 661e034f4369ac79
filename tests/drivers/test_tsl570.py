"""Exact-exchange tests of the Santec TSL-570 driver: every byte on the wire is listed."""

from __future__ import annotations

import pytest

from drivers.santec.tsl570 import TSL570
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    Laser,
    ProtocolError,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedTransport, Step

OK: Step = (b":SYST:ERR?\r", b'0,"No error"\r')


def connect_steps(low: bytes = b"1480.0000", high: bytes = b"1640.0000") -> list[Step]:
    """What the driver says on every (re)connect: identity, units, tuning range."""
    return [
        (b"*IDN?\r", b"SANTEC,TSL-570,21020001,0001.000.0001\r"),
        (b"*CLS\r", b""),
        (b":POW:UNIT 1\r", b""),
        OK,
        (b":WAV:UNIT 0\r", b""),
        OK,
        (b":WAV:MIN?\r", low + b"\r"),
        (b":WAV:MAX?\r", high + b"\r"),
    ]


async def connected(script: list[Step]) -> tuple[TSL570, ScriptedTransport]:
    transport = ScriptedTransport(connect_steps() + script, instrument="laser")
    laser = TSL570("laser", transport)
    await laser.connect()
    return laser, transport


async def test_connect_reads_identity_and_range() -> None:
    laser, transport = await connected([])
    assert isinstance(laser, Laser)
    assert laser.identity == {
        "vendor": "SANTEC",
        "model": "TSL-570",
        "serial": "21020001",
        "firmware": "0001.000.0001",
    }
    await laser.connect()  # idempotent: nothing more on the wire
    transport.assert_complete()


async def test_settings_exact_bytes() -> None:
    laser, transport = await connected(
        [
            (b":POW 1.25\r", b""),
            OK,
            (b":WAV 1550.1234\r", b""),
            OK,
            (b":POW:STAT 1\r", b""),
            OK,
            (b":POW?\r", b"+1.250\r"),
            (b":WAV?\r", b"1550.1234\r"),
            (b":POW:STAT?\r", b"1\r"),
        ]
    )
    await laser.set_power_mw(1.25)
    await laser.set_wavelength_nm(1550.12341)
    await laser.set_output(True)
    assert await laser.get_power_mw() == pytest.approx(1.25)
    assert await laser.get_wavelength_nm() == pytest.approx(1550.1234)
    assert await laser.get_output() is True
    transport.assert_complete()


async def test_snapshot_and_health() -> None:
    laser, transport = await connected(
        [
            (b":POW:STAT?\r", b"0\r"),
            (b":POW?\r", b"2.00\r"),
            (b":WAV?\r", b"1310.0000\r"),
            (b":COHC?\r", b"0\r"),
            (b":SYST:ERR?\r", b'0,"No error"\r'),
            (b":SYST:ALER?\r", b"No alerts.\r"),
            (b":POW:ACT?\r", b"1.98\r"),
            (b":SYST:ERR?\r", b'0,"No error"\r'),
            (b":SYST:ALER?\r", b"No07.,Inter lock detection\r"),
            (b":POW:ACT?\r", b"0.00\r"),
        ]
    )
    snap = await laser.snapshot()
    assert snap["output"] is False
    assert snap["power_mw"] == 2.0
    assert snap["wavelength_nm"] == 1310.0
    assert snap["wavelength_range_nm"] == [1480.0, 1640.0]
    healthy = await laser.health()
    assert healthy.ok and healthy.readings["actual_power_mw"] == pytest.approx(1.98)
    alarmed = await laser.health()
    assert not alarmed.ok and "Inter lock" in alarmed.detail
    transport.assert_complete()


async def test_safe_state_switches_output_off() -> None:
    laser, transport = await connected([(b":POW:STAT 0\r", b""), OK])
    await laser.safe_state()
    assert laser.remembered_settings == {"output": False}
    transport.assert_complete()


async def test_device_error_is_instrument_fault() -> None:
    laser, transport = await connected(
        [(b":WAV 1500.0000\r", b""), (b":SYST:ERR?\r", b'-222,"Data out of range"\r')]
    )
    with pytest.raises(InstrumentFault) as info:
        await laser.set_wavelength_nm(1500.0)
    assert info.value.instrument == "laser"
    assert info.value.command == ":WAV 1500.0000"
    assert "-222" in str(info.value) and "Data out of range" in str(info.value)
    assert "wavelength_nm" not in laser.remembered_settings  # a refused value is not re-applied
    transport.assert_complete()


async def test_crlf_replies_and_error_texts_by_code() -> None:
    """A CR LF reply leaves an LF that the next reply strips; the code, not the text,
    says whether the queue is clean (``+0,"No error"`` is clean, -113 is not)."""
    laser, transport = await connected(
        [
            (b":POW?\r", b"+1.2500E+00\r\n"),
            (b":COHC 1\r", b""),
            (b":SYST:ERR?\r", b'+0,"No error"\r\n'),
            (b":WAV?\r", b"1550.1234\r\n"),
            (b":COHC 0\r", b""),
            (b":SYST:ERR?\r", b'-113,"Undefined header"\r'),
        ]
    )
    assert await laser.get_power_mw() == pytest.approx(1.25)
    await laser.set_coherence_control(True)
    assert await laser.get_wavelength_nm() == pytest.approx(1550.1234)
    with pytest.raises(InstrumentFault, match="-113: Undefined header"):
        await laser.set_coherence_control(False)
    transport.assert_complete()


async def test_garbled_reply_is_re_sent_twice_then_protocol_error() -> None:
    garbled = (b":POW?\r", b"\xff\xfe1.0\r")
    laser, transport = await connected(
        [
            garbled,
            (b":POW?\r", b"1.5000\r"),  # re-sent after the garbled reply
            garbled,
            garbled,
            garbled,
            (b":WAV?\r", b"abc\r"),
            (b":WAV?\r", b"abc\r"),
            (b":WAV?\r", b"abc\r"),
            # A setting's error-queue reply garbled: setting and query go again as a unit.
            (b":POW 2.00\r", b""),
            (b":SYST:ERR?\r", b"\xfe\r"),
            (b":POW 2.00\r", b""),
            OK,
            # The error queue itself is never re-read blindly (reading pops an entry).
            (b":SYST:ERR?\r", b"\xfe\r"),
        ]
    )
    assert await laser.get_power_mw() == 1.5
    with pytest.raises(ProtocolError, match=r"\[:POW\?\]") as caught:
        await laser.get_power_mw()
    assert "did not parse 3 times" in "".join(caught.value.__notes__)
    with pytest.raises(ProtocolError, match="expected a number"):
        await laser.get_wavelength_nm()
    await laser.set_power_mw(2.0)
    with pytest.raises(ProtocolError, match="SYST:ERR"):
        await laser.health()
    transport.assert_complete()


async def test_garbled_identity_is_protocol_error() -> None:
    transport = ScriptedTransport([(b"*IDN?\r", b"hello\r")], instrument="laser")
    with pytest.raises(ProtocolError, match="identity"):
        await TSL570("laser", transport).connect()
    transport.assert_complete()


async def test_silence_is_timeout() -> None:
    laser, transport = await connected([(b":POW?\r", SILENCE)])
    with pytest.raises(InstrumentTimeout) as info:
        await laser.get_power_mw()
    assert info.value.command == ":POW?"
    transport.assert_complete()


async def test_bad_arguments_rejected_before_the_wire() -> None:
    laser, transport = await connected([])
    with pytest.raises(ValueError, match=r"power_mw=25.*\[0.04, 20\]"):
        await laser.set_power_mw(25)
    with pytest.raises(ValueError, match="wavelength_nm"):
        await laser.set_wavelength_nm(1700.0)
    with pytest.raises(TypeError, match="output"):
        await laser.set_output(1)  # type: ignore[arg-type]
    transport.assert_complete()


async def test_reconnect_reapplies_last_settings_output_last() -> None:
    script = [
        (b":POW:STAT 1\r", b""),
        OK,
        (b":POW 0.50\r", b""),
        OK,
        (b":WAV 1550.0000\r", b""),
        OK,
        (b":POW?\r", DISCONNECT),
        *connect_steps(),
        (b":POW 0.50\r", b""),
        OK,
        (b":WAV 1550.0000\r", b""),
        OK,
        (b":POW:STAT 1\r", b""),
        OK,
        (b":POW?\r", b"0.5000\r"),  # the call, run again
    ]
    transport = ScriptedTransport(connect_steps() + script, instrument="laser")
    laser = TSL570("laser", transport)
    await laser.connect()
    await laser.set_output(True)
    await laser.set_power_mw(0.5)
    await laser.set_wavelength_nm(1550.0)
    assert await laser.get_power_mw() == 0.5
    assert transport.open_count == 2 and laser.reconnects == 1
    transport.assert_complete()


async def test_from_config_validates_settings() -> None:
    spec = InstrumentSpec(
        name="laser",
        class_path="drivers.santec.tsl570:TSL570",
        settings={"power_mw": 50.0},
        transport=TransportSpec(kind="visa", address="TCPIP::127.0.0.1::5000::SOCKET"),
    )
    with pytest.raises(ConfigError, match=r"instruments.laser.settings.power_mw"):
        TSL570.from_config(spec, BuildContext(lab="lab", node="alice"))
    no_transport = InstrumentSpec(name="laser", class_path="drivers.santec.tsl570:TSL570")
    with pytest.raises(ConfigError, match="needs a transport"):
        TSL570.from_config(no_transport, BuildContext(lab="lab", node="alice"))

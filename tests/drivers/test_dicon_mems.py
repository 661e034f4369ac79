"""Exact-exchange tests of the DiCon MEMS 1xN switch driver: every byte is listed."""

from __future__ import annotations

import pytest

from drivers.dicon.mems import DiconMems
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    ConnectionLost,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    OpticalSwitch,
    ProtocolError,
    TransportSpec,
)
from labctl.testing.exchange import DISCONNECT, SILENCE, ScriptedTransport, Step

OK: Step = (b"SYST:ERR?\r", b'0,"No error"\r')
CONNECT: list[Step] = [
    (b"*IDN?\r", b"DiCon Fiberoptics Inc,MEMS 1x4,SN0412,1.08\r"),
    (b"*CLS\r", b""),
]


def route(port: int, module: int = 1) -> list[Step]:
    return [(f"ROUT{module}:SCAN {port}\r".encode(), b""), OK]


async def connected(script: list[Step], **options: int) -> tuple[DiconMems, ScriptedTransport]:
    transport = ScriptedTransport(CONNECT + script, instrument="switch")
    switch = DiconMems("switch", transport, n_ports=4, parking_port=4, **options)
    await switch.connect()
    return switch, transport


async def test_route_and_read_exact_bytes() -> None:
    switch, transport = await connected([*route(3), (b"ROUT1:SCAN?\r", b"3\r")])
    assert isinstance(switch, OpticalSwitch)
    await switch.set_port(3)
    assert await switch.get_port() == 3
    assert switch.identity == {
        "vendor": "DiCon Fiberoptics Inc",
        "model": "MEMS 1x4",
        "serial": "SN0412",
        "firmware": "1.08",
    }
    transport.assert_complete()


async def test_module_number_is_in_every_header() -> None:
    switch, transport = await connected([*route(2, module=3), (b"ROUT3:SCAN?\r", b"2\r")], module=3)
    await switch.set_port(2)
    assert await switch.get_port() == 2
    transport.assert_complete()


async def test_snapshot_health_and_safe_state() -> None:
    switch, transport = await connected(
        [
            (b"ROUT1:SCAN?\r", b"2\r"),
            *route(1),
            OK,
            (b"ROUT1:SCAN?\r", b"1\r"),
            (b"SYST:ERR?\r", b'-222,"Data out of range"\r'),
            (b"ROUT1:SCAN?\r", b"2\r"),
            *route(4),
        ]
    )
    snap = await switch.snapshot()
    assert snap["port"] == 2 and snap["n_ports"] == 4 and snap["module"] == 1
    await switch.set_port(1)
    assert (await switch.health()).ok
    bad = await switch.health()
    assert not bad.ok and "Data out of range" in bad.detail and "expected 1" in bad.detail
    await switch.safe_state()
    assert switch.remembered_settings == {"port": 4}
    transport.assert_complete()


async def test_device_error_is_instrument_fault_naming_the_command() -> None:
    switch, transport = await connected(
        [(b"ROUT1:SCAN 3\r", b""), (b"SYST:ERR?\r", b'-113,"Undefined header"\r')]
    )
    with pytest.raises(InstrumentFault) as info:
        await switch.set_port(3)
    assert info.value.command == "ROUT1:SCAN 3" and "-113" in str(info.value)
    assert "port" not in switch.remembered_settings
    transport.assert_complete()


async def test_odd_replies_silence_and_bad_identity() -> None:
    switch, transport = await connected(
        [
            (b"ROUT1:SCAN?\r", b"7\r"),
            (b"ROUT1:SCAN?\r", b'0,"No error"\r'),  # a late reply to an abandoned query
            (b"ROUT1:SCAN?\r", b"2\r"),  # asked again after the input was flushed
            *[(b"ROUT1:SCAN?\r", b"two\r")] * 3,  # garbled every time: given up
            (b"ROUT1:SCAN?\r", SILENCE),
        ]
    )
    with pytest.raises(InstrumentFault, match="channel 7"):
        await switch.get_port()
    assert await switch.get_port() == 2
    with pytest.raises(ProtocolError, match="did not parse 3 times"):
        await switch.get_port()
    with pytest.raises(InstrumentTimeout):
        await switch.get_port()
    transport.assert_complete()
    stranger = ScriptedTransport([(b"*IDN?\r", b"Agilent,8164B,1,2\r")], instrument="switch")
    with pytest.raises(ProtocolError, match="not a DiCon"):
        await DiconMems("switch", stranger).connect()


async def test_bad_port_rejected_and_reconnect_reapplies() -> None:
    switch, transport = await connected(
        [*route(2), (b"ROUT1:SCAN?\r", DISCONNECT), *CONNECT, *route(2)]
    )
    with pytest.raises(ValueError, match=r"port=5 is outside \[1, 4\]"):
        await switch.set_port(5)
    await switch.set_port(2)
    with pytest.raises(ConnectionLost):
        await switch.get_port()
    await switch.connect()
    assert transport.open_count == 2
    transport.assert_complete()


def test_from_config_rejects_port_beyond_size() -> None:
    spec = InstrumentSpec(
        name="switch",
        class_path="drivers.dicon.mems:DiconMems",
        settings={"n_ports": 8, "port": 9},
        transport=TransportSpec(kind="serial", address="/dev/ttyUSB1"),
    )
    with pytest.raises(ConfigError, match=r"settings\.port: .*port=9"):
        DiconMems.from_config(spec, BuildContext(lab="lab", node="bob"))

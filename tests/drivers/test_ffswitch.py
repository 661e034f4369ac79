"""Exact-exchange tests of the Agiltron FF 1xN switch driver: every byte is listed."""

from __future__ import annotations

import pytest

from drivers.agiltron.ffswitch import FFSwitch
from labctl.interfaces import (
    BuildContext,
    ConfigError,
    InstrumentFault,
    InstrumentSpec,
    InstrumentTimeout,
    OpticalSwitch,
    ProtocolError,
    TransportSpec,
)
from labctl.testing.exchange import (
    DISCONNECT,
    SILENCE,
    ExchangeMismatch,
    ScriptedTransport,
    Step,
)

GET = b"\x01\x11\x00\x00"


def set_port(port: int) -> Step:
    frame = bytes([0x01, 0x12, 0x00, port])
    return (frame, frame)


async def connected(script: list[Step], n_ports: int = 4) -> tuple[FFSwitch, ScriptedTransport]:
    transport = ScriptedTransport([(GET, b"\x01\x11\x00\x02"), *script], instrument="switch")
    switch = FFSwitch("switch", transport, n_ports=n_ports, parking_port=4)
    await switch.connect()
    return switch, transport


async def test_route_and_read_exact_bytes() -> None:
    switch, transport = await connected([set_port(3), (GET, b"\x01\x11\x00\x03")])
    assert isinstance(switch, OpticalSwitch)
    await switch.set_port(3)
    assert await switch.get_port() == 3
    assert switch.identity == {"vendor": "Agiltron", "model": "FF 1x4"}
    transport.assert_complete()


async def test_snapshot_health_and_safe_state() -> None:
    switch, transport = await connected(
        [
            (GET, b"\x01\x11\x00\x02"),
            set_port(1),
            (GET, b"\x01\x11\x00\x01"),
            (GET, b"\x01\x11\x00\x02"),
            set_port(4),
        ]
    )
    snap = await switch.snapshot()
    assert snap["port"] == 2 and snap["n_ports"] == 4 and snap["parking_port"] == 4
    await switch.set_port(1)
    assert (await switch.health()).ok
    moved = await switch.health()  # someone turned the front-panel knob
    assert not moved.ok and "expected 1" in moved.detail
    await switch.safe_state()
    assert switch.remembered_settings == {"port": 4}
    transport.assert_complete()


async def test_contradicting_echo_is_instrument_fault() -> None:
    switch, transport = await connected(
        [(b"\x01\x12\x00\x03", b"\x01\x12\x00\x01"), (GET, b"\x01\x11\x00\x00")]
    )
    with pytest.raises(InstrumentFault) as info:
        await switch.set_port(3)
    assert info.value.command == "01 12 00 03" and "port 1" in str(info.value)
    assert "port" not in switch.remembered_settings
    with pytest.raises(InstrumentFault, match="port 0"):
        await switch.get_port()
    transport.assert_complete()


async def test_garbled_frame_is_re_sent_twice_then_protocol_error() -> None:
    bad = (GET, b"\x55\xaa\x00\x01")
    switch, transport = await connected(
        [bad, (GET, b"\x01\x11\x00\x03"), bad, bad, (GET, b"\x01\x12\x00\x01")]
    )
    assert await switch.get_port() == 3  # the frame was re-sent after the garbled reply
    with pytest.raises(ProtocolError) as caught:
        await switch.get_port()
    assert "did not parse 3 times" in "".join(caught.value.__notes__)
    transport.assert_complete()


async def test_silence_and_short_reply_are_timeouts() -> None:
    # The second reply is half a frame whose other half never comes.
    switch, transport = await connected([(GET, SILENCE), (GET, b"\x01\x11"), (b"", SILENCE)])
    with pytest.raises(InstrumentTimeout) as info:
        await switch.get_port()
    assert info.value.command == "01 11 00 00"
    with pytest.raises(InstrumentTimeout):
        await switch.get_port()
    with pytest.raises(ExchangeMismatch, match=r"never read: \[b'\\x01\\x11'\]"):
        transport.assert_complete()


async def test_bad_arguments_rejected_before_the_wire() -> None:
    switch, transport = await connected([])
    with pytest.raises(ValueError, match=r"port=5 is outside \[1, 4\]"):
        await switch.set_port(5)
    with pytest.raises(TypeError, match="port"):
        await switch.set_port(2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="parking_port"):
        FFSwitch("switch", transport, n_ports=2, parking_port=3)
    transport.assert_complete()


async def test_reconnect_reapplies_port() -> None:
    switch, transport = await connected(
        [
            set_port(2),
            (GET, DISCONNECT),
            (GET, b"\x01\x11\x00\x01"),  # identify after the reconnect: a fresh card
            set_port(2),  # re-applied
            (GET, b"\x01\x11\x00\x02"),  # the call, run again
        ]
    )
    await switch.set_port(2)
    assert await switch.get_port() == 2
    assert transport.open_count == 2 and switch.reconnects == 1
    transport.assert_complete()


def test_from_config_rejects_port_beyond_size() -> None:
    spec = InstrumentSpec(
        name="switch",
        class_path="drivers.agiltron.ffswitch:FFSwitch",
        settings={"n_ports": 8, "port": 9},
        transport=TransportSpec(kind="serial", address="/dev/ttyUSB1"),
    )
    with pytest.raises(ConfigError, match=r"settings\.port: .*port=9"):
        FFSwitch.from_config(spec, BuildContext(lab="lab", node="bob"))

"""The Agiltron FF wire twin speaks the CL-LB switch driver's 4-byte frames: raw bytes on
the pseudo-terminal, every reply checked."""

from __future__ import annotations

from tests.sims.wire.served import pty_exchange, served

GET = bytes([0x01, 0x11, 0x00, 0x00])


def route(port: int) -> bytes:
    return bytes([0x01, 0x12, 0x00, port])


async def test_route_is_echoed_and_read_back() -> None:
    async with served("optical_switch") as setup:
        path = setup.serial_path
        for port in (3, 1, 4):
            assert await pty_exchange(path, route(port), ends=(route(port),)) == route(port)
            assert setup.world.switch_port() == port
            reply = await pty_exchange(path, GET, ends=(bytes([0x01, 0x11, 0x00, port]),))
            assert reply == bytes([0x01, 0x11, 0x00, port])


async def test_refusal_names_the_routed_port_and_junk_is_skipped() -> None:
    async with served("optical_switch") as setup:
        path = setup.serial_path
        assert await pty_exchange(path, route(2), ends=(route(2),)) == route(2)
        # A port the switch lacks: the card answers with the port it still routes.
        assert await pty_exchange(path, route(9), ends=(route(2),)) == route(2)
        assert setup.world.switch_port() == 2
        # Bytes that cannot start a frame are dropped; the frame after them is served.
        reply = await pty_exchange(path, b"\xff\x00" + route(3), ends=(route(3),))
        assert reply == route(3)
        assert setup.world.switch_port() == 3

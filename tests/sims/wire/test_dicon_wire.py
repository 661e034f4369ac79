"""The DiCon MEMS wire twin speaks the switch's SCPI text: raw bytes on the
pseudo-terminal, every reply checked (routing, stepping, module numbers, error queue)."""

from __future__ import annotations

from tests.sims.wire.served import pty_exchange, served

CR = b"\r"


async def test_route_read_back_and_step() -> None:
    async with served("optical_switch", wire="dicon-mems") as setup:
        path = setup.serial_path
        idn = await pty_exchange(path, b"*IDN?\r", ends=(CR,))
        assert idn == b"DiCon Fiberoptics Inc,MEMS 1x4,LCTWIN0003,1.08\r"
        for port in (3, 1, 4):
            reply = await pty_exchange(
                path, f"ROUT1:SCAN {port};ROUT1:SCAN?\r".encode(), ends=(CR,)
            )
            assert reply == f"{port}\r".encode()
            assert setup.world.switch_port() == port
        # Long form, any case, LF end; NEXT wraps from 4 to 1.
        assert await pty_exchange(path, b"route1:scan:next\nROUTE1:SCAN?\n", ends=(CR,)) == b"1\r"
        assert setup.world.switch_port() == 1
        assert await pty_exchange(path, b"WEN 1;WEN?\r", ends=(CR,)) == b"1\r"


async def test_refusals_queue_errors_and_keep_the_route() -> None:
    async with served("optical_switch", wire="dicon-mems") as setup:
        path = setup.serial_path
        assert await pty_exchange(path, b"ROUT1:SCAN 2;ROUT1:SCAN?\r", ends=(CR,)) == b"2\r"
        # Refused commands answer nothing: only the error queries' line comes back.
        bad = (b"ROUT1:SCAN 9", b"ROUT1:SCAN 0", b"ROUT2:SCAN 1", b"ROUT1:SCAN", b"FOO 1")
        errors = b";".join([b"SYST:ERR?"] * 6)
        reply = await pty_exchange(path, CR.join([*bad, errors]) + CR, ends=(CR,))
        assert setup.world.switch_port() == 2
        assert reply.decode().split(";") == [
            '-222,"Data out of range"',
            '-222,"Data out of range"',
            '-113,"Undefined header"',
            '-109,"Missing parameter"',
            '-113,"Undefined header"',
            '0,"No error"\r',
        ]

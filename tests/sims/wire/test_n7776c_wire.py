"""The N7776C wire twin speaks the programming guide's SCPI: raw text over a real TCP
socket, every reply checked (slot 0, unit suffixes, SI replies, MIN/MAX, lock, errors)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.sims.wire.served import Served, served

LF = b"\n"


class Link:
    """A raw SCPI socket: write a message, read one LF-terminated reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, message: str, end: bytes = LF) -> None:
        self.writer.write(message.encode("ascii") + end)
        await self.writer.drain()

    async def ask(self, message: str, end: bytes = LF) -> str:
        await self.send(message, end)
        raw = await asyncio.wait_for(self.reader.readuntil(LF), 2.0)
        return raw[:-1].decode("ascii")


@asynccontextmanager
async def link() -> AsyncIterator[tuple[Link, Served]]:
    async with served("laser", wire="keysight-n7776c") as setup:
        reader, writer = await asyncio.open_connection(*setup.address)
        try:
            yield Link(reader, writer), setup
        finally:
            writer.close()
            await writer.wait_closed()


async def test_identity_units_and_si_replies() -> None:
    async with link() as (scpi, setup):
        twin = setup.twin
        assert await scpi.ask("*IDN?") == "Keysight Technologies,N7776C,LCTWIN0002,V1.0.3"
        assert await scpi.ask(":SOUR0:POW:UNIT?") == "+0"  # dBm after power-up
        await scpi.send(":SOURce0:POWer 2.5mW")
        assert await scpi.ask("*OPC?") == "+1"
        assert await twin.get_power_mw() == pytest.approx(2.5)
        assert await scpi.ask(":SOUR0:POW?") == "+3.97940009E+000"  # dBm
        await scpi.send("sour0:pow:unit W")
        assert await scpi.ask(":sour:pow:lev:imm:ampl?") == "+2.50000000E-003"
        await scpi.send(":SOUR0:POW 0.0015", end=b"\r\n")  # no suffix: the unit, W
        assert await scpi.ask(":SOUR0:POW?") == "+1.50000000E-003"
        await scpi.send(":SOUR0:WAV 1550.125NM")
        assert await scpi.ask(":SOUR0:WAV?") == "+1.55012500E-006"
        await scpi.send(":SOUR0:WAV 1.5491E-6")  # no suffix: metres
        assert await scpi.ask("*OPC?") == "+1"
        assert await twin.get_wavelength_nm() == pytest.approx(1549.1)
        assert await scpi.ask(":SOUR0:WAV? MIN;:SOUR0:WAV? MAX") == (
            "+1.48000000E-006;+1.62000000E-006"
        )
        assert await scpi.ask(":SOUR0:POW? MAX") == "+2.00000000E-002"
        await scpi.send(":SOUR0:POW:STAT ON")
        assert await scpi.ask(":SOUR0:POW:STAT?") == "1"
        assert setup.world.snapshot()["laser"]["enabled"] is True
        assert await scpi.ask(":SYST:ERR?") == '+0,"No error"'


async def test_refusals_queue_the_guides_codes() -> None:
    async with link() as (scpi, setup):
        await scpi.send(":SOUR0:POW:STAT 0")
        await scpi.send(":SOUR0:WAV 1700NM")  # outside the N7776C band
        await scpi.send(":SOUR0:POW 40MW")
        await scpi.send(":SOUR1:POW:STAT 1")  # no laser in slot 1
        await scpi.send(":SOUR0:WAV 1550furlongs")
        await scpi.send(":SOUR0:POW")
        await scpi.send(":LOCK 1,4321")  # wrong password
        await scpi.send(":LOCK 1,1234")
        await scpi.send(":SOUR0:POW:STAT 1")  # locked: no light
        assert await scpi.ask("*OPC?") == "+1"
        assert await twin_wavelength(setup) == pytest.approx(1550.0)
        replies = [await scpi.ask(":SYST:ERR?") for _ in range(8)]
        assert replies == [
            '-222,"Data out of range"',
            '-222,"Data out of range"',
            '-113,"Undefined header"',
            '-131,"Invalid suffix"',
            '-109,"Missing parameter"',
            '-221,"Settings conflict"',
            '-221,"Settings conflict"',
            '+0,"No error"',
        ]
        assert await scpi.ask(":LOCK?") == "1"
        assert await scpi.ask(":SOUR0:POW:STAT?") == "0"
        await scpi.send(":NOPE?")  # an unknown query is not answered, only queued
        await scpi.send("*CLS")
        assert await scpi.ask("*STB?;:SYST:ERR?") == '+0;+0,"No error"'


async def twin_wavelength(setup: Served) -> float:
    return float(await setup.twin.get_wavelength_nm())

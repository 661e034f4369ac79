"""The TSL-570 wire twin speaks the manual's SCPI: raw text over a real TCP socket, every
reply checked (long and short forms, case, terminators, IEEE 488.2 common commands, the
error queue's exact codes and texts)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.sims.wire.served import Served, served

CR = b"\r"


class Link:
    """A raw SCPI socket: write a message, read one CR-terminated reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, message: str, end: bytes = CR) -> None:
        self.writer.write(message.encode("ascii") + end)
        await self.writer.drain()

    async def ask(self, message: str, end: bytes = CR) -> str:
        await self.send(message, end)
        raw = await asyncio.wait_for(self.reader.readuntil(CR), 2.0)
        return raw[:-1].decode("ascii")

    async def sync(self) -> None:
        """Wait until every earlier message was handled (nothing else was answered)."""
        assert await self.ask("*OPC?") == "1"


@asynccontextmanager
async def link() -> AsyncIterator[tuple[Link, Served]]:
    async with served("laser") as setup:
        host, port = setup.address
        reader, writer = await asyncio.open_connection(host, port)
        try:
            yield Link(reader, writer), setup
        finally:
            writer.close()
            await writer.wait_closed()


async def test_long_short_and_any_case_forms_reach_the_twin() -> None:
    async with link() as (scpi, setup):
        twin = setup.twin
        await scpi.send(":POWer:UNIT 1")
        await scpi.send(":POWer:LEVel 2.5")
        await scpi.sync()
        assert await twin.get_power_mw() == pytest.approx(2.5)
        for query in (":POW?", ":POWer?", "POWER:LEVEL?", ":pow:lev?"):
            assert await scpi.ask(query) == "2.5000"
        await scpi.send("power:state on")
        await scpi.sync()
        assert await twin.get_output() is True
        for query in (":POW:STAT?", ":POWer:STATe?", "pow:state?"):
            assert await scpi.ask(query) == "1"
        assert await scpi.ask(":POWer:ACTual:LEVel?") == "2.5000"
        assert await scpi.ask(":POWer:SHUTter?") == "0"
        await scpi.send(":WAVelength 1549.5")
        await scpi.sync()
        assert await twin.get_wavelength_nm() == pytest.approx(1549.5)
        assert await scpi.ask(":wav?") == "1549.5000"
        assert await scpi.ask(":WAVelength:MINimum?") == "1260.0000"
        assert await scpi.ask(":WAV:MAX?") == "1680.0000"
        assert await scpi.ask(":WAV:FREQ:MIN?") == f"{299792.458 / 1680:.5f}"
        await scpi.send(":COHCtrl 1")
        assert await scpi.ask(":COHC?") == "1"
        assert setup.server.errors == []


@pytest.mark.parametrize("end", [b"\r", b"\n", b"\r\n"])
async def test_every_terminator_is_taken_and_replies_end_in_cr(end: bytes) -> None:
    async with link() as (scpi, _):
        assert (await scpi.ask("*IDN?", end)).startswith("SANTEC,TSL-570,")
        assert await scpi.ask(":POW:UNIT?", end) == "1"
        assert await scpi.ask(":SYST:ERR?", end) == '0,"No error"'


async def test_compound_messages_answer_in_one_line() -> None:
    async with link() as (scpi, setup):
        assert await scpi.ask(":POW 1.25;:POW?;:POW:UNIT?") == "1.2500;1"
        assert await setup.twin.get_power_mw() == pytest.approx(1.25)


async def test_error_queue_gives_the_manuals_codes_and_texts() -> None:
    async with link() as (scpi, setup):
        await scpi.send(":FOO 1")  # unknown header
        await scpi.send(":WAV 1700")  # outside the tuning range
        await scpi.send(":POW abc")  # a word where a number goes
        await scpi.send(":POW")  # no value
        await scpi.send("*CLS 1")  # a parameter where none is allowed
        await scpi.send(":WAV 1550nm")  # Legacy commands take no unit
        await scpi.send(":WAV:SWE 1")  # no sweep is simulated
        await scpi.send(":BAR?")  # an unknown query gets no answer at all
        await scpi.sync()
        expected = [
            '-113,"Undefined header"',
            '-222,"Data out of range"',
            '-148,"Character data not allowed"',
            '-109,"Missing parameter"',
            '-108,"Parameter not allowed"',
            '-148,"Character data not allowed"',
            '-200,"Execution error"',
            '-113,"Undefined header"',
        ]
        assert setup.server.errors == expected
        assert await scpi.ask("*STB?") == "4"  # error available
        for reply in expected:
            assert await scpi.ask(":SYSTem:ERRor?") == reply
        assert await scpi.ask(":SYST:ERR?") == '0,"No error"'
        assert await setup.twin.get_wavelength_nm() != 1700.0


async def test_common_commands_and_status_registers() -> None:
    async with link() as (scpi, setup):
        assert await scpi.ask("*IDN?") == "SANTEC,TSL-570,LCTWIN0001,0001.0000.0001"
        assert await scpi.ask("*TST?") == "0"
        await scpi.send("*ESE 48")
        assert await scpi.ask("*ESE?") == "48"
        await scpi.send("*SRE 32")
        await scpi.send(":NOPE")
        await scpi.send("*OPC")
        await scpi.send("*WAI")
        assert await scpi.ask("*STB?") == str(4 | 32 | 64)  # EAV, ESB, MSS
        assert await scpi.ask("*ESR?") == str(32 | 1)  # command error, operation complete
        assert await scpi.ask("*ESR?") == "0"  # reading clears it
        await scpi.send(":POW 3.0")
        await scpi.send("*RST")  # clears the error queue; settings stay
        assert await scpi.ask(":SYST:ERR?") == '0,"No error"'
        assert await scpi.ask(":POW?") == "3.0000"
        await scpi.send(":NOPE")
        await scpi.send("*CLS")
        assert await scpi.ask("*STB?") == "0"
        assert setup.server.errors == []


async def test_power_units_frequency_and_scpi_command_set() -> None:
    async with link() as (scpi, setup):
        twin = setup.twin
        await scpi.send(":POW:UNIT 0")
        await scpi.send(":POW 3")
        await scpi.sync()
        assert await twin.get_power_mw() == pytest.approx(10**0.3)
        assert await scpi.ask(":POW?") == "3.0000"
        await scpi.send(":FREQ 193.41449")
        await scpi.sync()
        assert await twin.get_wavelength_nm() == pytest.approx(299792.458 / 193.41449)
        assert await scpi.ask(":WAV:FREQ?") == "193.41449"
        await scpi.send(":SYSTem:COMMunicate:CODe 1")  # SCPI: metres, hertz, unit suffixes
        await scpi.send(":WAV 1.5505E-6")
        await scpi.sync()
        assert await twin.get_wavelength_nm() == pytest.approx(1550.5)
        assert await scpi.ask(":WAV?") == "1.55050000E-06"
        await scpi.send(":WAV 1310.25NM")
        await scpi.send(":POW 2MW")
        await scpi.sync()
        assert await twin.get_wavelength_nm() == pytest.approx(1310.25)
        assert await twin.get_power_mw() == pytest.approx(2.0)
        assert await scpi.ask(":SYST:COMM:COD?") == "1"
        assert setup.server.errors == []


async def test_kept_sweep_parameters_read_back() -> None:
    async with link() as (scpi, setup):
        await scpi.send(":WAVelength:SWEep:SPEed 50")
        await scpi.send(":WAV:SWE:STAR 1510.5")
        await scpi.send(":TRIG:OUTP 3")
        assert await scpi.ask(":WAV:SWE:SPE?") == "50"
        assert await scpi.ask(":WAVelength:SWEep:STARt?") == "1510.5000"
        assert await scpi.ask(":TRIGger:OUTPut?") == "3"
        assert await scpi.ask(":WAV:SWE?") == "0"
        assert setup.server.errors == []


async def test_an_unterminated_flood_is_dropped_and_the_link_goes_on() -> None:
    async with link() as (scpi, _):
        scpi.writer.write(b"X" * 70_000 + CR)  # dropped up to its terminator
        assert (await scpi.ask("*IDN?")).startswith("SANTEC,")
        assert await scpi.ask(":SYST:ERR?") == '-102,"Syntax error"'

"""The AWG5208 wire twin: raw SCPI as the programmer manual gives it, and our driver
through it into the world (the pattern played is the pattern loaded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from labctl.interfaces.pattern import seeded_pattern, state_codes
from sims.wire.awg5208 import Awg5208Wire, take_program
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin
from tests.sims.wire.wired_models import wired_model


class Raw:
    """A raw-socket SCPI client: send bytes, read one LF-terminated reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ask(self, text: str) -> str:
        await self.send(text.encode() + b"\n")
        return (await asyncio.wait_for(self.reader.readline(), 2.0)).decode().strip()


@pytest.fixture
async def awg() -> AsyncIterator[tuple[Awg5208Wire, Raw]]:
    world = World.from_settings(WIRE_WORLD)
    async with make_twin("transmitter", world) as twin:
        wire = Awg5208Wire(NAMES["transmitter"], twin)
        await wire.start()
        host, port = wire.endpoints()["control"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            yield wire, Raw(reader, writer)
        finally:
            writer.close()
            await wire.stop()


def test_program_messages_end_at_lf_outside_blocks_and_quotes() -> None:
    buffer = bytearray(b'A "x\ny";B #14ab\nc\nMMEM:DATA "f",#13\nyzNEXT\n')
    assert take_program(buffer) == b'A "x\ny";B #14ab\nc'
    assert take_program(buffer) == b'MMEM:DATA "f",#13\nyz'  # the block ends the message
    assert take_program(buffer) == b"NEXT"
    assert take_program(buffer) is None
    partial = bytearray(b"W #210abc")
    assert take_program(partial) is None and partial == bytearray(b"W #210abc")


async def test_headers_short_long_any_case_and_kept_settings(
    awg: tuple[Awg5208Wire, Raw],
) -> None:
    _, raw = awg
    assert (await raw.ask("*idn?")).startswith("TEKTRONIX,AWG5208,")
    assert await raw.ask("CLOC:SRAT 4E8;:clock:srate?") == "4.0000000000E+08"
    await raw.send(b"SOUR3:VOLT 0.5;SOURce3:VOLTage:LEVel:IMMediate:OFFSet 0.1\n")
    assert await raw.ask("SOURCE3:VOLTAGE:LEVEL:IMMEDIATE:AMPLITUDE?") == "0.5"
    assert await raw.ask("SOUR3:VOLT:OFFS?") == "0.1"
    assert await raw.ask("SYST:ERR?") == '0,"No error"'


async def test_errors_are_queued_not_answered(awg: tuple[Awg5208Wire, Raw]) -> None:
    wire, raw = awg
    await raw.send(b'FOO:BAR 1\nCLOCk:SRATe 9E9\nWLISt:WAVeform:DATA "nope",0,1,#14abcd\n')
    assert await raw.ask("SYSTem:ERRor?") == '-113,"Undefined header"'
    assert await raw.ask("SYSTem:ERRor?") == '-222,"Data out of range; sample rate"'
    assert (await raw.ask("SYSTem:ERRor:CODE?")) == "-224"
    assert await raw.ask("SYST:ERR?") == '0,"No error"'
    assert wire.state.srate_hz == 2.5e9


async def test_waveforms_run_into_the_twin(awg: tuple[Awg5208Wire, Raw]) -> None:
    wire, raw = awg
    levels = np.array([1.0, 0.75, 0.5, 1.0], np.float32).repeat(4)  # classes 0 1 2 0
    states = np.array([-0.75, -0.25, 0.25, 0.75], np.float32).repeat(4)
    blocks = [b"#264" + levels.tobytes(), b"#264" + states.tobytes()]
    await raw.send(b"CLOCk:SRATe 4E8\n")
    for n, data in enumerate(blocks, 1):
        await raw.send(f'WLIS:WAV:NEW "w{n}",16\n'.encode())
        await raw.send(f'WLIS:WAV:DATA "w{n}",0,16,'.encode() + data + b"\n")
        await raw.send(f'SOUR{n}:CASS:WAV "w{n}"\n'.encode())
    assert await raw.ask("WLISt:LIST?") == '"w1","w2"'
    assert await raw.ask("WLISt:SIZE?") == "2"
    assert await raw.ask('WLIS:WAV:LENG? "w2"') == "16"
    assert await raw.ask("AWGC:RUN;*OPC?") == "1"
    assert await raw.ask("AWGControl:RSTATe?") == "2"
    segment = wire.twin.world._program().segments[-1]
    assert segment.codes.unpacked().tolist() == [0 * 4 + 0, 1 * 4 + 1, 2 * 4 + 2, 0 * 4 + 3]
    assert segment.repeat
    assert await raw.ask("AWGC:STOP;:AWGC:RST?") == "0"
    assert not await wire.twin.is_running()


async def test_driver_through_the_wire_plays_the_pattern() -> None:
    async with wired_model("awg5208") as setup:
        pattern = seeded_pattern(3000, [0.7, 0.2, 0.1], 0.5, seed=9)
        await setup.driver.load_pattern(pattern, repeat=True)
        await setup.driver.start()
        assert await setup.driver.is_running()
        segment = setup.world._program().segments[-1]
        assert np.array_equal(segment.codes.unpacked(), state_codes(pattern)) and segment.repeat
        assert await setup.twin.get_marker_divider() == 1000  # from the clock markers
        await setup.driver.load_pattern(pattern.slice(0, 1000), repeat=False)
        await setup.driver.start()
        segment = setup.world._program().segments[-1]
        assert segment.codes.size == 1000 and not segment.repeat
        await setup.driver.safe_state()
        assert not await setup.driver.is_running()
        assert (await setup.driver.health()).ok

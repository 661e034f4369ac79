"""The ID120 wire twin: each channel of a detector twin answers as its own ID120 module."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sims.wire.id120 import Id120Wire
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin


class Module:
    """A raw SCPI client of one module."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, text: str) -> None:
        self.writer.write(text.encode() + b"\n")
        await self.writer.drain()

    async def ask(self, text: str) -> str:
        await self.send(text)
        return (await asyncio.wait_for(self.reader.readline(), 2.0)).decode().strip()


@pytest.fixture
async def modules() -> AsyncIterator[tuple[Id120Wire, list[Module]]]:
    world = World.from_settings(WIRE_WORLD)
    world.set_laser_enabled(True)
    async with make_twin("detector", world) as twin:
        wire = Id120Wire(NAMES["detector"], twin)
        await wire.start()
        clients = []
        for channel in range(4):
            host, port = wire.endpoints()[f"channel{channel}"].rsplit(":", 1)
            clients.append(Module(*await asyncio.open_connection(host, int(port))))
        try:
            yield wire, clients
        finally:
            for client in clients:
                client.writer.close()
            await wire.stop()


async def test_each_module_is_one_channel(modules: tuple[Id120Wire, list[Module]]) -> None:
    wire, spads = modules
    assert await spads[2].ask("*IDN?") == "IDQuantique,ID120,LCTWIN0004-2,2.1.0"
    await spads[2].send("BIAS:VOLTAGE 11040000")
    await spads[2].send("THRESHOLD:VOLTAGE 200500")
    await spads[2].send("REG:RUN TRUE")
    await spads[1].send("REG:RUN FALSE")
    assert await spads[2].ask("BIAS:VOLTAGE?") == "11040000"
    assert await wire.twin.get_bias_ua(2) == pytest.approx(11.04)
    assert await wire.twin.get_trigger_level_mv(2) == pytest.approx(200.5)
    assert await wire.twin.get_enabled(2) and not await wire.twin.get_enabled(1)
    assert await spads[2].ask("REG:STATE?") == "ON" and await spads[1].ask("REG:STATE?") == "OFF"
    assert int(await spads[2].ask("COUNTERS:DETECTION_FREQ?")) > 0
    assert await spads[1].ask("COUNTERS:DETECTION_FREQ?") == "0"


async def test_refused_settings_keep_the_value(modules: tuple[Id120Wire, list[Module]]) -> None:
    _, spads = modules
    spad = spads[0]
    before = await spad.ask("THRESHOLD:VOLTAGE?")
    await spad.send("THRESHOLD:VOLTAGE 120001")  # not on the 500 µV step
    await spad.send("THRESHOLD:VOLTAGE 2000000")  # beyond 1.047 V
    assert await spad.ask("THRESHOLD:VOLTAGE?") == before
    await spad.send("COUNTERS:INTEGRATION_TIME 300")
    assert await spad.ask("COUNTERS:INTEGRATION_TIME?") == "1000"
    await spad.send("COUNTERS:INTEGRATION_TIME 400")
    assert await spad.ask("COUNTERS:INTEGRATION_TIME?") == "400"
    assert await spad.ask("BIAS:CAPABILITY?") == "0,250000000,80000"
    assert await spad.ask("NO:SUCH?") == "ERROR"
    assert await spad.ask("INFO:PRODUCT_NAME?") == "ID120"
    await spad.send("OUTPUT2:POLARITY NEGATIVE")
    assert await spad.ask("OUTPUT2:POLARITY?") == "NEGATIVE"
    assert await spad.ask("BIAS:ERROR_STATUS?") == "FALSE"

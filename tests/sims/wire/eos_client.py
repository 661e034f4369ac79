"""An Eos wire twin on loopback and a raw TCP control client, for the Eos wire tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sims.wire.eos import EosWire
from sims.world import World
from tests.sims.wire.wired import WIRE_WORLD, make_twin

ETB = b"\x17"


@dataclass
class ServedEos:
    """The world, the twin, its wire server and one control connection."""

    world: World
    twin: Any
    wire: EosWire
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, raw: bytes | str) -> None:
        """Write bytes as they are (no terminator added)."""
        self.writer.write(raw.encode() if isinstance(raw, str) else raw)
        await self.writer.drain()

    async def reply(self) -> dict[str, Any]:
        """The next ETB-ended message, which must hold one JSON object."""
        raw = await asyncio.wait_for(self.reader.readuntil(ETB), 5.0)
        message: dict[str, Any] = json.loads(raw[:-1])
        return message

    async def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` as the vendor's client does (``json.dumps``, unterminated)."""
        await self.send(json.dumps(message))
        return await self.reply()


@asynccontextmanager
async def served_eos() -> AsyncIterator[ServedEos]:
    """A detector twin served as an Eos on free loopback ports, with one control client."""
    world = World.from_settings(WIRE_WORLD)
    twin = make_twin("detector", world)
    async with twin:
        wire = EosWire("detectors", twin)
        await wire.start()
        host, port = wire.endpoints()["control"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            yield ServedEos(world, twin, wire, reader, writer)
        finally:
            writer.close()
            await wire.stop()

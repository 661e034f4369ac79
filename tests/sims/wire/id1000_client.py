"""An ID1000 wire twin on loopback and a plain REQ client, for the ID1000 wire tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from sims.wire.id1000 import Id1000Wire
from sims.world import World
from tests.sims.wire.wired import WIRE_WORLD, make_twin


@dataclass
class Served:
    """The world, the twin, its wire server and a REQ socket connected to it."""

    world: World
    twin: Any
    wire: Id1000Wire
    req: zmq.asyncio.Socket

    async def ask(self, command: str) -> str:
        """Send one program message, return the reply text (as IDQ's ``zmq_exec`` does)."""
        await self.req.send_string(command)
        return str((await self.req.recv()).decode("utf-8"))


@asynccontextmanager
async def served_id1000(*, laser_on: bool = True) -> AsyncIterator[Served]:
    """A Bob-side tagger twin served as an ID1000 on free loopback ports."""
    world = World.from_settings(WIRE_WORLD)
    world.set_laser_enabled(laser_on)
    twin = make_twin("time_tagger", world)
    async with twin:
        wire = Id1000Wire("tagger-bob", twin)
        await wire.start()
        req = zmq.asyncio.Context.instance().socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.setsockopt(zmq.RCVTIMEO, 5000)
        req.connect(wire.endpoints()["control"])
        try:
            yield Served(world, twin, wire, req)
        finally:
            req.close(linger=0)
            await wire.stop()

"""One wire twin served alone on loopback (a free TCP port or a pseudo-terminal), for
tests that drive it with something other than our own drivers (raw bytes, public clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sims.wire.epc400 import Epc400Wire
from sims.wire.ffswitch import FfSwitchWire
from sims.wire.models import WIRE_MODELS
from sims.wire.tsl570 import Tsl570Wire
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin

SERVERS: dict[str, Any] = {
    "laser": Tsl570Wire,
    "polarization_controller": Epc400Wire,
    "optical_switch": FfSwitchWire,
}


@dataclass
class Served:
    """A twin, the wire server in front of it, and the world under it."""

    world: World
    twin: Any
    server: Any

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of a TCP server."""
        host, port = self.server.endpoints()["control"].rsplit(":", 1)
        return host, int(port)

    @property
    def serial_path(self) -> str:
        """The pseudo-terminal a serial client opens."""
        return str(self.server.endpoints()["serial"])


@asynccontextmanager
async def served(
    kind: str, *, wire: str | None = None, **server_options: Any
) -> AsyncIterator[Served]:
    """Serve the twin of ``kind`` (laser, polarization_controller, optical_switch), as
    model ``wire`` (sims/wire/models.py) when given."""
    world = World.from_settings(WIRE_WORLD)
    twin = make_twin(kind, world)
    server_class = SERVERS[kind] if wire is None else WIRE_MODELS[kind][wire]
    async with twin:
        server = server_class(NAMES[kind], twin, **server_options)
        await server.start()
        try:
            yield Served(world, twin, server)
        finally:
            await server.stop()


async def pty_exchange(path: str, request: bytes, *, ends: tuple[bytes, ...]) -> bytes:
    """Write ``request`` to the pseudo-terminal ``path``; read until the reply ends with one
    of ``ends`` (or 2 s pass), as a terminal program on the serial port would."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, request)
        data = b""
        for _ in range(200):
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                data += os.read(fd, 4096)
            if data.endswith(ends):
                break
        return data
    finally:
        os.close(fd)

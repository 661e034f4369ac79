"""The HydraHarp wire twin: HHLib calls as JSON lines, FiFo records on a ZMQ stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import zmq
import zmq.asyncio

from sims.wire.hydraharp import HydraHarpWire
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin


class Bridge:
    """A raw client of the bridge's control socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def call(self, function: str, *args: Any) -> dict[str, Any]:
        self.writer.write(json.dumps({"call": function, "args": list(args)}).encode() + b"\n")
        await self.writer.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.reader.readline(), 2.0))
        return reply


@pytest.fixture
async def hh() -> AsyncIterator[tuple[HydraHarpWire, Bridge]]:
    world = World.from_settings(WIRE_WORLD)
    world.set_laser_enabled(True)
    async with make_twin("time_tagger", world) as twin:
        wire = HydraHarpWire(NAMES["time_tagger"], twin)
        await wire.start()
        host, port = wire.endpoints()["control"].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            yield wire, Bridge(reader, writer)
        finally:
            writer.close()
            await wire.stop()


async def test_calls_need_an_open_initialized_device(hh: tuple[HydraHarpWire, Bridge]) -> None:
    wire, bridge = hh
    assert (await bridge.call("HH_GetNumOfInputChannels", 0))["ret"] == -1
    assert (await bridge.call("HH_OpenDevice", 0))["values"] == ["LCTWIN05"]
    assert (await bridge.call("HH_StartMeas", 0, 1000))["error"] == "HH_ERROR_INVALID_MODE"
    assert (await bridge.call("HH_Initialize", 0, 3, 0))["ret"] == -6  # T3: not served
    assert (await bridge.call("HH_Initialize", 0, 2, 0))["ret"] == 0
    assert (await bridge.call("HH_GetNumOfInputChannels", 0))["values"] == [4]
    assert (await bridge.call("HH_SetInputChannelOffset", 0, 2, 700))["ret"] == 0
    assert await wire.twin.get_channel_delay_ps(2) == 700
    assert (await bridge.call("HH_SetInputChannelOffset", 0, 2, 100000))["ret"] == -5
    assert (await bridge.call("HH_SetInputCFD", 0, 9, 50, 10))["ret"] == -5
    assert (await bridge.call("HH_NoSuchCall", 0))["error"] == "HH_ERROR_UNKNOWN_FUNCTION"
    assert (await bridge.call("HH_GetCountRate", 0, 1))["values"][0] > 0


async def test_fifo_records_carry_the_twins_tags(hh: tuple[HydraHarpWire, Bridge]) -> None:
    wire, bridge = hh
    pull = zmq.asyncio.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(wire.endpoints()["stream"])
    try:
        await bridge.call("HH_OpenDevice", 0)
        await bridge.call("HH_Initialize", 0, 2, 0)
        await bridge.call("HH_SetInputChannelEnable", 0, 3, 0)
        assert (await bridge.call("HH_StartMeas", 0, 60000))["ret"] == 0
        assert (await bridge.call("HH_CTCStatus", 0))["values"] == [0]
        buffers = [await asyncio.wait_for(pull.recv(), 5.0) for _ in range(3)]
        assert (await bridge.call("HH_StopMeas", 0))["ret"] == 0
        assert not wire.measuring and not wire.twin.is_streaming
    finally:
        pull.close(linger=0)
    records = np.frombuffer(b"".join(buffers), dtype="<u4")
    clicks = records[(records >> 31) == 0]
    overflows = records[(records >> 31) == 1]
    assert clicks.size > 100 and set(((clicks >> 25) & 63).tolist()) == {0, 1, 2}
    assert np.all(((overflows >> 25) & 63) == 63)


def test_encoder_writes_overflows_before_far_clicks_and_to_the_end() -> None:
    from labctl.interfaces.tags import TagBatch
    from sims.wire.hydraharp import RecordEncoder

    far = 3 * (2**25 - 1) * 2**25 + 17  # three full overflow records away
    batch = TagBatch(
        np.array([2, 1, 0], np.uint8),
        np.array([1_000 + 5, 1_000 + 2**25, 1_000 + far]),
        1_000,
        1_000 + far + 5 * 2**25,
    )
    records = np.frombuffer(RecordEncoder(1_000).encode(batch), dtype="<u4").astype(np.int64)
    special, channel, tag = records >> 31, (records >> 25) & 63, records & (2**25 - 1)
    wraps = np.cumsum(np.where(special == 1, tag, 0))
    clicks = special == 0
    assert channel[clicks].tolist() == [2, 1, 0]
    assert (wraps[clicks] * 2**25 + tag[clicks]).tolist() == [5, 2**25, far]
    assert int(wraps[-1]) == (far + 5 * 2**25) >> 25  # overflows run to the batch's end

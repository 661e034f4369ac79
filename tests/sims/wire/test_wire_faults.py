"""Twin faults and refusals on the wire: what the real drivers (and raw bytes) see."""

from __future__ import annotations

import asyncio
import os

import pytest

from labctl.interfaces.errors import (
    ConnectionLost,
    InstrumentFault,
    InstrumentTimeout,
    ProtocolError,
)
from sims.faults import Disconnect, FaultSchedule, GarbledReply, Timeout
from tests.sims.wire.wired import wired_station


def _schedule(world: object, fault: object) -> None:
    FaultSchedule.for_world(world).schedule(fault)  # type: ignore[arg-type]


async def test_tsl570_timeout_garbled_and_disconnect_reach_the_driver() -> None:
    async with wired_station(["laser"]) as setup:
        laser, now = setup.drivers["laser"], setup.world.clock.now_s()
        _schedule(setup.world, Timeout(at_s=now, duration_s=1.0, instrument="laser", count=1))
        with pytest.raises(InstrumentTimeout):
            await laser.get_power_mw()
        # One garbled reply: the driver flushes and asks again (two re-sends allowed).
        _schedule(setup.world, GarbledReply(at_s=now, instrument="laser"))
        assert await laser.get_power_mw() == pytest.approx(1.0)
        # Three in a row (N + 1 for N = 2 re-sends): ProtocolError.
        _schedule(setup.world, GarbledReply(at_s=now, instrument="laser", count=3))
        with pytest.raises(ProtocolError):
            await laser.get_power_mw()
        _schedule(setup.world, Disconnect(at_s=now, duration_s=5.0, instrument="laser"))
        with pytest.raises(ConnectionLost, match="still unreachable"):
            await laser.get_output()  # the driver's own reconnects are spent
        setup.world.clock.advance(6.0)
        # The next call reconnects on its own once the device is back.
        assert await laser.get_power_mw() == pytest.approx(1.0)


async def test_eos_refusal_is_an_error_label() -> None:
    async with wired_station(["detector"]) as setup:
        # 50 uA passes the Eos driver's own range (0..100) but not the twin's (0..40).
        with pytest.raises(InstrumentFault, match="Error"):
            await setup.drivers["detectors"].set_bias_ua(0, 50.0)


async def test_raw_bytes_on_the_pseudo_terminals() -> None:
    async with wired_station(["polarization_controller", "optical_switch"]) as setup:
        pc_path = setup.server("pc-bob").slave_path
        switch_path = setup.server("switch").slave_path
        assert pc_path.startswith("/dev/pts/")
        await setup.drivers["pc-bob"].close()
        await setup.drivers["switch"].close()

        async def exchange(path: str, request: bytes, reply_bytes: int) -> bytes:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                os.write(fd, request)
                data = b""
                for _ in range(200):
                    await asyncio.sleep(0.01)
                    try:
                        data += os.read(fd, 256)
                    except BlockingIOError:
                        pass
                    if len(data) >= reply_bytes:
                        break
                return data
            finally:
                os.close(fd)

        expected = b"Set CH2 DC Voltage at: -1500mV\r\nDone\r\n"
        assert await exchange(pc_path, b"V2,-1500\r\n", len(expected)) == expected
        assert await exchange(pc_path, b"V9,0\r\n", 8) == b"Error!\r\n"
        expected = b"Voltage(mV): CH1 +0 CH2 -1500 CH3 +0 CH4 +0\r\nDone\r\n"
        assert await exchange(pc_path, b"V?\r\n", len(expected)) == expected
        assert await exchange(switch_path, bytes([1, 0x12, 0, 3]), 4) == bytes([1, 0x12, 0, 3])
        # A refused port is answered with the port actually routed.
        assert await exchange(switch_path, bytes([1, 0x12, 0, 9]), 4) == bytes([1, 0x12, 0, 3])
        assert setup.world.switch_port() == 3

"""The published DiCon MEMS 1xN clients' exchanges against the DiCon wire twin, over a real
pseudo-terminal opened with pyserial at 115200 baud.

The public Python drivers of DiCon's MEMS switch modules are the ``DiConOpticalSwitch``
classes of the Instrumental library (``instrumental.drivers.opticalswitch``, mabuchilab)
and of photonmover; neither is in a PyPI release (Instrumental 0.8 ships no optical
switch driver, photonmover is not published), so their code is not used here. The test
does what they do, with pyserial as they do: ``reset_input_buffer``, the CR-terminated
command, ``read()`` of one byte (their "dummy read the newline") and ``readline()``; the
channel count from the second field of ``CF?``, the channel from the leading digits of
``I1?``. After every call the twin's (and the world's) routed port is checked.
"""

from __future__ import annotations

import asyncio
import re

import serial

from tests.sims.wire.served import served

call = asyncio.to_thread


class DiConOpticalSwitch:
    """The published clients' calls, as they make them (blocking)."""

    def __init__(self, port: str) -> None:
        self._ser = serial.Serial(port, baudrate=115200, timeout=1.0)
        self.channel_max = int(re.split(",", self._reply(b"CF?\r"))[1])  # initialize
        self._ser.write(b"PK\r")  # park_switch

    def _reply(self, command: bytes) -> str:
        self._ser.reset_input_buffer()
        self._ser.write(command)
        self._ser.read()  # dummy read the newline
        return str(self._ser.readline().decode("utf-8"))

    def identify(self) -> str:
        return self._reply(b"ID?\r")

    def set_channel(self, new_channel: int) -> None:
        if 0 <= new_channel <= self.channel_max:  # else the clients print and send nothing
            self._ser.reset_input_buffer()
            self._ser.write(f"I1 {new_channel}\r".encode())

    def get_channel(self) -> int:
        found = re.match(r"\d+", self._reply(b"I1?\r"))
        return int(found[0]) if found is not None else -1

    def close(self) -> None:
        self._ser.write(b"PK\r")
        self._ser.close()


async def test_dicon_clients_route_read_back_and_park() -> None:
    async with served("optical_switch", wire="dicon-mems") as setup:
        twin, world = setup.twin, setup.world
        switch = await call(DiConOpticalSwitch, setup.serial_path)
        try:
            assert switch.channel_max == twin.n_ports == 4
            assert await call(switch.get_channel) == twin.parking_port  # parked at start
            assert (await call(switch.identify)).startswith("DiCon Fiberoptics Inc,MEMS 1x4,")
            for port in (2, 4, 1, 3):
                await call(switch.set_channel, port)
                assert await call(switch.get_channel) == port
                assert await twin.get_port() == port and world.switch_port() == port
            await call(switch.set_channel, 0)  # channel 0 parks, as PK does
            assert await call(switch.get_channel) == twin.parking_port
            await call(switch.set_channel, 1)
            assert await call(switch.get_channel) == 1
        finally:
            await call(switch.close)
        for _ in range(200):  # close() parks without waiting for the module
            if await twin.get_port() == twin.parking_port:
                break
            await asyncio.sleep(0.01)
        assert world.switch_port() == twin.parking_port
    # A channel beyond the module's is refused by the twin (the clients never send one).
    async with served("optical_switch", wire="dicon-mems") as setup:
        bad = await call(serial.Serial, setup.serial_path, 115200, timeout=0.3)
        try:
            await call(bad.write, b"I1 2\rI1 9\rI2 1\r")
            await call(bad.write, b"SYST:ERR?\rSYST:ERR?\r")
            replies = await call(bad.read, 64)
        finally:
            await call(bad.close)
        assert await setup.twin.get_port() == 2
        assert replies == b'-222,"Data out of range"\r-113,"Undefined header"\r'

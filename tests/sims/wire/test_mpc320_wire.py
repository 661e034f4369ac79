"""The MPC320 wire twin speaks the APT binary protocol: raw messages on the
pseudo-terminal, every reply byte checked (identity, enable mask, moves, status)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

import pytest

from tests.sims.wire.served import served

MV_PER_COUNT = 10_000 / 1370  # the twin's -5000..+5000 mV over 0..1370 counts


def short(message_id: int, param1: int = 0, param2: int = 0) -> bytes:
    return struct.pack("<HBBBB", message_id, param1, param2, 0x50, 0x01)


def move(channel_bit: int, counts: int) -> bytes:
    return struct.pack("<HHBB", 0x0453, 6, 0xD0, 0x01) + struct.pack("<Hi", channel_bit, counts)


def status(message_id: int, channel_bit: int, counts: int, enabled: bool = True) -> bytes:
    data = struct.pack("<HiHhI", channel_bit, counts, 0, 0, 0x80000000 if enabled else 0)
    return struct.pack("<HHBB", message_id, 14, 0x81, 0x50) + data


async def reply_of(path: str, request: bytes, length: int) -> bytes:
    """Send ``request`` and read ``length`` reply bytes (binary: no terminator to wait for);
    then check that nothing more follows for a moment."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        os.write(fd, request)
        data = b""
        for _ in range(200):
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                data += os.read(fd, 4096)
            if len(data) >= length:
                break
        await asyncio.sleep(0.05)
        with contextlib.suppress(BlockingIOError):
            data += os.read(fd, 4096)
    finally:
        os.close(fd)
    assert len(data) == length, data.hex(" ")
    return data


async def test_identity_and_moves() -> None:
    async with served("polarization_controller", wire="thorlabs-mpc320") as setup:
        path, twin = setup.serial_path, setup.twin
        info = await reply_of(path, short(0x0005), 90)
        assert info[:6] == bytes.fromhex("0600 5400 8150")
        serial, model, kind = struct.unpack_from("<I8sH", info, 6)
        assert (serial, model, kind) == (38_000_321, b"MPC320\0\0", 16)
        assert info[20:24] == bytes([3, 0, 1, 0]) and info[-6:] == struct.pack("<HHH", 1, 0, 3)

        assert await reply_of(path, move(0x04, 1000), 20) == status(0x0464, 0x04, 1000)
        assert (await twin.get_voltages_mv())[2] == pytest.approx(-5000 + 1000 * MV_PER_COUNT)
        assert await reply_of(path, short(0x0490, 0x04), 20) == status(0x0491, 0x04, 1000)
        # Out of travel: the paddle stays, MOVE_COMPLETED names where it is.
        assert await reply_of(path, move(0x04, 1371), 20) == status(0x0464, 0x04, 1000)


async def test_enable_mask_home_and_parameters() -> None:
    async with served("polarization_controller", wire="thorlabs-mpc320") as setup:
        path, twin = setup.serial_path, setup.twin
        # The mask is the enabled set: 0x05 enables paddles 1 and 3, disables 2.
        enable = short(0x0210, 0x05, 0x01)  # no reply: only the state query's comes back
        assert await reply_of(path, enable + short(0x0211, 0x02), 6) == bytes.fromhex(
            "1202 0202 0150"
        )
        before = (await twin.get_voltages_mv())[1]
        assert await reply_of(path, move(0x02, 100), 20) == status(0x0464, 0x02, 685, enabled=False)
        assert (await twin.get_voltages_mv())[1] == before  # a disabled paddle ignores moves
        params = struct.pack("<6H", 0, 70, 200, 10, 20, 30)
        request = struct.pack("<HHBB", 0x0530, 12, 0xD0, 0x01) + params
        assert await reply_of(path, request + short(0x0531), 18) == (
            struct.pack("<HHBB", 0x0532, 12, 0x81, 0x50) + params
        )
        assert await reply_of(path, short(0x0443, 0x01), 6) == bytes.fromhex("4404 0100 0150")
        assert (await twin.get_voltages_mv())[0] == pytest.approx(-5000 + 200 * MV_PER_COUNT)
        # Jog forward by paddle 1's step (10 counts).
        assert await reply_of(path, short(0x046A, 0x01, 0x01), 20) == status(0x0464, 0x01, 210)

"""SerialTransport against a pseudo-terminal and pyserial's loop:// (socket:// is in test_core)."""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from labctl.interfaces.build import TransportSpec
from labctl.interfaces.errors import ConnectionLost, InstrumentTimeout
from labctl.transport import SerialTransport, make_transport


@dataclass
class PtyDevice:
    """The instrument end of a pseudo-terminal: answers ``*IDN?\\r`` lines, ignores ``WAIT``."""

    master_fd: int
    slave_path: str
    received: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def on_readable(self) -> None:
        """Read what the host wrote and answer every complete command."""
        try:
            self.received += os.read(self.master_fd, 4096)
        except OSError:
            return
        while b"\r" in self.received:
            line, _, rest = bytes(self.received).partition(b"\r")
            self.received = bytearray(rest)
            if line == b"*IDN?":
                os.write(self.master_fd, b"OZ Optics,EPC-400\r\nDone\r\n")
            elif line == b"HALF":
                os.write(self.master_fd, b"partial")
                self.close()
                return

    def close(self) -> None:
        """Hang up: the host side sees the device vanish."""
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.master_fd)
            os.close(self.master_fd)


@pytest.fixture
async def pty_device() -> AsyncIterator[PtyDevice]:
    """A pseudo-terminal whose master end is served on the running event loop."""
    master_fd, slave_fd = os.openpty()
    tty.setraw(master_fd)
    device = PtyDevice(master_fd=master_fd, slave_path=os.ttyname(slave_fd))
    asyncio.get_running_loop().add_reader(master_fd, device.on_readable)
    try:
        yield device
    finally:
        device.close()
        os.close(slave_fd)


def _pty_link(device: PtyDevice, timeout_s: float = 1.0) -> SerialTransport:
    spec = TransportSpec(
        kind="serial",
        address=device.slave_path,
        timeout_s=timeout_s,
        options={"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1},
    )
    link = make_transport(spec, instrument="epc")
    assert isinstance(link, SerialTransport)
    return link


async def test_pty_query_reads_multi_line_reply(pty_device: PtyDevice) -> None:
    link = _pty_link(pty_device)
    await link.open()
    try:
        async with link.transaction():
            await link.write(b"*IDN?\r", command="*IDN?")
            assert await link.read_until(b"\r\n", command="*IDN?") == b"OZ Optics,EPC-400"
            assert await link.read_until(b"\r\n", command="*IDN?") == b"Done"
    finally:
        await link.close()


async def test_pty_silent_device_times_out_in_budget(pty_device: PtyDevice) -> None:
    link = _pty_link(pty_device, timeout_s=0.4)
    await link.open()
    try:
        started = time.monotonic()
        with pytest.raises(InstrumentTimeout, match=pty_device.slave_path):
            await link.query(b"WAIT\r", terminator=b"\r\n", command="WAIT")
        assert 0.39 <= time.monotonic() - started <= 0.44
        assert await link.query(b"*IDN?\r", terminator=b"\r\n") == b"OZ Optics,EPC-400"
    finally:
        await link.close()


async def test_pty_hang_up_mid_reply_is_connection_lost(pty_device: PtyDevice) -> None:
    link = _pty_link(pty_device)
    await link.open()
    try:
        with pytest.raises(ConnectionLost) as caught:
            await link.query(b"HALF\r", terminator=b"\r\n", command="HALF")
        assert caught.value.instrument == "epc"
        assert not link.is_open
    finally:
        await link.close()


async def test_cancelled_read_leaves_the_port_usable(pty_device: PtyDevice) -> None:
    link = _pty_link(pty_device, timeout_s=5.0)
    await link.open()
    try:
        waiting = asyncio.create_task(link.query(b"WAIT\r", terminator=b"\r\n"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The worker thread was in a short read slice, not a 5 s read.
        reply = await link.query(b"*IDN?\r", terminator=b"\r\n")
        assert time.monotonic() - started < 0.5
        assert reply == b"OZ Optics,EPC-400"
    finally:
        await link.close()


async def test_missing_device_path_is_connection_lost_naming_it() -> None:
    spec = TransportSpec(kind="serial", address="/dev/labctl-no-such-port", timeout_s=0.5)
    link = make_transport(spec, instrument="switch")
    with pytest.raises(ConnectionLost, match="/dev/labctl-no-such-port") as caught:
        await link.open()
    assert caught.value.command == "open"


async def test_loop_url_echoes_writes() -> None:
    link = make_transport(TransportSpec(kind="serial", address="loop://"), instrument="loop")
    await link.open()
    try:
        assert await link.query(b"ping\n") == b"ping"
        frame = bytes([0x01, 0x12, 0x00, 0x0A])
        await link.write(frame)
        assert await link.read_exact(4) == frame
    finally:
        await link.close()

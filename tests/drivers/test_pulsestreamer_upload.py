"""The Pulse Streamer's binary upload link against a loopback peer that answers slowly: an
upload its caller gave up on leaves no reply behind for the next one."""

from __future__ import annotations

import asyncio

import pytest

from drivers.swabian.upload import HEADER, MAGIC, UPLOAD_REPLY, UploadTransport

STEPS = bytes(9 * 4)  # four 9-byte steps
IDLE = (0, 0, 0)


class SlowPeer:
    """Answers every upload (header, payload) after ``delay_s``, accepting it."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                _, command_id, _, _, payload, _ = HEADER.unpack(
                    await reader.readexactly(HEADER.size)
                )
                await reader.readexactly(payload)
                await asyncio.sleep(self.delay_s)
                reply = UPLOAD_REPLY.pack(0, 0, 0, 0, 0, 0, 0, 0)
                writer.write(HEADER.pack(MAGIC, command_id, 0, 0, len(reply), 0) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_an_upload_given_up_on_leaves_no_reply_for_the_next() -> None:
    peer = SlowPeer(delay_s=0.3)
    peer.server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = int(peer.server.sockets[0].getsockname()[1])
    link = UploadTransport("127.0.0.1", port, instrument="ps", timeout_s=2.0)
    await link.open()
    try:
        with pytest.raises(TimeoutError):  # a supervisor's deadline cancels it mid-wait
            await asyncio.wait_for(
                link.upload(STEPS, slot=0, n_runs=1, idle=IDLE, timeout_s=2.0), 0.05
            )
        await asyncio.sleep(0.4)  # its reply is sent, on the link that was given up
        await link.upload(STEPS, slot=1, n_runs=1, idle=IDLE, timeout_s=2.0)  # no id mismatch
        await link.upload(STEPS, slot=0, n_runs=1, idle=IDLE, timeout_s=2.0)
        assert peer.connections == 2
    finally:
        await link.close()
        peer.server.close()

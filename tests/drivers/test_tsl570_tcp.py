"""The TSL-570 driver over a real loopback TCP socket: a peer that drops the link mid-run
makes the driver reconnect on its own, re-apply the last settings and answer the call."""

from __future__ import annotations

import asyncio

from drivers.santec.tsl570 import TSL570
from labctl.interfaces import TransportSpec
from labctl.transport.factory import make_transport


class FakeTsl:
    """A minimal TSL-570 SCPI peer: CR-terminated lines, state kept across connections."""

    def __init__(self) -> None:
        self.state = {":POW:STAT": "0", ":POW": "1.00", ":WAV": "1550.0000"}
        self.log: list[list[str]] = []
        self.drop_next_query = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines: list[str] = []
        self.log.append(lines)
        try:
            while raw := await reader.readuntil(b"\r"):
                line = raw[:-1].decode()
                lines.append(line)
                if line.endswith("?") and self.drop_next_query and line != ":SYST:ERR?":
                    self.drop_next_query = False
                    break
                reply = self.answer(line)
                if reply is not None:
                    writer.write(reply.encode() + b"\r")
                    await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    def answer(self, line: str) -> str | None:
        fixed = {
            "*IDN?": "SANTEC,TSL-570,21020001,0001.000.0001",
            ":SYST:ERR?": '0,"No error"',
            ":WAV:MIN?": "1480.0000",
            ":WAV:MAX?": "1640.0000",
        }
        if line in fixed:
            return fixed[line]
        if line.endswith("?"):
            return self.state[line[:-1]]
        header, _, value = line.partition(" ")
        self.state[header] = value
        return None


async def test_reconnect_over_tcp_reapplies_settings() -> None:
    peer = FakeTsl()
    server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    spec = TransportSpec(kind="tcp", address=f"127.0.0.1:{port}", timeout_s=2.0)
    laser = TSL570("laser", make_transport(spec, instrument="laser"))
    try:
        async with server:
            await laser.connect()
            await laser.set_power_mw(2.5)
            await laser.set_output(True)
            peer.state[":POW"] = "0.10"  # the laser was power-cycled behind our back
            peer.state[":POW:STAT"] = "0"
            peer.drop_next_query = True
            # The dropped query reconnects by itself, re-applies, and is asked again.
            assert await laser.get_power_mw() == 2.5
            assert laser.reconnects == 1
            assert await laser.get_output() is True
            second = peer.log[1]
            assert second[second.index(":WAV:MAX?") + 1 :][:4] == [
                ":POW 2.50",
                ":SYST:ERR?",
                ":POW:STAT 1",
                ":SYST:ERR?",
            ]
    finally:
        await laser.close()

"""Query round-trip latency of every transport against a local echo peer, as JSON.

Baseline: bare asyncio streams (write + readline) to the same TCP echo server, measured in
the same process, so ``ratio_to_baseline`` says what the transport layer (lock, deadline,
buffer, worker thread) costs on top of the socket itself.

Run: .venv/bin/python benchmarks/transport_roundtrip.py [--queries N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import zmq
import zmq.asyncio

from labctl.interfaces.build import TransportSpec
from labctl.transport import make_transport


async def _echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


async def _echo_rep(sock: zmq.asyncio.Socket) -> None:
    while True:
        await sock.send(await sock.recv())


async def _baseline_us(port: int, n_queries: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    for _ in range(n_queries):
        writer.write(b"*IDN?\n")
        await reader.readline()
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return elapsed / n_queries * 1e6


async def _transport_us(spec: TransportSpec, n_queries: int) -> float:
    link = make_transport(spec, instrument="bench")
    await link.open()
    try:
        await link.query(b"*IDN?\n")
        started = time.perf_counter()
        for _ in range(n_queries):
            await link.query(b"*IDN?\n")
        return (time.perf_counter() - started) / n_queries * 1e6
    finally:
        await link.close()


async def main(n_queries: int, repeats: int) -> dict[str, object]:
    """Median per-query latency (microseconds) of each transport and of the baseline."""
    server = await asyncio.start_server(_echo_lines, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    rep = zmq.asyncio.Context.instance().socket(zmq.REP)
    rep.setsockopt(zmq.LINGER, 0)
    zmq_port = rep.bind_to_random_port("tcp://127.0.0.1")
    serving = asyncio.create_task(_echo_rep(rep))
    specs = {
        "tcp": TransportSpec(kind="tcp", address=f"127.0.0.1:{port}"),
        "serial_socket": TransportSpec(kind="serial", address=f"socket://127.0.0.1:{port}"),
        "visa_socket": TransportSpec(kind="visa", address=f"TCPIP::127.0.0.1::{port}::SOCKET"),
        "zmq_req": TransportSpec(kind="zmq", address=f"tcp://127.0.0.1:{zmq_port}"),
    }
    baseline = statistics.median([await _baseline_us(port, n_queries) for _ in range(repeats)])
    results: dict[str, object] = {"baseline_asyncio_streams_us": round(baseline, 1)}
    for name, spec in specs.items():
        latency = statistics.median([await _transport_us(spec, n_queries) for _ in range(repeats)])
        results[name] = {
            "query_us": round(latency, 1),
            "ratio_to_baseline": round(latency / baseline, 2),
        }
    serving.cancel()
    rep.close(linger=0)
    server.close()
    return {"benchmark": "transport_roundtrip", "queries": n_queries, "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.queries, args.repeats)), indent=2))

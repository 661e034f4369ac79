# ruff: noqa: E402
"""Cost of streaming Alice's patterns through the Pulse Streamer driver -> wire twin, as JSON.

Secret patterns with the sim.yaml design (classes 0.8/0.1/0.1, Z with 1/2) go into the
wire twin, which decodes them back into a PulsePattern for a sink transmitter, in both of
the driver's modes:

* ``repeating``: ``load_pattern`` of 2e6 pulses (the sequence memory) as one JSON-RPC
  ``stream`` POST (encode, base64 in JSON, HTTP over loopback);
* ``streamed``: ``load_pattern`` then ``append_pattern`` of 1e6-pulse chunks (a slot) as
  binary uploads on the upload port (9 bytes a step, no base64).

Reported per mode: pulses per second end to end, the driver's encode share, steps per
pulse after run-length merging, and MB on the wire per 1e6 pulses (every byte the driver
sent, HTTP and JSON-RPC control included).

Run: .venv/bin/python benchmarks/pulsestreamer_stream.py [--repeats R]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script lives next to a ``drivers.py``: keep its folder off the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import time
from typing import Any

from drivers.swabian.pulsestreamer import PulseStreamer
from drivers.swabian.sequence import encode_base64, encode_steps
from drivers.swabian.upload import UploadTransport
from labctl.interfaces.instrument import Health, LifecycleMixin
from labctl.interfaces.pattern import PatternMode, PulsePattern, secret_pattern
from labctl.transport.jsonrpc_http import JsonRpcHttpTransport
from sims.wire.pulsestreamer import PulseStreamerWire

DESIGN = ([0.8, 0.1, 0.1], 0.5)


class Sink(LifecycleMixin):
    """A transmitter that keeps nothing: only the wire and the decode are measured."""

    name = "sink"
    memory_pulses = 2_000_000
    pattern_mode = PatternMode.STREAMED

    def __init__(self) -> None:
        self.pulses = 0

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def snapshot(self) -> dict[str, Any]:
        return {}

    async def safe_state(self) -> None:
        return None

    async def health(self) -> Health:
        return Health(ok=True)

    async def set_period_ps(self, period_ps: int) -> None:
        return None

    async def get_period_ps(self) -> int:
        return 1000

    async def set_marker_divider(self, divider: int) -> None:
        return None

    async def get_marker_divider(self) -> int:
        return 1000

    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        self.pulses += len(pattern)

    async def append_pattern(self, pattern: PulsePattern) -> None:
        self.pulses += len(pattern)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def is_running(self) -> bool:
        return False


async def run(mode: str, repeats: int) -> dict[str, Any]:
    sink = Sink()
    streamed = mode == "streamed"
    wire = PulseStreamerWire("transmitter", sink, binary_port=0 if streamed else None)
    await wire.start()
    host, port = wire.endpoints()["control"].rsplit(":", 1)
    transport = JsonRpcHttpTransport(host, int(port), instrument="transmitter", timeout_s=10.0)
    upload = None
    if streamed:
        upload_port = int(wire.endpoints()["upload"].rsplit(":", 1)[1])
        upload = UploadTransport(host, upload_port, instrument="transmitter", timeout_s=10.0)
    driver = PulseStreamer(
        "transmitter", transport, upload=upload, period_ps=1000, marker_divider=1000
    )
    pulses = driver.memory_pulses
    patterns = [secret_pattern(pulses, *DESIGN) for _ in range(repeats)]
    async with driver:
        sent_before = transport.bytes_sent + (0 if upload is None else upload.bytes_sent)
        encode_s = 0.0
        steps = 0
        for k, p in enumerate(patterns):
            t0 = time.perf_counter()
            encoded = encode_steps(
                p, driver.channels, period_ns=1, marker_divider=1000, pulses_before=k * pulses
            )
            if not streamed:
                encode_base64(encoded)
            encode_s += time.perf_counter() - t0
            steps += encoded.size
        t0 = time.perf_counter()
        await driver.load_pattern(patterns[0], repeat=not streamed)
        for p in patterns[1:]:
            if streamed:
                await driver.append_pattern(p)
            else:
                await driver.load_pattern(p, repeat=True)
        total_s = time.perf_counter() - t0
        sent = transport.bytes_sent + (0 if upload is None else upload.bytes_sent) - sent_before
    await wire.stop()
    n = pulses * repeats
    assert sink.pulses == n
    return {
        "mode": mode,
        "pulses_per_chunk": pulses,
        "chunks": repeats,
        "pulses_per_s": round(n / total_s),
        "seconds_per_chunk": round(total_s / repeats, 3),
        "encode_share": round(encode_s / total_s, 3),
        "steps_per_pulse": round(steps / n, 4),
        "wire_mb_per_1e6_pulses": round(sent / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    results = [asyncio.run(run(mode, args.repeats)) for mode in ("repeating", "streamed")]
    note = "driver and wire twin in one process on loopback: both ends' CPU included"
    print(json.dumps({"results": results, "note": note}, indent=2))


if __name__ == "__main__":
    main()

# ruff: noqa: E402
"""Real drivers against wire twins over loopback, as JSON.

1. Commands per second per driver: one representative query repeated (TSL-570 ``:POW?``
   over pyvisa, EPC-400 ``V?`` over a pseudo-terminal, Eos ``BiasCurrent`` over TCP,
   ID1000 ``DELA1:VALU?`` over ZMQ, Agiltron get-port frame over a pseudo-terminal), each
   served by its wire twin in the same process (so the figure includes both ends).
2. ID1000 tag stream: pre-encoded frames (65,536 tags each) pushed by a ZMQ PUSH socket in
   a sender thread, read by the ID1000 driver (PULL, ``read_batch`` -> numpy TagBatch).
   Baseline: decoding the same frames in-process without ZMQ (``decode_frame`` alone);
   ``ratio_to_baseline`` is stream throughput / decode-only throughput. Target: >= 10 M
   tags/s. The twin's world is not in this path: the world generates well under 1 M
   events/s, so the stream test measures transport + decode, which is what the driver owns.

Run: .venv/bin/python benchmarks/drivers.py [--seconds S] [--frames N]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the ``drivers`` package: keep its folder off the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import zmq

from drivers.idq.id1000 import ID1000
from drivers.idq.tagframe import decode_frame
from labctl.interfaces.build import BuildContext, InstrumentSpec, TransportSpec
from labctl.interfaces.tags import TagBatch
from labctl.station.classpath import import_class
from labctl.transport.zmq_sub import ZmqSubscriber
from sims.wire.serve import ServeSettings, WireTwins
from sims.wire.tagframe import FrameEncoder
from sims.world import World

TAGS_PER_FRAME = 65_536
TWINS = {
    "tsl570": ("laser", "SimLaser", "drivers.santec.tsl570:TSL570"),
    "epc400": ("pc-bob", "SimPolarizationController", "drivers.ozoptics.epc400:EPC400"),
    "eos": ("detectors", "SimDetector", "drivers.singlequantum.eos:EosSNSPD"),
    "id1000": ("tagger-bob", "SimTimeTagger", "drivers.idq.id1000:ID1000"),
    "ffswitch": ("switch", "SimOpticalSwitch", "drivers.agiltron.ffswitch:FFSwitch"),
}


def _transport(model: str, endpoints: dict[str, str]) -> TransportSpec:
    if model == "tsl570":
        host, port = endpoints["control"].rsplit(":", 1)
        return TransportSpec("visa", f"TCPIP::{host}::{port}::SOCKET")
    if model in ("epc400", "ffswitch"):
        return TransportSpec("serial", endpoints["serial"])
    if model == "eos":
        return TransportSpec(
            "tcp", endpoints["control"], 2.0, {"counts_address": endpoints["counts"]}
        )
    return TransportSpec("zmq", endpoints["control"], 2.0, {"stream_address": endpoints["stream"]})


def _query(model: str, driver: Any) -> Callable[[], Awaitable[object]]:
    if model == "tsl570":
        return driver.get_power_mw  # type: ignore[no-any-return]
    if model == "epc400":
        return driver.get_voltages_mv  # type: ignore[no-any-return]
    if model == "eos":
        return lambda: driver.get_bias_ua(0)
    if model == "id1000":
        return lambda: driver.get_channel_delay_ps(0)
    return driver.get_port  # type: ignore[no-any-return]


async def commands_per_second(seconds: float) -> dict[str, float]:
    """Queries per second of each driver against its wire twin."""
    import sims.twins

    world = World.from_settings({"seed": 1})
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, (name, twin_class, driver_class) in TWINS.items():
            spec = InstrumentSpec(name=name, class_path=f"sims.twins:{twin_class}")
            context = BuildContext(lab="bench", node="bench", clock=world.clock, world=world)
            twin = getattr(sims.twins, twin_class).from_config(spec, context)
            async with (
                twin,
                WireTwins({name: twin}, ServeSettings(link_dir=Path(tmp), any_port=True)) as wire,
            ):
                endpoints = wire.endpoints()[name]
                driver_spec = InstrumentSpec(
                    name=name, class_path=driver_class, transport=_transport(model, endpoints)
                )
                cls = import_class(driver_class, field="bench", source=driver_spec.source)
                async with cls.from_config(driver_spec, context) as driver:
                    query = _query(model, driver)
                    await query()
                    count, started = 0, time.perf_counter()
                    while (elapsed := time.perf_counter() - started) < seconds:
                        await query()
                        count += 1
                    results[model] = round(count / elapsed, 1)
    return results


def make_frames(n_frames: int) -> list[bytes]:
    """Frames of random sorted tags on 4 channels, encoded by the wire twin's encoder."""
    rng = np.random.default_rng(7)
    encoder = FrameEncoder(max_tags=TAGS_PER_FRAME)
    frames = []
    start_ps = 0
    for _ in range(n_frames):
        times = start_ps + np.sort(rng.integers(0, 1_000_000_000, TAGS_PER_FRAME))
        channels = rng.integers(0, 4, TAGS_PER_FRAME).astype(np.uint8)
        batch = TagBatch(channels, times.astype(np.int64), start_ps, start_ps + 1_000_000_000)
        frames.extend(encoder.encode(batch))
        start_ps += 1_000_000_000
    return frames


def decode_only_tags_per_s(frames: list[bytes], repeats: int) -> float:
    """Baseline: decode the same frames in-process, no ZMQ."""
    total, started = 0, time.perf_counter()
    for _ in range(repeats):
        for frame in frames:
            _, batch = decode_frame(frame, instrument="bench", n_channels=4)
            total += len(batch)
    return total / (time.perf_counter() - started)


async def stream_tags_per_s(frames: list[bytes], repeats: int) -> float:
    """Frames through ZMQ PUSH -> PULL into the ID1000 driver's read_batch."""
    context = zmq.Context.instance()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")

    def send() -> None:
        for _ in range(repeats):
            for frame in frames:
                push.send(frame, copy=False)

    address = f"tcp://127.0.0.1:{port}"
    stream = ZmqSubscriber(address, instrument="bench", pattern="pull", rcvhwm=64)
    unused = ZmqSubscriber("tcp://127.0.0.1:1", instrument="bench")  # SCPI link never used
    driver = ID1000("bench", unused, stream)  # type: ignore[arg-type]
    await stream.open()
    sender = threading.Thread(target=send, daemon=True)
    total = 0
    n_frames = repeats * len(frames)
    started = time.perf_counter()
    sender.start()
    for _ in range(n_frames):
        batch = await driver.read_batch(5.0)
        total += len(batch)
    elapsed = time.perf_counter() - started
    sender.join()
    await stream.close()
    push.close(linger=0)
    return total / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per driver (default 1)")
    parser.add_argument("--frames", type=int, default=32, help="distinct frames (default 32)")
    parser.add_argument("--repeats", type=int, default=10, help="passes over them (default 10)")
    args = parser.parse_args()
    frames = make_frames(args.frames)
    baseline = decode_only_tags_per_s(frames, args.repeats)
    streamed = await stream_tags_per_s(frames, args.repeats)
    report = {
        "benchmark": "drivers",
        "commands_per_s": await commands_per_second(args.seconds),
        "id1000_stream": {
            "tags_per_frame": TAGS_PER_FRAME,
            "tags": args.frames * args.repeats * TAGS_PER_FRAME,
            "stream_tags_per_s": round(streamed),
            "baseline_decode_only_tags_per_s": round(baseline),
            "ratio_to_baseline": round(streamed / baseline, 4),
            "target_tags_per_s": 10_000_000,
            "meets_target": streamed >= 10_000_000,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())

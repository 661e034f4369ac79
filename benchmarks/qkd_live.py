"""Live post-processing at 1 GHz / 25 km: service time per block, backlog, workers needed.

Real hardware acquires continuously: a block of ``--block-pulses`` arrives every
block_pulses / 1 GHz seconds. The simulated world cannot make 1 GHz of detections in real
time, so ``--blocks`` real blocks (plus one warm-up) are acquired from the twins first
(clock map from the world's truth: synchronization is not measured here), then:

1. baseline (same process, the previous figure): Alice and Bob nodes in this process on an
   in-memory authenticated channel, one block at a time; wall service time per block.
2. two processes: Alice in a child process (her own station built from the same file, so
   the same source record) over loopback TCP, Bob here, one block at a time: wall service
   time per block and each party's CPU per stage (``labctl.link.profile``).
3. live, for each W in ``--workers``: Alice's child serves W channels, Bob runs a
   ParallelPipeline of W workers, and the acquired blocks (cycled, renumbered) are
   submitted at the real arrival interval for ``--live-s`` seconds; backlog sampled at
   every arrival, blocks finished per second measured. The 10-minute backlog is the same
   queue replayed with W servers and the per-block wall times measured live.

Links: ``sim`` = configs/sim.yaml (SNSPDs near saturation), ``gys`` =
configs/scenarios/gys.yaml at 25 km. Both processes report CPU (time.process_time, all
threads); the load average is printed with each figure (the cores are shared).
Usage: python benchmarks/qkd_live.py [--links sim,gys] [--blocks 4] [--workers 1,2]
       [--live-s 30] [--minutes 10]
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parents[1]
sys.path.insert(0, str(ROOT))

from experiments.keygen.acquisition import LinearClockMap, acquire_block  # noqa: E402
from experiments.keygen.endtoend_benchmark import WorldSource  # noqa: E402
from labctl.link.block import RawBlock  # noqa: E402
from labctl.link.nodes import AliceNode, BlockResult, BobNode  # noqa: E402
from labctl.link.pipeline import CommitSequencer  # noqa: E402
from labctl.link.profile import STAGES  # noqa: E402
from labctl.link.settings import KeygenSettings  # noqa: E402
from labctl.link.tcp_links import accept_channels, connect_channels  # noqa: E402
from labctl.link.workers import ParallelPipeline, serve_alice  # noqa: E402
from labctl.qkd.auth.channel import memory_pair  # noqa: E402
from labctl.station import Station, load_config  # noqa: E402
from labctl.store.keystore import KeyStore  # noqa: E402
from sims.scenarios import scenario_settings  # noqa: E402

TIMEOUT_S = 120.0


def link_config(link: str, folder: Path) -> Path:
    """The station file of a link: sim.yaml, or gys.yaml at 25 km (written into folder)."""
    if link == "sim":
        return ROOT / "configs" / "sim.yaml"
    path = ROOT / "configs" / "scenarios" / "gys.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["world"]["settings"] = scenario_settings(path, distance_km=25.0)
    data["storage"] = {k: str(folder / Path(v).name) for k, v in data["storage"].items()}
    out = folder / "gys-25km.yaml"
    out.write_text(yaml.safe_dump(data), encoding="utf-8")
    return out


def load() -> list[float]:
    """The load average now (rounded)."""
    return [round(x, 2) for x in os.getloadavg()]


def replay(
    service_s: list[float], interval_s: float, horizon_s: float, servers: int
) -> dict[str, Any]:
    """FIFO queue with ``servers`` servers, arrivals every interval_s, cycled service times."""
    free_at = [0.0] * servers
    finishes: list[float] = []
    max_backlog = 0
    n = int(horizon_s // interval_s)
    for i in range(n):
        arrival = i * interval_s
        k = int(np.argmin(free_at))
        free_at[k] = max(arrival, free_at[k]) + service_s[i % len(service_s)]
        finishes.append(free_at[k])
        if i % 50 == 0 or i == n - 1:
            max_backlog = max(max_backlog, sum(1 for f in finishes if f > arrival))
    return {
        "blocks_arrived": n,
        "max_backlog_blocks": max_backlog,
        "backlog_at_end_blocks": sum(1 for f in finishes if f > horizon_s),
    }


async def acquire(
    config_path: Path, blocks: int, block_pulses: int
) -> tuple[list[RawBlock], list[float]]:
    """Real blocks from the twins (acquisition wall seconds per block)."""
    station = Station.from_config(load_config(config_path))
    raws, acq_s = [], []
    async with station:
        world: Any = station.world
        tagger: Any = station.instruments["tagger-bob"]
        truth = world.truth
        clock_map = LinearClockMap(
            truth.bob_offset_ps + truth.fiber_delay_ps,
            truth.period_ps,
            truth.bob_frequency_offset_ppm * 1000.0,
        )
        for block in range(blocks):
            t0 = time.perf_counter()
            raws.append(
                await acquire_block(
                    tagger,
                    block=block,
                    pulses=block_pulses,
                    period_ps=truth.period_ps,
                    clock_map=clock_map,
                    detector_channels=list(world.settings.bob_tagger.detector_channels),
                    rng=np.random.default_rng(block),
                    now_s=world.clock.now_s(),
                )
            )
            acq_s.append(time.perf_counter() - t0)
    return raws, acq_s


async def same_process(
    config_path: Path, raws: list[RawBlock], settings: KeygenSettings
) -> dict[str, Any]:
    """Baseline: both nodes in this process, in-memory channel, one block at a time."""
    station = Station.from_config(load_config(config_path))
    wall, cpu, results = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        async with station:
            a_ch, b_ch = memory_pair(os.urandom(32), TIMEOUT_S)
            with KeyStore(Path(tmp) / "a.sqlite") as sa, KeyStore(Path(tmp) / "b.sqlite") as sb:
                alice = AliceNode(a_ch, sa, settings, WorldSource(station.world))
                bob = BobNode(b_ch, sb, settings)
                alice_task = asyncio.create_task(alice.serve())
                for raw in raws:
                    t0, c0 = time.perf_counter(), time.process_time()
                    results.append(await bob.process(raw))
                    wall.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                await bob.close()
                await alice_task
    return {"wall_s": wall, "cpu_s_both": cpu, "results": results, "load": load()}


async def start_alice(
    config_path: Path, workers: int, psk: bytes
) -> tuple[asyncio.subprocess.Process, int]:
    """Alice's child process (this script, ``--alice``); the port she listens on."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), "--alice", str(config_path),
        "--connections", str(workers), cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(psk.hex().encode() + b"\n")  # never on the command line
    await proc.stdin.drain()
    line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT_S)).decode().strip()
    if not line.startswith("listening on "):
        raise RuntimeError(f"alice child: {line!r}")
    return proc, int(line.rpartition(":")[2])


async def alice_child(config_path: str, workers: int) -> None:
    """Child process: Alice on ``workers`` TCP channels; prints her per-block stage CPU."""
    psk = bytes.fromhex(sys.stdin.readline().strip())
    settings = KeygenSettings(block_pulses=100_000_000, channel_timeout_s=TIMEOUT_S)
    station = Station.from_config(load_config(config_path))
    async with station:
        channels = await accept_channels(
            "127.0.0.1", 0, workers, psk, TIMEOUT_S,
            lambda h, p: print(f"listening on {h}:{p}", flush=True),
        )  # fmt: skip
        c0 = time.process_time()
        with tempfile.TemporaryDirectory() as tmp, KeyStore(Path(tmp) / "a.sqlite") as store:
            results, nodes = await serve_alice(
                channels, store, settings, WorldSource(station.world)
            )
            ids = store.ids()
        cpu = time.process_time() - c0
        for ch in channels:
            await ch.close()
    history = [h for n in nodes for h in n.profile.history]
    out = {"cpu_s": cpu, "blocks": len(results), "stage_history": history, "key_ids": ids}
    print(json.dumps(out), flush=True)


async def two_process(
    config_path: Path, raws: list[RawBlock], settings: KeygenSettings
) -> dict[str, Any]:
    """Alice in a child process over TCP, Bob here; one block at a time."""
    psk = os.urandom(32)
    proc, port = await start_alice(config_path, 1, psk)
    (channel,) = await connect_channels("127.0.0.1", port, 1, psk, TIMEOUT_S)
    wall, bob_cpu = [], []
    with tempfile.TemporaryDirectory() as tmp, KeyStore(Path(tmp) / "b.sqlite") as sb:
        bob = BobNode(channel, sb, settings)
        for raw in raws:
            t0, c0 = time.perf_counter(), time.process_time()
            await bob.process(raw)
            wall.append(time.perf_counter() - t0)
            bob_cpu.append(time.process_time() - c0)
        await bob.close()
        bob_ids = sb.ids()
    out, _ = await proc.communicate()
    await channel.close()
    alice = json.loads(out.decode().strip().splitlines()[-1])
    assert alice["key_ids"] == bob_ids, "two-process run: the stores differ"
    return {
        "wall_s": wall, "bob_cpu_s": bob_cpu, "bob_stages": list(bob.profile.history),
        "alice_stages": alice["stage_history"], "load": load(),
    }  # fmt: skip


async def live(
    config_path: Path, raws: list[RawBlock], settings: KeygenSettings, workers: int,
    interval_s: float, live_s: float,
) -> dict[str, Any]:  # fmt: skip
    """W workers, blocks submitted at the real arrival interval for live_s seconds."""
    psk = os.urandom(32)
    proc, port = await start_alice(config_path, workers, psk)
    channels = await connect_channels("127.0.0.1", port, workers, psk, TIMEOUT_S)
    service: dict[int, float] = {}
    backlog: list[int] = []
    done: list[BlockResult] = []
    with tempfile.TemporaryDirectory() as tmp, KeyStore(Path(tmp) / "b.sqlite") as sb:
        seq = CommitSequencer()
        bobs = [BobNode(ch, sb, settings, sequencer=seq) for ch in channels]

        def timed(bob: BobNode) -> Any:
            async def run(s: int, raw: RawBlock) -> BlockResult:
                t0 = time.perf_counter()
                result = await bob.process(raw, s)
                service[s] = time.perf_counter() - t0
                return result

            return run

        pipe: ParallelPipeline[RawBlock, BlockResult] = ParallelPipeline(
            [timed(b) for b in bobs], done.append, max_queue=100_000
        )
        pipe.start()
        for raw in raws[:workers]:  # warm-up: each worker's first block (kernels, buffers)
            pipe.submit(raw)
        await pipe.wait_pending_at_most(0)
        warm = len(done)
        t_start, c_start = time.perf_counter(), time.process_time()
        n = int(live_s / interval_s)
        for i in range(n):
            if pipe.failed:
                raise RuntimeError(f"live run, {workers} workers: {pipe.error!r}")
            delay = t_start + i * interval_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pipe.submit(dataclasses.replace(raws[i % len(raws)], block=workers + i))
            backlog.append(pipe.pending())
        t_arrived = time.perf_counter()
        processed_in_window = len(done) - warm
        backlog_end = pipe.pending()
        bob_cpu = time.process_time() - c_start
        # Blocks still waiting are dropped: their service would not be measured any better.
        await pipe.finish(TIMEOUT_S, drop_queued=True)
        for bob in bobs:
            await bob.close()
        bob_ids = sb.ids()
    out, _ = await proc.communicate()
    for ch in channels:
        await ch.close()
    alice = json.loads(out.decode().strip().splitlines()[-1])
    assert alice["key_ids"] == bob_ids, "live run: the stores differ"
    assert [r.block for r in done] == sorted(r.block for r in done)
    measured = [service[s] for s in sorted(service) if s >= workers]
    window_s = t_arrived - t_start
    return {
        "workers": workers,
        "window_s": round(window_s, 2),
        "blocks_arrived": n,
        "blocks_finished_in_window": processed_in_window,
        "finished_per_s": round(processed_in_window / window_s, 3),
        "backlog_at_end_of_window_blocks": backlog_end,
        "max_backlog_blocks": max(backlog),
        "max_backlog_first_half_blocks": max(backlog[: n // 2]),
        "max_backlog_second_half_blocks": max(backlog[n // 2 :]),
        "service_wall_s_median": round(float(np.median(measured)), 3),
        "bob_cpu_s_per_finished_block": round(bob_cpu / max(processed_in_window, 1), 3),
        "alice_cpu_s_per_block": round(alice["cpu_s"] / max(alice["blocks"], 1), 3),
        "service_wall_s": measured,
        "load_average": load(),
    }


def same_rate_of(service_s: list[float]) -> float:
    """Blocks per second of one worker with these service times."""
    return 1.0 / float(np.mean(service_s))


def stage_table(history: list[dict[str, float]]) -> dict[str, float]:
    """Mean CPU seconds per block of each stage (and the total)."""
    table = {s: round(float(np.mean([h.get(s, 0.0) for h in history])), 4) for s in STAGES}
    table["total"] = round(sum(table.values()), 4)
    for count in ("messages", "payload bytes"):
        table[count] = float(np.mean([h.get(count, 0) for h in history]))
    return table


def summarize_link(
    link: str, m: dict[str, Any], interval_s: float, horizon_s: float
) -> dict[str, Any]:
    """The JSON of one link."""
    base, two = m["same_process"], m["two_process"]
    warm = 1
    base_s = base["wall_s"][warm:]
    two_s = two["wall_s"][warm:]
    sifted = [r.sifted_bits for r in base["results"]]
    alice_cpu = stage_table(two["alice_stages"][warm:])
    bob_cpu = stage_table(two["bob_stages"][warm:])
    out: dict[str, Any] = {
        "sifted_bits_per_block": sifted,
        "sifted_rate_bps": float(np.mean(sifted) / interval_s),
        "secret_bits_per_block": [r.secret_bits for r in base["results"]],
        "outcome_per_block": [r.reason for r in base["results"]],
        "qber_z": [None if r.qber_z is None else round(r.qber_z, 4) for r in base["results"]],
        "same_process_service_s": [round(s, 3) for s in base_s],
        "same_process_warmup_s": round(base["wall_s"][0], 3),
        "same_process_load": base["load"],
        "two_process_service_s": [round(s, 3) for s in two_s],
        "two_process_load": two["load"],
        "ratio_service_same_over_two_process": float(np.mean(base_s) / np.mean(two_s)),
        "same_process_blocks_per_s": round(same_rate_of(base_s), 3),
        "cpu_s_per_block_by_stage": {"alice": alice_cpu, "bob": bob_cpu},
        "cores_needed_per_party": {
            "alice": int(np.ceil(alice_cpu["total"] / interval_s)),
            "bob": int(np.ceil(bob_cpu["total"] / interval_s)),
        },
        "replay_10min_same_process_1_worker": replay(base_s, interval_s, horizon_s, 1),
        "live": [],
    }
    same_rate = same_rate_of(base_s)
    for run in m["live"]:
        service = run.pop("service_wall_s")
        rate = run["finished_per_s"]
        run["ratio_throughput_vs_same_process"] = round(rate / same_rate, 3)
        # What the measured finishing rate leaves behind after the whole horizon.
        run["backlog_10min_extrapolated_blocks"] = int(
            max(0.0, (1.0 / interval_s - rate) * horizon_s)
        )
        run["replay_10min"] = replay(service, interval_s, horizon_s, run["workers"])
        # Bounded: blocks finish as fast as they arrive and the queue is not growing (the
        # second half of the window never queues more than the first half plus W).
        growing = run["max_backlog_second_half_blocks"] > (
            run["max_backlog_first_half_blocks"] + run["workers"]
        )
        run["bounded"] = bool(rate * interval_s >= 0.98 and not growing)
        out["live"].append(run)
    return out


async def measure_link(link: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Every measurement of one link."""
    config = link_config(link, tmp)
    settings = KeygenSettings(block_pulses=args.block_pulses, channel_timeout_s=TIMEOUT_S)
    raws, acq_s = await acquire(config, args.blocks + 1, args.block_pulses)
    m: dict[str, Any] = {"acquire_s": acq_s}
    m["same_process"] = await same_process(config, raws, settings)
    m["two_process"] = await two_process(config, raws, settings)
    interval_s = args.block_pulses / 1e9
    m["live"] = [
        await live(config, raws, settings, w, interval_s, args.live_s) for w in args.workers
    ]
    return m


def main() -> None:
    """Measure every link, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--links", default="sim,gys")
    parser.add_argument("--blocks", type=int, default=4, help="measured blocks (+1 warm-up)")
    parser.add_argument("--block-pulses", type=int, default=100_000_000)
    parser.add_argument("--workers", default="1,2", help="live worker counts")
    parser.add_argument("--live-s", type=float, default=30.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--alice", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alice:
        asyncio.run(alice_child(args.alice, args.connections))
        return
    args.workers = [int(w) for w in args.workers.split(",")]
    interval_s = args.block_pulses / 1e9
    out: dict[str, Any] = {
        "benchmark": "qkd_live",
        "block_pulses": args.block_pulses,
        "block_interval_s": interval_s,
        "cpu_cores": os.cpu_count(),
        "links": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for link in args.links.split(","):
            m = asyncio.run(measure_link(link, args, Path(tmp)))
            out["links"][link] = summarize_link(link, m, interval_s, args.minutes * 60.0)
            out["links"][link]["sim_acquire_s_per_block"] = [round(s, 2) for s in m["acquire_s"]]
    out["load_average"] = load()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

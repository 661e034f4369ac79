"""Field trial: the main job for N simulated hours under a fault schedule; does key keep flowing?

Runs ``labctl run configs/scenarios/field-trial.yaml --duration {hours}h`` (virtual clock)
as a child process against a Mosquitto this script owns and restarts three times (at 25, 50
and 75 % of the simulated run), records every run document from MQTT, samples the child's
RSS every second, and prints one JSON object: wall time, blocks, share of blocks with key,
mean QBER against the floor the first blocks after calibration measured, faults injected
and survived, MQTT seq numbers missing, Alice/Bob key mismatches, key bits stored inside
attack windows, RSS slope and peak, load average. The config is copied to a temporary
folder with the schedule (written for 12 h) mapped onto the run: fault times scale with
``hours / 12`` after a quiet start (min(300 s, 20 %) for calibration and synchronization).

    python benchmarks/field_trial.py [--hours 12] [--block-interval-s 2] [--no-faults]
        [--rss-csv FILE]   # also write the RSS samples (wall s, MiB) for a plot
    python benchmarks/field_trial.py --tracking-only [--hours 12] [--block-interval-s 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

from labctl.stream.mosquitto import Mosquitto
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "scenarios" / "field-trial.yaml"
SCHEDULE_HOURS = 12.0
BROKER_RESTARTS_AT = (0.25, 0.5, 0.75)
QUIET_S = 300.0


def trial_config(
    workdir: Path, hours: float, broker_url: str, interval_s: float | None, faults: bool = True
) -> Path:
    """The trial config under ``workdir`` with faults scaled to ``hours`` and our broker."""
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    duration_s = hours * 3600.0
    # Calibration and synchronization come first: a short run keeps its first part quiet.
    quiet_s = min(QUIET_S, 0.2 * duration_s)
    scale = (duration_s - quiet_s) / (SCHEDULE_HOURS * 3600.0)
    for spec in data["instruments"].values():
        if not faults:
            (spec.get("settings") or {}).pop("faults", None)
        for fault in (spec.get("settings") or {}).get("faults", []):
            for key in ("at_s", "until_s"):
                if key in fault:
                    fault[key] = round(quiet_s + float(fault[key]) * scale, 3)
    data["mqtt"] = {"url": broker_url}
    data["storage"] = {
        "runs_dir": "runs",
        "calibration_store": "runs/calibration.json",
        "key_store": "runs/keys.sqlite",
    }
    if interval_s is not None:
        data.setdefault("qkd", {})["block_interval_s"] = interval_s
    path = workdir / "field-trial.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def faults_of(config: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    out = []
    for name, spec in data["instruments"].items():
        for fault in (spec.get("settings") or {}).get("faults", []):
            out.append({"instrument": name, **fault})
    return sorted(out, key=lambda f: float(f["at_s"]))


def last_ts(events: Path) -> float:
    """Run clock of the last complete line of ``events.jsonl`` (0 before there is one)."""
    try:
        with events.open("rb") as fh:
            fh.seek(max(events.stat().st_size - 65536, 0))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return 0.0
    for line in reversed(lines):
        try:
            return float(json.loads(line)["ts"])
        except (ValueError, KeyError):
            continue
    return 0.0


def key_rows(path: Path) -> list[tuple[str, int, bytes]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, n_bits, key FROM keys ORDER BY key_id").fetchall()
    return [(str(k), int(n), bytes(b)) for k, n, b in rows]


async def trial(
    hours: float,
    interval_s: float | None,
    workdir: Path,
    faults: bool = True,
    rss_csv: Path | None = None,
) -> dict[str, Any]:
    broker = Mosquitto(workdir / "broker")
    broker.start()
    config = trial_config(workdir, hours, broker.url, interval_s, faults)
    restarts_at = BROKER_RESTARTS_AT if faults else ()
    node = yaml.safe_load(config.read_text())
    topic = f"labctl/v1/{node['lab']}/{node['node']}/#"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    env["LABCTL_PROGRESS"] = "0"
    load_before = os.getloadavg()
    duration_s = hours * 3600.0
    rss: list[tuple[float, float]] = []
    t0 = time.monotonic()
    err_path = workdir / "stderr.txt"
    try:
        async with recording(MqttSettings.from_url(broker.url), topic) as rec:
            with err_path.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "labctl", "run", str(config),
                    "--duration", f"{duration_s:g}s", cwd=workdir, env=env,
                    stdout=asyncio.subprocess.DEVNULL, stderr=err,
                )  # fmt: skip
            try:
                restarts = await _watch(
                    proc, workdir / "runs", broker, duration_s, restarts_at, rss
                )
            finally:
                if proc.returncode is None:  # interrupted: the run must not outlive us
                    proc.kill()
                    await proc.wait()
            stderr = err_path.read_text(errors="replace")
            wall_s = time.monotonic() - t0
            folder = sorted((workdir / "runs").glob("*-main"))[-1]
            run_id = folder.name
            await rec.wait_for(lambda: _complete(rec, run_id, folder), 30.0)
            seqs = rec.runs.seqs(run_id)
    finally:
        broker.stop()
        if rss_csv is not None:
            rows = "".join(f"{t:.1f},{mib:.1f}\n" for t, mib in rss)
            await asyncio.to_thread(rss_csv.write_text, "wall_s,rss_mib\n" + rows, "utf-8")
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    stop = next((e for e in reversed(events) if e["kind"] == "stop"), None)
    blocks = [e for e in events if e["stream"] == "qkd" and "block" in e.get("data", {})]
    schedule = faults_of(config)
    return _figures(
        hours, wall_s, proc.returncode, stderr, stop, blocks, events, schedule, restarts,
        seqs, folder, rss, load_before, duration_s,
    )  # fmt: skip


async def _watch(
    proc: asyncio.subprocess.Process,
    runs: Path,
    broker: Mosquitto,
    duration_s: float,
    restarts_at: tuple[float, ...],
    rss: list[tuple[float, float]],
) -> int:
    """Sample the run's RSS every second and restart the broker on schedule; restarts done."""
    child = psutil.Process(proc.pid)
    t0 = time.monotonic()
    restarts = 0
    while proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), 1.0)
        except TimeoutError:
            pass
        try:
            rss.append((time.monotonic() - t0, child.memory_info().rss / 2**20))
        except psutil.NoSuchProcess:
            break
        now_s = await asyncio.to_thread(_run_clock_s, runs)
        if sum(1 for f in restarts_at if now_s >= f * duration_s) > restarts:
            broker.kill()  # the broker dies and comes back 2 s later
            await asyncio.sleep(2.0)
            broker.start()
            restarts += 1
    return restarts


def _run_clock_s(runs: Path) -> float:
    """How far the run's clock is (0 before its folder exists)."""
    folders = sorted(runs.glob("*-main"))
    return last_ts(folders[-1] / "events.jsonl") if folders else 0.0


def _complete(rec: Any, run_id: str, folder: Path) -> bool:
    expected = sum(1 for _ in (folder / "events.jsonl").open())
    return len(rec.runs.seqs(run_id)) >= expected


def _figures(
    hours: float,
    wall_s: float,
    code: int | None,
    stderr: str,
    stop: dict[str, Any] | None,
    blocks: list[dict[str, Any]],
    events: list[dict[str, Any]],
    faults: list[dict[str, Any]],
    restarts: int,
    seqs: list[int],
    folder: Path,
    rss: list[tuple[float, float]],
    load_before: tuple[float, float, float],
    duration_s: float,
) -> dict[str, Any]:
    windows = [
        (float(f["at_s"]), float(f["until_s"]))
        for f in faults
        if f["kind"] in ("attack", "blinding")
    ]
    interval = max(np.diff([b["ts"] for b in blocks]).min(), 0.0) if len(blocks) > 1 else 0.0

    def attacked(block: dict[str, Any]) -> bool:
        # the run clock at which the block's acquisition started (0.1 s of pulses)
        start = block["data"].get("started_s")
        if start is None:  # results come after acquisition, within one interval
            return any(a - interval <= block["ts"] <= u + interval for a, u in windows)
        end = start + float(block["data"].get("acquired_s") or 0.0)
        return any(start < u and end > a for a, u in windows)

    honest = [b for b in blocks if not attacked(b)]
    cost = [
        0.5 * (b["data"]["qber_z"] + b["data"]["qber_x"])
        for b in honest
        if b["data"]["qber_z"] is not None and b["data"]["qber_x"] is not None
    ]
    floor = float(np.mean(cost[:3])) if len(cost) >= 3 else None
    with_key = [b for b in blocks if b["data"]["status"] == "key"]
    honest_key = [b for b in honest if b["data"]["status"] == "key"]
    runs = folder.parent
    alice, bob = key_rows(runs / "keys-alice.sqlite"), key_rows(runs / "keys-bob.sqlite")
    missing = sorted(set(range(len(events))) - set(seqs))
    last_block_s = max((b["ts"] for b in with_key), default=0.0)
    injected = [f for f in faults if float(f["at_s"]) < (stop or {}).get("ts", 0.0)]
    survived = [
        f
        for f in injected
        if last_block_s > float(f.get("until_s", f["at_s"])) + float(f.get("duration_s", 0.0))
    ]
    samples = np.array(rss) if rss else np.zeros((0, 2))
    warm = samples[len(samples) // 10 :]
    slope = float(np.polyfit(warm[:, 0], warm[:, 1], 1)[0] * 3600) if len(warm) > 2 else None
    return {
        "benchmark": "field_trial",
        "sim_hours": hours,
        "wall_s": round(wall_s, 1),
        "exit_code": code,
        "status": (stop or {}).get("data", {}).get("exit_status"),
        "reason": (stop or {}).get("data", {}).get("reason"),
        "stderr_tail": stderr[-400:] if code else "",
        "blocks": len(blocks),
        "blocks_with_key": len(with_key),
        "key_share": round(len(with_key) / len(blocks), 4) if blocks else None,
        "key_share_outside_attacks": round(len(honest_key) / len(honest), 4) if honest else None,
        "secret_bits": sum(int(b["data"]["secret_bits"]) for b in blocks),
        "floor_qber": floor,
        "mean_qber_outside_attacks": float(np.mean(cost)) if cost else None,
        "mean_qber_excess_pp": round(100 * (float(np.mean(cost)) - floor), 3) if floor else None,
        "recalibrations": sum(
            1
            for e in events
            if e["stream"] == "calibration"
            and e.get("data", {}).get("routine") == "polarization"
            and blocks
            and e["ts"] > blocks[0]["ts"]
        ),
        "drift_steps": sum(1 for e in events if e["stream"] == "drift"),
        "suspensions": [
            e["data"].get("suspender")
            for e in events
            if e["stream"] == "runner" and e["data"].get("action") == "suspended"
        ],
        "faults_injected": len(injected) + restarts,
        "faults_survived": len(survived)
        + (restarts if (stop or {}).get("data", {}).get("exit_status") != "aborted" else 0),
        "faults_not_survived": [
            f"{f['instrument']}:{f['kind']}@{f['at_s']}" for f in injected if f not in survived
        ],
        "broker_restarts": restarts,
        "mqtt_missing_seq": len(missing),
        "key_mismatches": len(set(alice) ^ set(bob)),
        "keys_alice": len(alice),
        "key_bits_in_attack_windows": sum(
            int(b["data"]["secret_bits"]) for b in blocks if attacked(b)
        ),
        "rss_peak_mib": round(float(samples[:, 1].max()), 1) if len(samples) else None,
        "rss_slope_mib_per_wall_h": round(slope, 2) if slope is not None else None,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "sim_s_per_wall_s": round(duration_s / wall_s, 2),
    }


SIFTED_PER_BASIS = 930_000
"""Sifted bits per basis of a 1e8-pulse block on sim.yaml (measured: 1.86e6 both bases)."""
SIFTED_PER_PROBE = 18_000
"""Sifted bits per basis of a tracker probe: a 2 ms capture of the calibration frame."""


async def _drift_excess(
    raw: dict[str, Any], seed: int, hours: float, interval_s: float, *, tracked: bool
) -> np.ndarray:
    """Each block's cost above the floor, a block every ``interval_s`` for ``hours``."""
    from experiments.keygen.drift import DriftTracker, TrackingSettings
    from sims.twins import SimPolarizationController
    from sims.world import World
    from sims.world.receiver import basis_error_rates

    world = World.from_settings({**raw["world"]["settings"], "seed": seed})
    pc = SimPolarizationController("pc-bob", world)
    await pc.connect()
    await pc.set_voltages_mv([300.0, 1000.0, -700.0, 400.0])  # a generic calibrated point
    world.optics.fiber.matrix = world.optics.controller.matrix.T.copy()
    floor = 0.5 * sum(basis_error_rates(world.settings.receiver, world.optics.rotation))
    rng = np.random.default_rng(seed)
    settings = TrackingSettings()

    def measured(sifted: int) -> float:
        world.optics.fiber.advance_to(world.clock.now_s())
        truth = basis_error_rates(world.settings.receiver, world.optics.rotation)
        return float(np.mean([rng.binomial(sifted, q) / sifted for q in truth]))

    async def probe() -> float:
        cost = measured(SIFTED_PER_PROBE)
        world.clock.advance(settings.evaluation_s)
        return cost

    tracker = DriftTracker(pc, settings, probe)
    excess = []
    for block in range(int(hours * 3600 / interval_s)):
        start_s = world.clock.now_s()
        if tracked:
            await tracker.before_block(block)
        excess.append(measured(SIFTED_PER_BASIS) - floor)
        world.clock.advance(start_s + interval_s - world.clock.now_s())
    return np.array(excess)


async def closed_loop(hours: float, interval_s: float, seed: int) -> dict[str, Any]:
    """The drift tracker alone on sim.yaml's world for ``hours``: one QBER reading per block.

    The world's fiber drifts; the tracker drives the SimPolarizationController twin; each
    of its probes reads the world's error rate for the rotation at that moment, binomially
    sampled with a 2 ms capture's sifted bits, and each block's (Q_Z, Q_X) the same with a
    block's sifted bits (no events are generated, so 12 h take minutes). Untracked, the same
    drift for comparison.
    """
    raw = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"seed": seed, "interval_s": interval_s, "hours": hours}
    t0 = time.perf_counter()
    for tracked in (True, False):
        e = await _drift_excess(raw, seed, hours, interval_s, tracked=tracked)
        name = "tracked" if tracked else "untracked"
        out[name] = {
            "blocks": len(e),
            "mean_excess_pp": round(100 * float(e.mean()), 3),
            "share_within_0_5_pp": round(float(np.mean(e < 0.005)), 4),
            "p99_excess_pp": round(100 * float(np.quantile(e, 0.99)), 3),
        }
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["loadavg"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours")
    parser.add_argument(
        "--block-interval-s", type=float, default=None, help="override qkd.block_interval_s"
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="drift only: no faults, no broker restarts"
    )
    parser.add_argument(
        "--tracking-only",
        action="store_true",
        help="the drift tracker alone on the world's polarization physics (no main job)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rss-csv", type=Path, default=None, help="write the RSS samples (wall_s, rss_mib) here"
    )
    args = parser.parse_args()
    if args.tracking_only:
        interval = args.block_interval_s or 10.0
        print(json.dumps(asyncio.run(closed_loop(args.hours, interval, args.seed)), indent=2))
        return
    with tempfile.TemporaryDirectory(prefix="field-trial-") as tmp:
        result = asyncio.run(
            trial(
                args.hours,
                args.block_interval_s,
                Path(tmp),
                faults=not args.no_faults,
                rss_csv=args.rss_csv,
            )
        )
    result["faults"] = not args.no_faults
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

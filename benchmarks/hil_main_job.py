"""CPU per key block: the main job through the real drivers (HIL) against sim.yaml's twins.

Runs, in one invocation, ``labctl run configs/sim.yaml`` (twins in process) and ``labctl
run configs/hil.yaml`` against ``labctl twin serve configs/sim.yaml`` (every port free),
each as a child process, and prints JSON: blocks, CPU seconds (user + system) of the main
job per block for both, their ratio, the served bench's own CPU per block (the simulation
a lab does not run), wall time and the load average. Copies of the configs go to a
temporary folder so no run folder or key store of the repository is touched.

    python benchmarks/hil_main_job.py --sim-duration 60s --hil-duration 240s
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
FREE_PORTS = {
    "laser": {"port": 0},
    "detectors": {"control_port": 0, "counts_port": 0},
    "tagger-alice": {"control_port": 0, "stream_port": 0},
    "tagger-bob": {"control_port": 0, "stream_port": 0},
    "transmitter": {"port": 0, "upload_port": 0},
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["LABCTL_PROGRESS"] = "0"
    return env


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def _follow(process: subprocess.Popen[str], runs: Path) -> list[tuple[str, float]]:
    """(stream, CPU seconds of the child so far) at each run event, read as it is written.

    The events' own timestamps are on the run's clock (virtual for sim.yaml), so CPU is
    sampled when each event line appears in events.jsonl instead.
    """
    child = psutil.Process(process.pid)
    marks: list[tuple[str, float]] = []
    events: Path | None = None
    offset = 0
    last_cpu = 0.0
    while True:
        running = process.poll() is None
        if running:
            try:
                last_cpu = _cpu_s(child)
            except psutil.NoSuchProcess:
                running = False
        if events is None:
            found = sorted(runs.glob("*-main/events.jsonl"))
            events = found[-1] if found else None
        if events is not None:
            with events.open() as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offset += len(complete.encode())
            for line in complete.splitlines():
                record = json.loads(line)
                if record.get("kind") == "event":
                    marks.append((str(record.get("stream")), last_cpu))
        if not running:
            return marks
        time.sleep(0.05)


def _phases(marks: list[tuple[str, float]], cpu_s: float) -> dict[str, Any]:
    """CPU before the first key block (calibration, sync, start-up) and per block after."""
    blocks = [cpu for stream, cpu in marks if stream == "qkd"]
    if not blocks:
        return {"setup_cpu_s": round(cpu_s, 2), "steady_cpu_per_block_s": None}
    before = [cpu for stream, cpu in marks[: marks.index(("qkd", blocks[0]))] if stream == "sync"]
    setup = before[-1] if before else 0.0
    steady = (blocks[-1] - blocks[0]) / (len(blocks) - 1) if len(blocks) > 1 else None
    return {
        "setup_cpu_s": round(setup, 2),
        "first_block_cpu_s": round(blocks[0] - setup, 2),
        "steady_cpu_per_block_s": None if steady is None else round(steady, 3),
    }


def _run_main_job(config: Path, duration: str, cwd: Path) -> dict[str, Any]:
    """One ``labctl run``: its CPU (total and by phase), wall time and summary."""
    runs = Path(yaml.safe_load(config.read_text())["storage"]["runs_dir"])
    t0 = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "labctl", "run", str(config), "--duration", duration],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    marks = _follow(process, runs)
    process.wait()
    wall_s = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary_path = max(runs.glob("*-main/summary.json"), key=lambda p: p.stat().st_mtime)
    summary = json.loads(summary_path.read_text())
    blocks = int(summary["blocks"])
    return {
        "exit_code": process.returncode,
        "status": summary["status"],
        "blocks": blocks,
        "blocks_with_key": summary.get("blocks_with_key"),
        "secret_bits": summary["secret_bits"],
        "qber_z": summary["qber_z"],
        "key_rate_per_pulse": summary["key_rate_per_pulse"],
        "sync_offset_ps": summary["sync_offset_ps"],
        "cpu_s": round(cpu_s, 2),
        "cpu_per_block_s": round(cpu_s / blocks, 3) if blocks else None,
        **_phases(marks, cpu_s),
        "wall_s": round(wall_s, 1),
    }


def _serve(folder: Path) -> tuple[subprocess.Popen[str], dict[tuple[str, str], str]]:
    data = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    data["twin_serve"] = {"link_dir": str(folder / "links"), "instruments": FREE_PORTS}
    data["storage"] = {"runs_dir": str(folder / "served")}
    config = folder / "served.yaml"
    config.write_text(yaml.safe_dump(data))
    process = subprocess.Popen(
        [sys.executable, "-m", "labctl", "twin", "serve", str(config)],
        cwd=folder,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    endpoints: dict[tuple[str, str], str] = {}
    for line in process.stdout:
        if line.startswith("twin serve: ready"):
            return process, endpoints
        parts = line.split()
        if len(parts) == 3:
            endpoints[(parts[0], parts[1])] = parts[2]
    raise SystemExit("twin serve did not get ready")


def _hil_config(folder: Path, endpoints: dict[tuple[str, str], str]) -> Path:
    data = yaml.safe_load((REPO / "configs" / "hil.yaml").read_text())
    for name, spec in data["instruments"].items():
        transport = spec["transport"]
        if name == "laser":
            port = endpoints[(name, "control")].rsplit(":", 1)[1]
            transport["address"] = f"TCPIP::127.0.0.1::{port}::SOCKET"
        elif name in ("pc-bob", "switch"):
            transport["address"] = endpoints[(name, "serial")]
        elif name == "detectors":
            transport["address"] = endpoints[(name, "control")]
            transport["options"]["counts_address"] = endpoints[(name, "counts")]
        elif name.startswith("tagger"):
            transport["address"] = endpoints[(name, "control")]
            transport["options"]["stream_address"] = endpoints[(name, "stream")]
        elif name == "transmitter":
            transport["address"] = endpoints[(name, "control")]
            upload = endpoints[(name, "upload")].rsplit(":", 1)[1]
            transport["options"]["upload_port"] = int(upload)
    data["storage"] = {"runs_dir": str(folder / "runs-hil")}
    path = folder / "hil.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-duration", default="60s", help="sim.yaml run length (sim clock)")
    parser.add_argument("--hil-duration", default="240s", help="hil.yaml run length (wall)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sim = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
        sim["storage"] = {"runs_dir": str(folder / "runs-sim")}
        sim_config = folder / "sim.yaml"
        sim_config.write_text(yaml.safe_dump(sim))
        sim_result = _run_main_job(sim_config, args.sim_duration, folder)
        served, endpoints = _serve(folder)
        bench = psutil.Process(served.pid)
        bench_before = bench.cpu_times()
        try:
            hil_result = _run_main_job(_hil_config(folder, endpoints), args.hil_duration, folder)
            bench_after = bench.cpu_times()
        finally:
            served.send_signal(signal.SIGINT)
            served.wait(60)
    bench_cpu = (bench_after.user - bench_before.user) + (bench_after.system - bench_before.system)
    ratio = steady_ratio = None
    if sim_result["cpu_per_block_s"] and hil_result["cpu_per_block_s"]:
        ratio = round(hil_result["cpu_per_block_s"] / sim_result["cpu_per_block_s"], 2)
    if sim_result["steady_cpu_per_block_s"] and hil_result["steady_cpu_per_block_s"]:
        steady_ratio = round(
            hil_result["steady_cpu_per_block_s"] / sim_result["steady_cpu_per_block_s"], 2
        )
    blocks = hil_result["blocks"]
    print(
        json.dumps(
            {
                "benchmark": "hil_main_job",
                "sim": sim_result,
                "hil": hil_result,
                "hil_over_sim_cpu_per_block": ratio,
                "hil_over_sim_steady_cpu_per_block": steady_ratio,
                "target_ratio": 1.3,
                "served_bench_cpu_per_block_s": round(bench_cpu / blocks, 3) if blocks else None,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Peak resident memory of the main job and of a two-node pair, per process.

Runs, each as child processes with copies of the configs in a temporary folder (no run
folder or key store of the repository is touched):

* main: ``labctl run configs/sim.yaml --duration 2m`` (twins in process);
* nodes: ``labctl twin serve configs/sim.yaml`` (every port free), then ``labctl node alice
  configs/hil-alice.yaml`` and ``labctl node bob configs/hil-bob.yaml`` against it.

Peak RSS per process is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``)
read every ``--sample-s`` while the process lives, and for each direct child also the
``ru_maxrss`` that ``wait4`` reports when it ends (exact, even for a peak reached between
samples). Descendants (e.g. an embedded broker) are listed by their command line. Prints one
JSON object with the figures in MiB, the targets, each run's exit code and outcome (blocks,
secret bits), and the load average before and after.

    python benchmarks/rss.py [--duration 2m] [--node-duration 240s] [--only main|nodes]
                             [--code CHECKOUT] [--memray DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml
from hil_main_job import REPO, _env, _hil_config, _serve

MAIN_TARGET_MIB = 500.0
NODE_TARGET_MIB = 400.0


CODE = [REPO]
"""The checkout whose labctl runs the main job and the nodes (``--code``; the configs and
the served bench always come from this one)."""


def _code_env() -> dict[str, str]:
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(CODE[0]), env["PYTHONPATH"]])
    return env


def _hwm_kib(pid: int) -> int | None:
    """The process's peak RSS so far (VmHWM, KiB), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


@dataclass
class Watch:
    """Samples VmHWM of a process and its descendants in a thread until stopped."""

    pid: int
    period_s: float
    peaks_kib: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _name(self, proc: psutil.Process) -> str:
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            return f"pid {proc.pid}"
        if proc.pid == self.pid:
            return "self"
        words = [w for w in cmd if not w.startswith("/") and not w.startswith("-")]
        return f"{Path(cmd[0]).name if cmd else '?'} {' '.join(words[:3])} (pid {proc.pid})"

    def _sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            kib = _hwm_kib(proc.pid)
            if kib is not None:
                name = self._name(proc)
                self.peaks_kib[name] = max(kib, self.peaks_kib.get(name, 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def start(self) -> Watch:
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return {name: round(kib / 1024, 1) for name, kib in self.peaks_kib.items()}


def _wait_maxrss_mib(proc: subprocess.Popen[str], timeout_s: float) -> tuple[int, float]:
    """Wait for ``proc`` (killing it after ``timeout_s``); its exit code and ru_maxrss."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, round(usage.ru_maxrss / 1024, 1)
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)


def _drain(proc: subprocess.Popen[str], sink: list[str]) -> threading.Thread:
    def run() -> None:
        assert proc.stdout is not None
        sink.extend(proc.stdout)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _summary(runs_dir: Path) -> dict[str, Any]:
    found = sorted(runs_dir.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return {}
    summary = json.loads(found[-1].read_text())
    keep = ("status", "blocks", "blocks_with_key", "secret_bits", "qber_z")
    return {k: summary[k] for k in keep if k in summary}


def main_job(folder: Path, duration: str, period_s: float) -> dict[str, Any]:
    """``labctl run configs/sim.yaml --duration``: peak RSS of the process and children."""
    data = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    runs = folder / "runs"
    data["storage"] = {
        **data.get("storage", {}),
        "runs_dir": str(runs),
        "calibration_store": str(runs / "calibration.json"),
        "key_store": str(runs / "keys.sqlite"),
    }
    config = folder / "sim.yaml"
    config.write_text(yaml.safe_dump(data))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", "run", str(config), "--duration", duration],
        cwd=folder,
        env=_code_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    drain = _drain(proc, lines)
    watch = Watch(proc.pid, period_s).start()
    code, maxrss = _wait_maxrss_mib(proc, 1800)
    sampled = watch.stop()
    drain.join(10)
    return {
        "exit_code": code,
        "wall_s": round(time.monotonic() - t0, 1),
        "peak_rss_mib": maxrss,
        "target_mib": MAIN_TARGET_MIB,
        "ratio_to_target": round(maxrss / MAIN_TARGET_MIB, 3),
        "sampled_peaks_mib": sampled,
        "outcome": _summary(runs),
        "output_tail": lines[-15:] if code else [],
    }


def _node_config(which: str, folder: Path, endpoints: dict[tuple[str, str], str]) -> Path:
    data = _hil_config(folder, endpoints, which)
    runs = folder / "runs" / which
    data["storage"] = {
        "runs_dir": str(runs),
        "calibration_store": str(runs / "calibration.json"),
        "key_store": str(folder / "runs" / "keys.sqlite"),
    }
    # As the HIL tests run it; a long link timeout so a loaded machine does not end the
    # pair while Bob calibrates (Alice waits on the link meanwhile).
    data.setdefault("qkd", {}).update(block_interval_s=1.0, channel_timeout_s=300.0)
    path = folder / f"{which}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


MEMRAY_DIR: list[Path] = []
"""``--memray DIR``: each node runs under ``memray run`` writing DIR/<role>.bin (its RSS
then includes the profiler's)."""


def _node(role: str, config: Path, folder: Path, *args: str) -> subprocess.Popen[str]:
    profiler: list[str] = []
    if MEMRAY_DIR:
        out = MEMRAY_DIR[0] / f"{role}.bin"
        out.unlink(missing_ok=True)
        profiler = ["-m", "memray", "run", "-q", "--aggregate", "-o", str(out)]
    return subprocess.Popen(
        [sys.executable, *profiler, "-m", "labctl", "node", role, str(config), *args],
        cwd=folder,
        env=_code_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def node_pair(folder: Path, duration: str, period_s: float) -> dict[str, Any]:
    """Served bench + ``labctl node alice`` + ``labctl node bob``: peak RSS of each."""
    serve, endpoints = _serve(folder)
    serve_watch = Watch(serve.pid, period_s).start()
    psk = folder / "psk"
    psk.write_bytes(os.urandom(4096))  # Wegman-Carter needs >= 640 random bytes
    psk.chmod(0o600)
    try:
        alice_cfg = _node_config("hil-alice", folder, endpoints)
        bob_cfg = _node_config("hil-bob", folder, endpoints)
        t0 = time.monotonic()
        alice = _node("alice", alice_cfg, folder, "--listen", "127.0.0.1:0", "--psk-file", str(psk))
        assert alice.stdout is not None
        first = alice.stdout.readline()
        if not first.startswith("listening on "):
            raise SystemExit(f"node alice did not listen: {first!r}")
        address = first.strip().removeprefix("listening on ")
        alice_watch = Watch(alice.pid, period_s).start()
        alice_lines: list[str] = []
        alice_drain = _drain(alice, alice_lines)
        bob = _node(
            "bob", bob_cfg, folder, "--connect", address, "--psk-file", str(psk),
            "--duration", duration,
        )  # fmt: skip
        bob_watch = Watch(bob.pid, period_s).start()
        bob_lines: list[str] = []
        bob_drain = _drain(bob, bob_lines)
        bob_code, bob_rss = _wait_maxrss_mib(bob, 1800)
        alice_code, alice_rss = _wait_maxrss_mib(alice, 120)
        wall_s = time.monotonic() - t0
        bob_drain.join(10)
        alice_drain.join(10)
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(30)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait(10)
    served = serve_watch.stop()
    worst = max(alice_rss, bob_rss)
    return {
        "exit_codes": {"alice": alice_code, "bob": bob_code},
        "wall_s": round(wall_s, 1),
        "peak_rss_mib": {"alice": alice_rss, "bob": bob_rss},
        "target_mib_each": NODE_TARGET_MIB,
        "ratio_to_target_worst": round(worst / NODE_TARGET_MIB, 3),
        "sampled_peaks_mib": {
            "alice": alice_watch.stop(),
            "bob": bob_watch.stop(),
            "twin_serve (the bench, not a node)": served,
        },
        "outcome": {
            "alice": _summary(folder / "runs" / "hil-alice"),
            "bob": _summary(folder / "runs" / "hil-bob"),
        },
        "output_tail": {
            "alice": alice_lines[-15:] if alice_code else [],
            "bob": bob_lines[-15:] if bob_code else [],
        },
    }


def main(args: argparse.Namespace) -> dict[str, Any]:
    CODE[0] = Path(args.code).resolve()
    if args.memray:
        MEMRAY_DIR.append(Path(args.memray).resolve())
        MEMRAY_DIR[0].mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "benchmark": "rss",
        "code": str(CODE[0]),
        "load_average_1m_before": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="labctl-bench-rss-") as tmp:
        if args.only in (None, "main"):
            folder = Path(tmp) / "main"
            folder.mkdir()
            result["main_job"] = {"duration": args.duration} | main_job(
                folder, args.duration, args.sample_s
            )
        if args.only in (None, "nodes"):
            folder = Path(tmp) / "nodes"
            folder.mkdir()
            result["node_pair"] = {"duration": args.node_duration} | node_pair(
                folder, args.node_duration, args.sample_s
            )
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="2m", help="main job run-clock time")
    parser.add_argument("--node-duration", default="240s", help="Bob's run-clock time")
    parser.add_argument("--only", choices=("main", "nodes"), default=None)
    parser.add_argument(
        "--code", default=str(REPO), help="checkout to measure (e.g. a baseline worktree)"
    )
    parser.add_argument("--sample-s", type=float, default=0.2, help="VmHWM sampling period")
    parser.add_argument("--memray", metavar="DIR", help="profile each node with memray into DIR")
    print(json.dumps(main(parser.parse_args()), indent=2))

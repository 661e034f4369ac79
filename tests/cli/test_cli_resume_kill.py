"""A key-generation run interrupted again and again, ``labctl resume`` after every stop.

Real subprocesses of ``labctl run`` / ``labctl resume`` on the simulated station: kill -9
at five seeded random moments, one in each phase (calibration, synchronization,
acquisition, post-processing, the key-store commit), then SIGTERM and SIGINT once each,
then, its calibration expired, a resume that recalibrates and runs to its end. Resumes
reuse a valid calibration. After every kill the part of the stores the
checkpoint calls committed is identical at both ends and counts what the checkpoint
counts; after every graceful end the stores are identical, hold exactly the keys the
summary lists (ids, bits, blocks) and the recorded key events, and no block number repeats.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labctl.store.events import read_events
from tests.cli.sim_station import write_sim_config

REPO = Path(__file__).resolve().parents[2]
SEED = 20261207
WAIT_S = 180.0
Row = tuple[str, int, bytes, int]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # 8 processes on a busy machine


class Job:
    """One ``labctl`` process; its output goes to files (a full pipe would stall it)."""

    def __init__(self, tmp_path: Path, n: int, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), LABCTL_PROGRESS="0")
        self.out = tmp_path / f"job{n}.out"
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "labctl", *args],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}:\n{self.out.read_text()}")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"did not end:\n{self.out.read_text()}") from None


def _until(job: Job, what: str, found: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not found():
        job.alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}:\n{job.out.read_text()}")
        time.sleep(0.005)


def _text(path: Path, start: int = 0) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[start:]
    except FileNotFoundError:
        return ""


def _rows(path: Path, run_id: str) -> list[Row]:
    """(key_id, n_bits, key, block) of the run's keys, in store order (plain sqlite3)."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        found = db.execute(
            "SELECT key_id, n_bits, key, block FROM keys WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        ).fetchall()
    return [(str(k), int(n), bytes(b), int(blk)) for k, n, b, blk in found]


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM keys").fetchone()[0])


def _state(run: Path) -> dict[str, Any] | None:
    path = run / "checkpoint.json"
    if not path.exists():
        return None
    state = json.loads(path.read_text(encoding="utf-8")).get("state") or {}
    keygen = state.get("keygen")
    return keygen if isinstance(keygen, dict) else None


def _crash_consistent(run: Path, stores: tuple[Path, Path]) -> dict[str, int]:
    """After a kill: the committed part is identical at both ends and counts as checkpointed."""
    state = _state(run)
    alice, bob = (_rows(p, run.name) for p in stores)
    if state is None:  # killed before key generation began: it stored nothing yet
        assert alice == [] and bob == []
        return {"committed": 0, "bob_only": 0, "both_uncommitted": 0}
    last = state["committed_block"]
    committed_a = [r for r in alice if r[3] <= last]
    committed_b = [r for r in bob if r[3] <= last]
    assert committed_a == committed_b
    assert len(committed_b) == state["sums"]["blocks_with_key"]
    sums = state["sums"]
    # The stores hold the net key: what the authentication pool took is not stored.
    assert sum(r[1] for r in committed_b) == sums["secret_bits"] - sums.get("auth_key_bits", 0)
    late_a = {r[0] for r in alice if r[3] > last}
    late_b = {r[0] for r in bob if r[3] > last}
    assert late_a <= late_b  # Bob stores first: Alice never holds a key Bob lacks
    return {
        "committed": len(committed_b),
        "bob_only": len(late_b - late_a),
        "both_uncommitted": len(late_a),
    }


def _key_events(run: Path) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in read_events(run / "events.jsonl")
        if e["stream"] == "qkd" and "block" in e["data"]
    ]


def _ended_consistent(run: Path, stores: tuple[Path, Path]) -> dict[str, int]:
    """After a graceful end: stores, summary and key events agree exactly."""
    alice, bob = (_rows(p, run.name) for p in stores)
    assert alice == bob and bob  # same ids, bits and blocks, in the same order
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["key_ids"] == [r[0] for r in bob]
    assert summary["net_key_bits"] == sum(r[1] for r in bob)
    assert summary["blocks_with_key"] == len(bob) == len({r[3] for r in bob})
    events = _key_events(run)
    blocks = [e["block"] for e in events]
    assert len(blocks) == len(set(blocks)), "a block number repeats in the run"
    assert summary["blocks"] == len(events)
    keyed = [e for e in events if e["status"] == "key"]
    assert sorted(e["block"] for e in keyed) == sorted(r[3] for r in bob)
    assert sum(e["secret_bits"] for e in keyed) == summary["secret_bits"]
    return {"keys": len(bob), "bits": summary["net_key_bits"], "blocks": summary["blocks"]}


def test_kill_and_signals_at_random_moments_then_resume_keep_stores_and_summary_exact(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    config = write_sim_config(tmp_path, short_link=True)
    runs = tmp_path / "runs"
    stores = (runs / "keys-alice.sqlite", runs / "keys-bob.sqlite")
    started = time.monotonic()
    jobs = 0

    def start(*args: str) -> Job:
        nonlocal jobs
        jobs += 1
        return Job(tmp_path, jobs, *args)

    def events_since(run: Path, start: int, needle: str) -> Callable[[], bool]:
        return lambda: needle in _text(run / "events.jsonl", start)

    def block_logged(run: Path, start: int) -> Callable[[], bool]:
        return lambda: re.search(r"block \d+: ", _text(run / "run.log", start)) is not None

    # 1. calibration: the first run, killed while it calibrates.
    job = start("run", str(config), "--duration", "120s")
    _until(job, "a run folder", lambda: any(runs.glob("*-main/events.jsonl")))
    run = next(runs.glob("*-main"))
    _until(job, "the first calibration", events_since(run, 0, '"routine":"delays"'))
    time.sleep(rng.uniform(0.0, 1.0))
    moments: list[tuple[str, dict[str, int]]] = []

    recorded: dict[int, dict[str, Any]] = {}

    def kill(phase: str) -> None:
        job.proc.send_signal(signal.SIGKILL)
        job.wait()
        moments.append((phase, _crash_consistent(run, stores)))
        for event in read_events(run / "events.jsonl"):
            if event["stream"] == "qkd" and event["data"].get("status") == "key":
                recorded[event["seq"]] = event["data"]

    def resume(duration: str = "120s") -> tuple[Job, int, int]:
        marks = len(_text(run / "events.jsonl")), len(_text(run / "run.log"))
        return start("resume", str(run), "--duration", duration), *marks

    kill("calibration")
    # 2. synchronization: right after the calibration's report, or after the calibration
    # was reused (the first run may have stored every routine before it was killed); sync
    # follows at once.
    job, ev, log_at = resume()
    report = events_since(run, ev, '"report"')
    _until(
        job,
        "the calibration report or its reuse",
        lambda: report() or "calibration reused" in _text(run / "run.log", log_at),
    )
    recalibrated = report()
    time.sleep(rng.uniform(0.0, 0.2))
    kill("synchronization")
    # 3. acquisition and 4. post-processing: at random after a block's commit.
    for phase, low, high in (("acquisition", 0.0, 0.3), ("post-processing", 0.3, 1.2)):
        job, _, log_at = resume()
        _until(job, "a committed block", block_logged(run, log_at))
        time.sleep(rng.uniform(low, high))
        kill(phase)
    # 5. the store commit: just after Bob's store grows, before the block is committed.
    job, _, log_at = resume()
    _until(job, "a committed block", block_logged(run, log_at))
    rows = _count(stores[1])
    _until(job, "a new key at Bob", lambda: _count(stores[1]) > rows)
    time.sleep(rng.uniform(0.0, 0.005))
    kill("store commit")
    # SIGTERM and SIGINT: the run ends aborted at its next checkpoint, stores consistent.
    ended: list[tuple[str, int, dict[str, int]]] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        job, _, log_at = resume()
        _until(job, "a committed block", block_logged(run, log_at))
        time.sleep(rng.uniform(0.0, 0.5))
        job.proc.send_signal(sig)
        code = job.wait()
        assert code == 1, job.out.read_text()
        ended.append((sig.name, code, _ended_consistent(run, stores)))
    # Every resume since the calibration passed reused it: only the first resume (its run
    # killed while calibrating) may have calibrated again.
    log = _text(run / "run.log")
    assert log.count("calibration reused") == jobs - 1 - int(recalibrated)
    assert "recalibrating on resume" not in log
    # The last resume runs to its end, after the calibration expired: it recalibrates.
    calibrations = runs / "calibration.json"
    entries = json.loads(calibrations.read_text(encoding="utf-8"))
    for entry in entries.values():
        entry["expires_s"] = entry["time_s"] + 1.0
    calibrations.write_text(json.dumps(entries), encoding="utf-8")
    job, _, log_at = resume("3s")
    code = job.wait()
    assert code in (0, 3), job.out.read_text()  # ok, or degraded (a no-key block)
    assert "recalibrating on resume: calibration expired" in _text(run / "run.log", log_at)
    final = _ended_consistent(run, stores)
    metadata = json.loads((run / "metadata.json").read_text(encoding="utf-8"))
    assert len(metadata["resumes"]) == jobs - 1
    # Every key event on disk at a kill is still there at the end: no resume voided one.
    kept = {e["seq"]: e["data"] for e in read_events(run / "events.jsonl")}
    for seq, data in recorded.items():
        assert kept.get(seq) == data
    print(
        json.dumps(
            {
                "seed": SEED,
                "kills": moments,
                "signals": ended,
                "final": final,
                "processes": jobs,
                "wall_s": round(time.monotonic() - started, 1),
            }
        )
    )

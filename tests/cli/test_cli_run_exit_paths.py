"""``labctl run`` / ``labctl resume`` as real subprocesses: signals, failures, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qcodes.dataset import load_by_guid
from qcodes.dataset.sqlite.database import connect

from labctl.store.events import read_events
from tests.runner.runner_fixtures import read_marks

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(
        "lab: testlab\nnode: alice\nallowed_packages: [tests]\n"
        "instruments:\n"
        "  laser:\n"
        "    class: tests.runner.runner_fixtures:MarkerInstrument\n"
        f"    settings: {{marker_file: {tmp_path / 'marks.jsonl'}}}\n"
        "storage:\n  runs_dir: runs\n"
        "runner:\n  plan: tests.runner.runner_fixtures:counting_plan\n  halt_grace_s: 0.5\n"
    )
    return path


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "labctl.cli", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_dir(tmp_path: Path) -> Path:
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def _wait_for_index(tmp_path: Path, index: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = tmp_path / "runs"
        if runs.exists():
            for run in runs.iterdir():
                events = run / "events.jsonl"
                if events.exists() and any(
                    e["stream"] == "primary" and e["data"].get("index", -1) >= index
                    for e in read_events(events)
                ):
                    return
        time.sleep(0.05)
    raise AssertionError(f"the run never recorded index {index}")


def _stop_doc(run: Path) -> dict:
    stops = [e for e in read_events(run / "events.jsonl") if e["kind"] == "stop"]
    assert len(stops) == 1
    return stops[0]["data"]


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def _safe_state_ran_last(tmp_path: Path) -> bool:
    actions = [m["action"] for m in read_marks(tmp_path / "marks.jsonl")]
    return "safe_state" in actions and actions.index("safe_state") > actions.index("output=True")


def test_sigterm_aborts_gracefully(tmp_path: Path) -> None:
    proc = _start(
        tmp_path, "run", str(_config(tmp_path)), "--set", "n=100000", "--set", "step_s=0.02"
    )
    _wait_for_index(tmp_path, 3)
    proc.send_signal(signal.SIGTERM)
    code, out, err = _finish(proc)
    assert code == 1, err
    stop = _stop_doc(_run_dir(tmp_path))
    assert stop["exit_status"] == "aborted" and stop["reason"] == "SIGTERM received"
    assert stop["safe_state"] == "ok" and _safe_state_ran_last(tmp_path)
    assert "aborted (SIGTERM received)" in out


def test_two_ctrl_c_halt_a_plan_without_checkpoints(tmp_path: Path) -> None:
    proc = _start(
        tmp_path, "run", str(_config(tmp_path)), "--plan", "tests.runner.runner_fixtures:stuck_plan"
    )
    _wait_for_index(tmp_path, 0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # first Ctrl-C waits for a checkpoint that never comes
    proc.send_signal(signal.SIGINT)
    code, _out, err = _finish(proc)
    assert code == 1, err
    stop = _stop_doc(_run_dir(tmp_path))
    assert stop["exit_status"] == "halted" and "SIGINT" in stop["reason"]
    assert _safe_state_ran_last(tmp_path)


def test_plan_exception_exits_1_with_failed_stop(tmp_path: Path) -> None:
    proc = _start(
        tmp_path, "run", str(_config(tmp_path)), "--set", "fail_at=2", "--set", "step_s=0"
    )
    code, _out, err = _finish(proc)
    assert code == 1, err
    stop = _stop_doc(_run_dir(tmp_path))
    assert stop["exit_status"] == "failed"
    assert stop["reason"] == "RuntimeError: simulated plan failure at index 2"
    assert _safe_state_ran_last(tmp_path)


def test_duration_gives_timeout(tmp_path: Path) -> None:
    proc = _start(
        tmp_path,
        "run",
        str(_config(tmp_path)),
        "--set",
        "n=100000",
        "--set",
        "step_s=0.02",
        "--duration",
        "1s",
        "--name",
        "timed",
    )
    code, _out, err = _finish(proc)
    assert code == 1, err
    run = _run_dir(tmp_path)
    assert run.name.endswith("-timed")
    assert _stop_doc(run)["exit_status"] == "timeout"
    assert _safe_state_ran_last(tmp_path)


def test_bad_plan_is_exit_2_before_touching_instruments(tmp_path: Path) -> None:
    proc = _start(tmp_path, "run", str(_config(tmp_path)), "--plan", "nosuchmodule:main")
    code, _out, err = _finish(proc)
    assert code == 2
    assert "--plan" in err and "nosuchmodule" in err
    assert read_marks(tmp_path / "marks.jsonl") == []


def test_kill_9_then_resume_records_each_index_exactly_once(tmp_path: Path) -> None:
    n = 60
    proc = _start(
        tmp_path, "run", str(_config(tmp_path)), "--set", f"n={n}", "--set", "step_s=0.03"
    )
    _wait_for_index(tmp_path, 15)
    proc.kill()  # SIGKILL: no cleanup, no stop document
    proc.communicate(timeout=30)
    run = _run_dir(tmp_path)
    events = read_events(run / "events.jsonl")
    assert not any(e["kind"] == "stop" for e in events)
    killed_at = max(
        e["data"]["index"] for e in events if e["stream"] == "primary" and e["kind"] == "event"
    )
    assert 15 <= killed_at < n - 1

    code, out, err = _finish(_start(tmp_path, "resume", str(run)))
    assert code == 0, err
    assert "ok" in out
    events = read_events(run / "events.jsonl")
    # Seqs rise strictly; the only gap is the rolled-back range the "resumed" event voids
    # (those numbers may already have gone out on MQTT, so they are never reused).
    seqs = [e["seq"] for e in events]
    resumed = next(e for e in events if e["data"].get("action") == "resumed")
    void = resumed["data"]["void_seqs"]
    voided = set() if void is None else set(range(void[0], void[1] + 1))
    assert seqs == sorted(set(seqs))
    assert set(seqs) | voided == set(range(seqs[-1] + 1)) and not set(seqs) & voided
    indices = [
        e["data"]["index"] for e in events if e["stream"] == "primary" and e["kind"] == "event"
    ]
    assert indices == list(range(n))
    assert _stop_doc(run)["exit_status"] == "ok"
    guid = json.loads((run / "metadata.json").read_text())["datasets"]["counts"]
    data = load_by_guid(guid, conn=connect(str(run / "data.db"))).get_parameter_data()
    assert sorted(data["value_hz"]["idx"].tolist()) == list(range(n))

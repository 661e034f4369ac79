"""One main job per store: a second ``labctl run`` / ``labctl resume`` is refused, naming
the holder; a killed run's locks are taken over by the next one (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labctl.store.events import read_events

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


def _wait_for_index(run_dir_parent: Path, index: int, timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run_dir_parent.exists():
            for run in run_dir_parent.iterdir():
                events = run / "events.jsonl"
                if events.exists() and any(
                    e["stream"] == "primary" and e["data"].get("index", -1) >= index
                    for e in read_events(events)
                ):
                    return run
        time.sleep(0.05)
    raise AssertionError(f"the run never recorded index {index}")


def test_second_run_and_resume_are_refused_then_kill_9_is_taken_over(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = _start(tmp_path, "run", str(config), "--set", "n=400", "--set", "step_s=0.05")
    try:
        run_dir = _wait_for_index(tmp_path / "runs", 2)
        second = _start(tmp_path, "run", str(config), "--set", "n=2")
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 1, err
        assert "calibration store" in err and f"pid {first.pid}" in err
        # The refused run made no run folder and did not disturb the first one.
        assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]
        # Resuming the live run is refused too, before its events are rolled back.
        events_before = (run_dir / "events.jsonl").read_bytes()
        resume = _start(tmp_path, "resume", str(run_dir))
        _out, err = resume.communicate(timeout=60)
        assert resume.returncode == 1, err
        assert f"pid {first.pid}" in err
        assert (run_dir / "events.jsonl").read_bytes().startswith(events_before)
    finally:
        first.kill()  # SIGKILL: lock records stay behind, the kernel drops the flocks
        first.communicate(timeout=30)
    assert (run_dir / "run.lock").exists()
    resume = _start(tmp_path, "resume", str(run_dir), "--duration", "0.5s")
    out, err = resume.communicate(timeout=120)
    assert "timeout" in out, out + err  # it ran: stopped by its own --duration
    assert "stale lock" in err and f"pid {first.pid}" in err
    assert not (run_dir / "run.lock").exists()
    assert not list(tmp_path.glob("*.lock"))  # the store locks are released on exit

"""StoreLock between real processes: refusal naming the holder, release, stale take-over."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labctl.store.lock import StoreLock, StoreLockedError, lock_path_of

REPO = Path(__file__).resolve().parents[2]

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from labctl.store.lock import StoreLock
    lock = StoreLock(Path(sys.argv[1]), "calibration store").acquire()
    print("held", flush=True)
    sys.stdin.readline()  # hold until told (or killed)
    lock.release()
    print("released", flush=True)
    """
)


def _holder(target: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(target)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_is_refused_naming_pid_and_host(tmp_path: Path) -> None:
    target = tmp_path / "calibration.json"
    proc = _holder(target)
    try:
        with pytest.raises(StoreLockedError) as caught:
            StoreLock(target, "calibration store").acquire()
        message = str(caught.value)
        assert f"pid {proc.pid}" in message
        assert socket.gethostname() in message
        assert str(target) in message and "calibration store" in message
        assert caught.value.holder is not None and caught.value.holder.pid == proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
    # Released on exit: the lock file is gone and the store can be locked again.
    assert not lock_path_of(target).exists()
    with StoreLock(target, "calibration store") as lock:
        assert lock.held
        record = json.loads(lock_path_of(target).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["started_wall_ts"] > 0
    assert not lock_path_of(target).exists()


def test_lock_of_a_killed_process_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "keys-bob.sqlite"
    proc = _holder(target)
    proc.kill()  # SIGKILL: the record stays, flock goes with the process
    proc.wait(10)
    assert json.loads(lock_path_of(target).read_text())["pid"] == proc.pid
    with caplog.at_level(logging.WARNING, logger="labctl.store.lock"):
        lock = StoreLock(target, "key store (bob)").acquire()
    try:
        assert any(
            "stale lock" in r.getMessage() and f"pid {proc.pid}" in r.getMessage()
            for r in caplog.records
        )
        assert json.loads(lock_path_of(target).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_record_from_another_host_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "calibration.json"
    record = {"pid": 1, "host": "elsewhere.invalid", "started_wall_ts": 0.0, "command": "x"}
    lock_path_of(target).write_text(json.dumps(record))
    with pytest.raises(StoreLockedError, match=r"elsewhere\.invalid.*remove"):
        StoreLock(target, "calibration store").acquire()


def test_two_locks_in_one_process_conflict_too(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    with StoreLock(target, "run folder"):
        assert lock_path_of(target) == target / "run.lock"
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            StoreLock(target, "run folder").acquire()

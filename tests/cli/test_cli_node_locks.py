"""``labctl node`` takes the store locks the main job takes: a second process on the same
stores is refused with a message naming the holder (pid and host), real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.sim_station import write_sim_config

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120.0

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> Path:
    return write_sim_config(tmp_path)


def _psk(tmp_path: Path) -> Path:
    path = tmp_path / "link.psk"
    path.write_bytes(os.urandom(4096))  # enough for the Wegman-Carter pool's seed
    path.chmod(0o600)
    return path


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), LABCTL_PROGRESS="0")
    return subprocess.Popen(
        [sys.executable, "-m", "labctl", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_held(lock: Path, pid: int) -> None:
    """Until ``lock`` records ``pid`` as its holder."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            if json.loads(lock.read_text(encoding="utf-8")).get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{lock} never named pid {pid}")


def _refused(proc: subprocess.Popen[str]) -> str:
    _out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 1, err
    return err


def _stop(proc: subprocess.Popen[str]) -> None:
    """The holder is done with: killed (its locks die with it)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_a_second_alice_and_a_main_job_are_refused_naming_the_holding_alice(
    tmp_path: Path,
) -> None:
    config, psk = _config(tmp_path), _psk(tmp_path)
    host = socket.gethostname()
    alice = _start(
        tmp_path, "node", "alice", str(config), "--listen", "127.0.0.1:0",
        "--psk-file", str(psk), "--timeout-s", "60",
    )  # fmt: skip
    try:
        _wait_held(tmp_path / "runs" / "keys-alice.sqlite.lock", alice.pid)
        second = _start(
            tmp_path, "node", "alice", str(config), "--listen", "127.0.0.1:0",
            "--psk-file", str(psk),
        )  # fmt: skip
        err = _refused(second)
        assert "key store (alice)" in err and f"pid {alice.pid} on host {host}" in err
        main_job = _start(tmp_path, "run", str(config), "--duration", "5s")
        err = _refused(main_job)
        assert f"pid {alice.pid} on host {host}" in err
        assert alice.poll() is None  # the holder is not disturbed
    finally:
        _stop(alice)


def test_bob_is_refused_naming_the_main_job_that_holds_his_stores(tmp_path: Path) -> None:
    config, psk = _config(tmp_path), _psk(tmp_path)
    host = socket.gethostname()
    main_job = _start(tmp_path, "run", str(config), "--duration", "10m")
    try:
        _wait_held(tmp_path / "runs" / "keys-bob.sqlite.lock", main_job.pid)
        bob = _start(
            tmp_path, "node", "bob", str(config), "--connect", "127.0.0.1:9",
            "--psk-file", str(psk), "--timeout-s", "5",
        )  # fmt: skip
        err = _refused(bob)
        # Refused before any connection to Alice is tried (port 9 would fail otherwise).
        assert "in use by" in err and f"pid {main_job.pid} on host {host}" in err
        assert "no link to Alice" not in err
    finally:
        _stop(main_job)

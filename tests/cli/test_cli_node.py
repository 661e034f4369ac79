"""``labctl node alice`` and ``labctl node bob`` as two real processes over loopback TCP.

Each node holds only its own instruments (configs/hil-alice.yaml, configs/hil-bob.yaml),
real drivers against one served bench (``labctl twin serve``, tests/cli/hil_bench.py).
Keys identical at both ends are checked in test_cli_hil.py; here: stopping and refusals.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.keygen.node_command import link_auth
from labctl.cli.main import main as labctl_main
from labctl.interfaces.errors import ConfigError
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.transcript import PoolStateError
from tests.cli.hil_bench import ServedBench, env

# A worker channel's first wait covers Bob's synchronization and first blocks: minutes on a
# loaded 2-core machine.
QKD = {"block_interval_s": 1.0, "channel_timeout_s": 400.0}
RUN_WAIT_S = 600.0


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedBench]:
    served = ServedBench.start(tmp_path_factory.mktemp("bench"))
    try:
        yield served
    finally:
        served.stop()


def store_rows(path: Path) -> list[tuple[str, int, bytes]]:
    """(key_id, n_bits, key) of every key, in store order; none when there is no store."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key_id, n_bits, key FROM keys ORDER BY rowid").fetchall()
    return [(str(k), int(n), bytes(b)) for k, n, b in rows]


def _psk(path: Path) -> Path:
    """A fresh pre-shared key large enough to seed the Wegman-Carter pool (the default)."""
    path.write_bytes(os.urandom(4096))
    path.chmod(0o600)
    return path


def _start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labctl", "node", *args],
        cwd=cwd,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _address(alice: subprocess.Popen[str]) -> str:
    assert alice.stdout is not None
    line = alice.stdout.readline()
    assert line.startswith("listening on "), line
    return line.strip().removeprefix("listening on ")


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=RUN_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


def _pair(
    bench: ServedBench,
    tmp_path: Path,
    alice_psk: Path,
    bob_psk: Path,
    alice_args: tuple[str, ...] = (),
    bob_args: tuple[str, ...] = (),
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    alice_config = bench.config("hil-alice", tmp_path, qkd=QKD)
    bob_config = bench.config("hil-bob", tmp_path, qkd=QKD)
    alice = _start(
        "alice",
        str(alice_config),
        "--listen",
        "127.0.0.1:0",
        "--psk-file",
        str(alice_psk),
        *alice_args,
        cwd=tmp_path,
    )
    bob = _start(
        "bob",
        str(bob_config),
        "--connect",
        _address(alice),
        "--psk-file",
        str(bob_psk),
        *bob_args,
        cwd=tmp_path,
    )
    return alice, bob


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mismatched_psk_stops_both_nodes_at_the_handshake(
    bench: ServedBench, tmp_path: Path
) -> None:
    alice, bob = _pair(
        bench,
        tmp_path,
        _psk(tmp_path / "a.psk"),
        _psk(tmp_path / "b.psk"),
        alice_args=("--timeout-s", "20"),
    )
    b_rc, b_out, b_err = _finish(bob)
    a_rc, a_out, a_err = _finish(alice)
    assert b_rc != 0 and a_rc != 0, (a_out + a_err, b_out + b_err)
    # To Alice a Bob with another key is a stranger: she refuses that connection and waits
    # for Bob until --timeout-s; Bob names the likely causes.
    assert "refused connection" in a_err and "no Bob within" in a_err
    assert "bob: no link to Alice" in b_err and "pre-shared key" in b_err
    for party in ("alice", "bob"):
        assert store_rows(tmp_path / "runs" / f"keys-{party}.sqlite") == []


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("alice_workers", "bob_workers"), [(1, 2), (2, 1)])
def test_mismatched_workers_is_an_error_naming_the_option(
    bench: ServedBench, tmp_path: Path, alice_workers: int, bob_workers: int
) -> None:
    psk = _psk(tmp_path / "link.psk")
    t0 = time.monotonic()
    alice, bob = _pair(
        bench,
        tmp_path,
        psk,
        psk,
        alice_args=("--workers", str(alice_workers)),
        bob_args=("--workers", str(bob_workers)),
    )
    b_rc, b_out, b_err = _finish(bob)
    a_rc, a_out, a_err = _finish(alice)
    assert b_rc != 0 and a_rc != 0, (a_out + a_err, b_out + b_err)
    # Refused at the handshake, before Bob calibrates: no channel timeout is waited for.
    assert f"Bob runs --workers {bob_workers}, this Alice --workers {alice_workers}" in a_err
    assert "bob: no link to Alice" in b_err and f"this Bob: {bob_workers}" in b_err
    assert time.monotonic() - t0 < 60.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ctrl_c_at_bob_ends_both_nodes_with_identical_stores(
    bench: ServedBench, tmp_path: Path
) -> None:
    psk = _psk(tmp_path / "link.psk")
    alice, bob = _pair(
        bench,
        tmp_path,
        psk,
        psk,
        alice_args=("--workers", "2"),
        bob_args=("--workers", "2", "--skip-calibration", "--duration", "1h"),
    )
    try:
        assert bob.stderr is not None
        log = ""
        while "block 0:" not in log:  # a block post-processed, more in flight
            line = bob.stderr.readline()
            assert line, log
            log += line
        bob.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        b_rc, b_out, b_err = _finish(bob)
        a_rc, a_out, a_err = _finish(alice)
        stop_s = time.monotonic() - t0
    finally:
        for proc in (alice, bob):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    # Bob's run ends "aborted (SIGINT received)"; he closes every channel, so Alice's nodes
    # see link/close and she ends normally, holding the same keys.
    assert b_rc == 1 and "aborted (SIGINT received)" in b_out, b_out + b_err
    assert a_rc == 0, a_out + a_err
    assert stop_s < 120.0
    alice_keys = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert alice_keys == store_rows(tmp_path / "runs" / "keys-bob.sqlite")


@pytest.mark.parametrize("role", ["alice", "bob"])
def test_workers_below_one_is_refused_before_anything_starts(
    tmp_path: Path, role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    psk = _psk(tmp_path / "link.psk")
    address = ["--listen" if role == "alice" else "--connect", "127.0.0.1:9"]
    argv = ["node", role, "missing.yaml", *address, "--psk-file", str(psk), "--workers", "0"]
    assert labctl_main(argv) == 2  # bad input: no station built, no socket opened
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err


def test_a_deleted_pool_is_not_seeded_again_from_the_same_key(tmp_path: Path) -> None:
    settings = KeygenSettings()
    psk = os.urandom(4096)
    store = tmp_path / "keys-bob.sqlite"
    key, pool = link_auth(settings, psk, store, "bob", "link.psk", None)
    assert key == psk[:32] and pool.path == tmp_path / "keys-bob.authpool"
    assert link_auth(settings, psk, store, "bob", "link.psk", None)[1].seed_id == pool.seed_id
    pool.path.unlink()  # the pool's pads are gone; the same key would hand them out again
    with pytest.raises(PoolStateError, match="use a new pre-shared key"):
        link_auth(settings, psk, store, "bob", "link.psk", None)
    fresh = os.urandom(4096)
    assert link_auth(settings, fresh, store, "bob", "link.psk", None)[1].path.exists()
    with pytest.raises(ConfigError, match=r"qkd\.auth: hmac"):
        link_auth(settings, os.urandom(100), tmp_path / "k.sqlite", "bob", "link.psk", None)
    short = os.urandom(16)
    assert link_auth(KeygenSettings(auth="hmac"), short, store, "bob", "x", None) == (short, None)

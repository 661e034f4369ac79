"""``labctl node alice`` and ``labctl node bob`` as two real processes over loopback TCP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.cli.main import main as labctl_main

pytestmark = pytest.mark.slow  # two interpreters start, build stations and synchronize: ~35 s

ROOT = Path(__file__).resolve().parents[2]
ALICE_WAIT_S = 60.0
RUN_WAIT_S = 150.0

Done = tuple[int, str, str]


def write_config(tmp_path: Path) -> Path:
    """configs/sim.yaml under tmp_path/configs (runs and key stores land in tmp), 1 s blocks."""
    data = yaml.safe_load((ROOT / "configs" / "sim.yaml").read_text(encoding="utf-8"))
    data["qkd"] = {"block_pulses": 100_000_000, "block_interval_s": 1.0}
    folder = tmp_path / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sim.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def store_rows(path: Path) -> list[tuple[str, int, bytes, str, int]]:
    """(key_id, n_bits, key, run_id, block) of every key, in the order they were stored."""
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT key_id, n_bits, key, run_id, block FROM keys ORDER BY rowid"
        ).fetchall()
    return [(str(k), int(n), bytes(b), str(r), int(i)) for k, n, b, r, i in rows]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["LABCTL_PROGRESS"] = "0"
    return env


async def _node(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "labctl",
        "node",
        *args,
        cwd=cwd,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _alice_address(alice: asyncio.subprocess.Process) -> str:
    """The HOST:PORT Alice printed once her listening socket was bound (port 0 = free port)."""
    assert alice.stdout is not None
    line = await asyncio.wait_for(alice.stdout.readline(), ALICE_WAIT_S)
    text = line.decode().strip()
    assert text.startswith("listening on "), text
    return text.removeprefix("listening on ")


async def _finish(proc: asyncio.subprocess.Process) -> Done:
    """Exit code, stdout and stderr; the process is killed if it outlives RUN_WAIT_S."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_WAIT_S)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _run_pair(
    tmp_path: Path,
    alice_psk: Path,
    bob_psk: Path,
    duration: str,
    *,
    alice_args: tuple[str, ...] = (),
    bob_args: tuple[str, ...] = (),
) -> tuple[Done, Done]:
    config = write_config(tmp_path)
    alice = await _node(
        "alice",
        str(config),
        "--listen",
        "127.0.0.1:0",
        "--psk-file",
        str(alice_psk),
        *alice_args,
        cwd=tmp_path,
    )
    try:
        address = await _alice_address(alice)
        bob = await _node(
            "bob",
            str(config),
            "--connect",
            address,
            "--psk-file",
            str(bob_psk),
            "--duration",
            duration,
            *bob_args,
            cwd=tmp_path,
        )
        bob_done = await _finish(bob)
        alice_done = await _finish(alice)
    finally:
        if alice.returncode is None:
            alice.kill()
            await alice.wait()
    return alice_done, bob_done


def _psk(path: Path) -> Path:
    path.write_text(os.urandom(32).hex() + "\n", encoding="ascii")
    path.chmod(0o600)  # a PSK open to group/others is refused
    return path


def _bob_summary(tmp_path: Path) -> dict[str, Any]:
    (summary,) = (tmp_path / "runs").glob("*/summary.json")
    return dict(json.loads(summary.read_text(encoding="utf-8")))


@pytest.mark.parametrize("workers", [1, 2])
async def test_alice_and_bob_processes_store_identical_keys(tmp_path: Path, workers: int) -> None:
    psk = _psk(tmp_path / "link.psk")
    options = ("--workers", str(workers))
    (a_rc, a_out, a_err), (b_rc, b_out, b_err) = await _run_pair(
        tmp_path, psk, psk, "25s", alice_args=options, bob_args=options
    )
    assert b_rc == 0, b_out + b_err
    assert a_rc == 0, a_out + a_err
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    bob = store_rows(tmp_path / "runs" / "keys-bob.sqlite")
    # 25 s of run clock: calibration (~10 s of it counting dark counts), sync, then one
    # block per second of acquisition; every block is keyed at 25 km.
    assert len(alice) >= 2 and all(n > 0 for _, n, _, _, _ in alice)
    # Same ids, lengths, bits and provenance, stored in the same order (block order, also
    # with several blocks in flight); Alice files the keys under Bob's run.
    assert alice == bob
    assert [block for *_, block in bob] == sorted(block for *_, block in bob)
    assert len({key for _, _, key, _, _ in alice}) == len(alice)
    summary = _bob_summary(tmp_path)
    assert {run_id for *_, run_id, _ in bob} == {summary["run_id"]}
    assert summary["key_ids"] == [key_id for key_id, *_ in bob]
    # How many workers ran: Bob's run summary and both nodes' output say.
    assert summary["workers"] == workers
    assert f"bob: {workers} workers" in b_out
    assert f"from {len(alice)} blocks, {workers} workers" in a_out
    # The pre-shared key never appears in what either process printed.
    secret = psk.read_text().strip()
    assert secret not in a_out + a_err + b_out + b_err


async def _interrupt_mid_run(tmp_path: Path, who: str) -> tuple[Done, Done, float]:
    """Alice and Bob with 2 workers; SIGINT to ``who`` once block 2 is stored and more are
    in flight. Returns Alice's and Bob's outcomes and the seconds both took to end."""
    psk = _psk(tmp_path / "link.psk")
    config = write_config(tmp_path)
    common = ("--psk-file", str(psk), "--workers", "2")
    alice = await _node("alice", str(config), "--listen", "127.0.0.1:0", *common, cwd=tmp_path)
    bob: asyncio.subprocess.Process | None = None
    try:
        address = await _alice_address(alice)
        bob = await _node(
            "bob", str(config), "--connect", address, *common, "--duration", "1h", cwd=tmp_path
        )
        assert bob.stderr is not None
        log = b""
        while b"block 2: key" not in log:  # some blocks stored, more in flight
            line = await asyncio.wait_for(bob.stderr.readline(), RUN_WAIT_S)
            assert line, log.decode()
            log += line
        (alice if who == "alice" else bob).send_signal(signal.SIGINT)
        t0 = time.monotonic()
        bob_done = await _finish(bob)
        alice_done = await _finish(alice)
        stop_s = time.monotonic() - t0
    finally:
        for proc in (alice, bob):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    alice_keys = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    assert len(alice_keys) >= 3
    # Same ids, bits, provenance and order at both ends, whoever was stopped.
    assert alice_keys == store_rows(tmp_path / "runs" / "keys-bob.sqlite")
    return alice_done, bob_done, stop_s


async def test_ctrl_c_at_bob_ends_both_nodes_with_identical_stores(tmp_path: Path) -> None:
    """Ctrl-C mid-run with 2 workers: blocks in flight finish, both processes exit, same keys."""
    (a_rc, a_out, a_err), (b_rc, b_out, b_err), stop_s = await _interrupt_mid_run(tmp_path, "bob")
    # Bob's run ends "aborted (SIGINT received)"; he closes every channel, so Alice's nodes
    # see link/close and she ends normally.
    assert b_rc == 1 and "aborted (SIGINT received)" in b_out, b_out + b_err
    assert a_rc == 0, a_out + a_err
    assert stop_s < 30.0


async def test_ctrl_c_at_alice_ends_both_nodes_with_identical_stores(tmp_path: Path) -> None:
    """Ctrl-C on Alice with 2 workers: she takes no new block, finishes those in flight and
    closes her channels; Bob's next block fails, later ones are dropped at both ends."""
    (a_rc, a_out, a_err), (b_rc, b_out, b_err), stop_s = await _interrupt_mid_run(tmp_path, "alice")
    assert a_rc == 1 and "alice: stopped (SIGINT received)" in a_err, a_out + a_err
    assert "finishing those in flight" in a_err
    assert b_rc == 1 and "key output stopped" in b_out, b_out + b_err
    assert "Alice closed the channel" in b_out, b_out
    assert stop_s < 30.0


async def test_mismatched_psk_stops_both_nodes_without_key(tmp_path: Path) -> None:
    alice_psk = _psk(tmp_path / "alice.psk")
    bob_psk = _psk(tmp_path / "bob.psk")
    (a_rc, a_out, a_err), (b_rc, b_out, b_err) = await _run_pair(
        tmp_path, alice_psk, bob_psk, "25s", alice_args=("--timeout-s", "5")
    )
    assert b_rc != 0 and a_rc != 0, (a_out + a_err, b_out + b_err)
    # To Alice a wrong key is a stranger: she closes that connection (MAC), says so and
    # waits on for Bob until --timeout-s; Bob finds the connection closed at the handshake.
    assert "refused connection from 127.0.0.1:" in a_err and "MAC" in a_err, a_err
    assert "no Bob within 5.0 s" in a_err
    assert "bob: no link to Alice" in b_err and "pre-shared key" in b_err, b_err
    for party in ("alice", "bob"):
        store = tmp_path / "runs" / f"keys-{party}.sqlite"
        assert not store.exists() or store_rows(store) == []


@pytest.mark.parametrize(("alice_workers", "bob_workers"), [(1, 2), (2, 1)])
async def test_mismatched_workers_is_an_error_naming_the_option(
    tmp_path: Path, alice_workers: int, bob_workers: int
) -> None:
    psk = _psk(tmp_path / "link.psk")
    t0 = time.monotonic()
    (a_rc, a_out, a_err), (b_rc, b_out, b_err) = await _run_pair(
        tmp_path,
        psk,
        psk,
        "25s",
        alice_args=("--workers", str(alice_workers)),
        bob_args=("--workers", str(bob_workers), "--skip-calibration"),
    )
    elapsed_s = time.monotonic() - t0
    assert b_rc != 0 and a_rc != 0, (a_out + a_err, b_out + b_err)
    # Both ends say what is wrong at connect time (every channel opens with a hello).
    assert f"Bob runs --workers {bob_workers}, this Alice --workers {alice_workers}" in a_err
    assert "bob: no link to Alice" in b_err and f"this Bob: {bob_workers}" in b_err
    assert elapsed_s < 60.0  # the channel timeout (qkd.channel_timeout_s) is 60 s
    for party in ("alice", "bob"):
        store = tmp_path / "runs" / f"keys-{party}.sqlite"
        assert not store.exists() or store_rows(store) == []


@pytest.mark.parametrize("role", ["alice", "bob"])
def test_workers_below_one_is_refused_before_anything_starts(
    tmp_path: Path, role: str, capsys: pytest.CaptureFixture[str]
) -> None:
    psk = _psk(tmp_path / "link.psk")
    address = ["--listen" if role == "alice" else "--connect", "127.0.0.1:9"]
    argv = ["node", role, "missing.yaml", *address, "--psk-file", str(psk), "--workers", "0"]
    assert labctl_main(argv) == 2  # bad input: no station built, no socket opened
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err


def test_a_psk_file_open_to_others_is_refused_naming_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    psk = _psk(tmp_path / "link.psk")
    psk.chmod(0o644)
    argv = ["node", "alice", "missing.yaml", "--listen", "127.0.0.1:0", "--psk-file", str(psk)]
    assert labctl_main(argv) == 2
    err = capsys.readouterr().err
    assert f"{psk}: --psk-file: secret file is open to group/others (mode 0644)" in err
    assert f"chmod 600 {psk}" in err

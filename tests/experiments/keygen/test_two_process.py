"""``labctl node alice`` and ``labctl node bob`` as two real processes over loopback TCP."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from keygen_helpers import ROOT, store_rows, write_config

pytestmark = pytest.mark.slow  # two interpreters start, build stations and synchronize: ~35 s

ALICE_WAIT_S = 60.0
RUN_WAIT_S = 150.0


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


async def _finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Exit code, stdout and stderr; the process is killed if it outlives RUN_WAIT_S."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_WAIT_S)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _run_pair(
    tmp_path: Path, alice_psk: Path, bob_psk: Path, duration: str
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    config = write_config(tmp_path)
    alice = await _node(
        "alice", str(config), "--listen", "127.0.0.1:0", "--psk-file", str(alice_psk), cwd=tmp_path
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
    return path


async def test_alice_and_bob_processes_store_identical_keys(tmp_path: Path) -> None:
    psk = _psk(tmp_path / "link.psk")
    (a_rc, a_out, a_err), (b_rc, b_out, b_err) = await _run_pair(tmp_path, psk, psk, "25s")
    assert b_rc == 0, b_out + b_err
    assert a_rc == 0, a_out + a_err
    alice = store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    bob = store_rows(tmp_path / "runs" / "keys-bob.sqlite")
    # 25 s of run clock: calibration (~10 s of it counting dark counts), sync, then one
    # block per second of acquisition; every block is keyed at 25 km.
    assert len(alice) >= 2 and all(n > 0 for _, n, _ in alice)
    assert alice == bob
    assert len({key for _, _, key in alice}) == len(alice)
    # Alice files the keys under Bob's run, so both stores agree on provenance too.
    import sqlite3

    def provenance(path: Path) -> list[tuple[str, str, int]]:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT key_id, run_id, block FROM keys ORDER BY key_id").fetchall()

    bob_meta = provenance(tmp_path / "runs" / "keys-bob.sqlite")
    assert provenance(tmp_path / "runs" / "keys-alice.sqlite") == bob_meta
    assert all(run_id for _, run_id, _ in bob_meta)
    # The pre-shared key never appears in what either process printed.
    secret = psk.read_text().strip()
    assert secret not in a_out + a_err + b_out + b_err


async def test_mismatched_psk_stops_both_nodes_without_key(tmp_path: Path) -> None:
    alice_psk = _psk(tmp_path / "alice.psk")
    bob_psk = _psk(tmp_path / "bob.psk")
    (a_rc, a_out, a_err), (b_rc, b_out, b_err) = await _run_pair(
        tmp_path, alice_psk, bob_psk, "25s"
    )
    assert b_rc != 0 and a_rc != 0, (a_out + a_err, b_out + b_err)
    # Alice rejects Bob's first frame (wrong MAC) and hangs up; Bob finds the link closed.
    assert "authentication failure" in a_err and "MAC" in a_err
    assert "key output stopped" in b_out
    assert store_rows(tmp_path / "runs" / "keys-alice.sqlite") == []
    assert store_rows(tmp_path / "runs" / "keys-bob.sqlite") == []

"""The HIL main job survives ``labctl twin serve`` being killed and restarted mid-run.

``labctl run`` of a hil.yaml copy (real drivers) against ``labctl twin serve`` of a sim.yaml
copy, both on free ports fixed in the files. Once block 0 is stored, the twin server is
killed (SIGKILL) and started again: every instrument comes back power-cycled. The run is
suspended while they are gone, resumes, and ends by its duration, not by an instrument
error; Alice's and Bob's key stores hold the same keys.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli_twin import REPO, start_serve, stop_serve

RUN_S = 150  # calibration and sync take about a minute; a block every 40 s after that


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _configs(tmp_path: Path) -> tuple[Path, Path]:
    """A served sim.yaml and a hil.yaml pointing at it, same free ports on every restart."""
    ports = _free_ports(9)
    names = ("47000", "47010", "47011", "47020", "47021", "47022", "47023", "47030", "47031")
    laser, det_c, det_n, ta_c, ta_s, tb_c, tb_s, tx_c, tx_u = ports
    links = tmp_path / "links"
    sim = (REPO / "configs" / "sim.yaml").read_text()
    sim = sim.replace("storage:\n  runs_dir: ../runs", f"storage:\n  runs_dir: {tmp_path}/sim")
    sim += (
        "\ntwin_serve:\n"
        f"  link_dir: {links}\n"
        "  instruments:\n"
        f"    laser: {{port: {laser}}}\n"
        f"    detectors: {{control_port: {det_c}, counts_port: {det_n}}}\n"
        f"    tagger-alice: {{control_port: {ta_c}, stream_port: {ta_s}}}\n"
        f"    tagger-bob: {{control_port: {tb_c}, stream_port: {tb_s}}}\n"
        f"    transmitter: {{port: {tx_c}, upload_port: {tx_u}}}\n"
    )
    hil = (REPO / "configs" / "hil.yaml").read_text()
    for default, port in zip(names, ports, strict=True):
        assert default in hil, default
        hil = hil.replace(default, str(port))
    hil = hil.replace("/tmp/labctl-twin", str(links)).replace("../runs/hil", str(tmp_path / "runs"))
    sim_file, hil_file = tmp_path / "sim-served.yaml", tmp_path / "hil-served.yaml"
    sim_file.write_text(sim)
    hil_file.write_text(hil)
    return sim_file, hil_file


def _run_log(runs: Path) -> str:
    logs = sorted(runs.glob("*/run.log"))
    return logs[-1].read_text() if logs else ""


def _keys(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT key_id, n_bits, key, block FROM keys ORDER BY block").fetchall()


@pytest.mark.slow
def test_hil_key_generation_survives_a_twin_serve_restart(tmp_path: Path) -> None:
    sim_file, hil_file = _configs(tmp_path)
    runs = tmp_path / "runs"
    serve, _ = start_serve(sim_file)
    restarted = None
    output = (tmp_path / "run.out").open("w")
    run = subprocess.Popen(
        [sys.executable, "-m", "labctl", "run", str(hil_file), "--duration", f"{RUN_S}s"],
        cwd=REPO,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240.0
        while "block 0:" not in _run_log(runs):
            assert run.poll() is None, (tmp_path / "run.out").read_text()
            assert time.monotonic() < deadline, "no block within 240 s"
            time.sleep(0.5)
        serve.kill()  # SIGKILL in the middle of the key generation
        serve.wait(10)
        time.sleep(1.0)
        restarted, _ = start_serve(sim_file)
        run.wait(timeout=RUN_S + 240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        output.close()
        if serve.poll() is None:
            serve.kill()
            serve.wait(10)
        if restarted is not None:
            stop_serve(restarted, signal.SIGTERM)
    log = _run_log(runs)
    # The drivers reconnect by themselves within their backoff (blocks go on), or the runner
    # suspends the run until the instrument answers and resumes it.
    resumed = "suspended: instrument" in log and "the run resumes" in log
    assert "block 1:" in log or resumed, log
    folder = sorted(runs.glob("*-main"))[-1]
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["status"] != "failed", metadata["reason"]
    for error in ("ConnectionLost", "InstrumentTimeout", "ProtocolError"):
        assert error not in metadata["reason"], metadata["reason"]
    alice, bob = _keys(runs / "keys-alice.sqlite"), _keys(runs / "keys-bob.sqlite")
    assert alice and alice == bob

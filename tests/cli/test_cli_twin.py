"""``labctl twin serve`` as a real subprocess: endpoints, hil.yaml checks healthy, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import pytest

REPO = Path(__file__).resolve().parents[2]
READY = "twin serve: ready"
queues: dict[int, Queue[str]] = {}


def start_serve(config: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``labctl twin serve CONFIG``; return it and the lines printed until ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "labctl", "twin", "serve", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    stdout = process.stdout
    queue: Queue[str] = Queue()
    # A reader thread: select() on a buffered text pipe misses lines already buffered.
    reader = threading.Thread(
        target=lambda: [queue.put(line) for line in iter(stdout.readline, "")]
    )
    reader.daemon = True
    queues[process.pid] = queue
    reader.start()
    lines: list[str] = []
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        try:
            line = queue.get(timeout=1.0)
        except Empty:
            if process.poll() is not None:
                break
            continue
        lines.append(line.rstrip("\n"))
        if line.startswith(READY):
            return process, lines
    process.kill()
    process.wait(10)
    pytest.fail(f"twin serve did not get ready: {lines}")


def stop_serve(process: subprocess.Popen[str], signum: int) -> str:
    """Send ``signum`` and return the rest of the output after a clean exit."""
    process.send_signal(signum)
    process.wait(timeout=30)
    assert process.returncode == 0
    time.sleep(0.2)  # let the reader thread drain the pipe
    rest: list[str] = []
    while True:
        try:
            rest.append(queues[process.pid].get_nowait())
        except Empty:
            return "".join(rest)


@pytest.mark.slow
def test_hil_station_is_healthy_against_served_twins() -> None:
    process, lines = start_serve(REPO / "configs" / "sim.yaml")
    try:
        endpoints = {tuple(line.split()[:2]): line.split()[2] for line in lines[:-1]}
        assert endpoints[("laser", "control")] == "127.0.0.1:47000"
        assert endpoints[("tagger-bob", "stream")] == "tcp://127.0.0.1:47023"
        link = Path(endpoints[("pc-bob", "serial")])
        assert link == Path("/tmp/labctl-twin/pc-bob")
        assert os.readlink(link) == endpoints[("pc-bob", "pty")]  # stable link -> /dev/pts/N
        check = subprocess.run(
            [sys.executable, "-m", "labctl", "check", "configs/hil.yaml", "--connect"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "all 7 instrument(s) connected and healthy" in check.stdout
    finally:
        rest = stop_serve(process, signal.SIGINT)
    assert "twin serve: stopped" in rest
    assert not link.is_symlink(), "the symlinks it created are removed"


def test_sigterm_stops_cleanly_and_keeps_foreign_files(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    foreign = links / "notes.txt"
    foreign.write_text("not the server's")
    config = tmp_path / "sim.yaml"
    text = (REPO / "configs" / "sim.yaml").read_text()
    text = text.replace("storage:\n  runs_dir: ../runs", f"storage:\n  runs_dir: {tmp_path}")
    text += (
        "\ntwin_serve:\n"
        f"  link_dir: {links}\n"
        "  instruments:\n"
        "    laser: {port: 0}\n"
        "    detectors: {control_port: 0, counts_port: 0}\n"
        "    tagger-alice: {control_port: 0, stream_port: 0}\n"
        "    tagger-bob: {control_port: 0, stream_port: 0}\n"
        "    transmitter: {port: 0, upload_port: 0}\n"
    )
    config.write_text(text)
    process, lines = start_serve(config)
    assert f"switch serial {links / 'switch'}" in lines
    assert (links / "switch").is_symlink()
    stop_serve(process, signal.SIGTERM)
    assert sorted(p.name for p in links.iterdir()) == ["notes.txt"]


def test_bad_twin_serve_section_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    text = (REPO / "configs" / "sim.yaml").read_text()
    config.write_text(text + "\ntwin_serve:\n  instruments:\n    laser: {prot: 1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "labctl", "twin", "serve", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "twin_serve.instruments.laser.prot" in result.stderr

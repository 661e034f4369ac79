"""What ``labctl run`` and ``labctl node`` print, seen as a terminal (pty) or a pipe shows it.

The pty output is replayed through a small terminal model (cursor moves, line erases) so
the assertions are about the final screen a person sees: log lines above the bars, no
count past its total, no bar left once its step ended, every log line timestamped.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "configs" / "sim.yaml"
COLUMNS = 120
STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=str(REPO),
        COLUMNS=str(COLUMNS),
        TERM="xterm-256color",
    )


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(
        "lab: testlab\nnode: alice\nallowed_packages: [tests]\n"
        "instruments:\n"
        "  laser:\n"
        "    class: tests.runner.runner_fixtures:MarkerInstrument\n"
        f"    settings: {{marker_file: {tmp_path / 'marks.jsonl'}}}\n"
        "storage:\n  runs_dir: runs\n"
        "runner:\n  plan: tests.runner.runner_fixtures:chatty_plan\n  halt_grace_s: 0.5\n"
    )
    return path


def run_in_pty(args: list[str], cwd: Path, timeout_s: float = 120.0) -> tuple[int, str]:
    """Run ``python -m labctl ARGS`` with a pty as its terminal; (exit code, raw output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "labctl", *args],
        cwd=cwd,
        env=_env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: \\r, \\n, cursor up/down, erase line."""
    lines: list[list[str]] = [[]]
    row = col = 0
    pos = 0
    while pos < len(raw):
        match = _CSI.match(raw, pos)
        if match is not None:
            arg, op = match.groups()
            count = int(arg) if arg.isdigit() else 1
            if op == "A":
                row = max(0, row - count)
            elif op == "B":
                row += count
            elif op == "K" and arg in ("2", ""):
                if arg == "2":
                    lines[row] = []
                else:
                    del lines[row][col:]
            elif op == "G":
                col = count - 1
            pos = match.end()
            while len(lines) <= row:
                lines.append([])
            continue
        char = raw[pos]
        pos += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            col = 0
            while len(lines) <= row:
                lines.append([])
        elif char == "\x1b" or ord(char) < 32:
            continue
        else:
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
    return ["".join(line).rstrip() for line in lines]


def test_run_in_a_terminal_logs_above_bars_and_leaves_no_bar(tmp_path: Path) -> None:
    config = _config(tmp_path)
    code, raw = run_in_pty(["run", str(config), "--set", "n=6", "--name", "ChattyRun"], tmp_path)
    shown = screen(raw)
    text = "\n".join(shown)
    assert code == 0, text
    # Bars were drawn while the run went on, and never counted past their total.
    plain = _CSI.sub("", raw)
    assert re.search(r"blocks ━+.* \d+/\d+", plain), plain[-2000:]
    counts = re.findall(r"(?:setup|blocks) [━╸╺ ]+ (\d+)/(\d+)", plain)
    # The bar estimated 4 steps and took 6: its total grew with the count.
    assert max(int(total) for _, total in counts) > 4, counts
    for done, total in counts:
        assert int(done) <= int(total), (done, total)
    # The final screen: every step's log line in order, each with its time; no bar left.
    steps = [line for line in shown if "chatty step" in line]
    assert [re.search(r"step (\d+) of 6", s).group(1) for s in steps] == list("123456"), text  # type: ignore[union-attr]
    for line in steps:
        assert re.match(STAMP + r" INFO +chatty step", line), line
    assert not any("━" in line for line in shown), text
    assert not any("/6" in line or "/4" in line for line in shown if "chatty" not in line), text
    assert any(re.search(r"run \S+-ChattyRun: ok", line) for line in shown), text
    assert "guid" not in text.lower()  # qcodes' INFO chatter stays off the terminal


def test_piped_logs_are_single_timestamped_lines(tmp_path: Path) -> None:
    config = _config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "labctl", "run", str(config), "--set", "n=3", "--set", "step_s=0"],
        cwd=tmp_path,
        env=dict(_env(), COLUMNS="60"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    logged = [line for line in done.stderr.splitlines() if line.strip()]
    assert logged and all(re.match(STAMP + r" (INFO|WARNING|ERROR) ", line) for line in logged), (
        done.stderr
    )
    # Long lines stay whole (a 60-column pipe does not wrap them).
    assert any("plan tests.runner.runner_fixtures:chatty_plan started" in line for line in logged)
    assert "━" not in done.stderr  # no bars where nobody watches


@pytest.mark.parametrize("role", ["alice", "bob"])
def test_alice_and_bob_log_the_same_timestamped_format(tmp_path: Path, role: str) -> None:
    psk = tmp_path / "link.psk"
    psk.write_bytes(os.urandom(4096))  # enough for the Wegman-Carter pool's seed
    psk.chmod(0o600)
    data = SIM.read_text().replace("../runs", str(tmp_path / "runs"))
    config = tmp_path / "sim.yaml"
    config.write_text(data)
    peer = ["--listen", "127.0.0.1:0"] if role == "alice" else ["--connect", "127.0.0.1:1"]
    limits = ["--psk-file", str(psk), "--timeout", "1.5s"]
    done = subprocess.run(
        [sys.executable, "-m", "labctl", "node", role, str(config), *peer, *limits],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    expected = "alice: no Bob within 1.5 s (--timeout)" if role == "alice" else "bob: no link"
    lines = [line for line in done.stderr.splitlines() if expected in line]
    assert len(lines) == 1, done.stderr
    assert re.match(STAMP + r" ERROR +" + re.escape(expected), lines[0]), lines[0]
    assert "Traceback" not in done.stderr

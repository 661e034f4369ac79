"""``labctl check``, run as a real subprocess: exit codes and what the user reads."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

STATION_TESTS = Path(__file__).resolve().parents[1] / "station"
DATA = STATION_TESTS / "data"


def labctl(*args: str | Path, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m labctl ARGS`` with the test instruments importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(STATION_TESTS), env.get("PYTHONPATH", "")])
    env["COLUMNS"] = "200"  # rich tables must not wrap the names we look for
    return subprocess.run(
        [sys.executable, "-m", "labctl", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
        check=False,
    )


class _LineHandler(socketserver.StreamRequestHandler):
    """Answers PING with PONG, anything else with OK; records every line."""

    def handle(self) -> None:
        for raw in self.rfile:
            line = raw.decode().strip()
            self.server.received.append(line)  # type: ignore[attr-defined]
            self.wfile.write(b"PONG\n" if line == "PING" else b"OK\n")


@pytest.fixture
def line_server() -> Iterator[tuple[int, list[str]]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _LineHandler)
    server.daemon_threads = True
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], server.received  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _probe(port: int) -> str:
    return (
        "    class: tests.station.fake_instruments:LineProbe\n"
        f"    transport: {{kind: tcp, address: '127.0.0.1:{port}', timeout_s: 2}}\n"
    )


def test_misspelled_field_exits_2_with_file_line_field_and_suggestion() -> None:
    result = labctl("check", DATA / "typo.yaml")
    assert result.returncode == 2
    assert f"{DATA / 'typo.yaml'}:8: instruments.tagger.transport.adress" in result.stderr
    assert "unknown field (did you mean 'address'?)" in result.stderr
    assert result.stdout == ""


def test_valid_file_prints_what_it_found() -> None:
    result = labctl("check", DATA / "good.yaml")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"station test-lab/alice: {DATA / 'good.yaml'} is valid" in out
    assert "world: tests.station.fake_instruments:FakeWorld" in out
    assert "2 instrument(s)" in out
    assert (
        "tests.station.fake_instruments:FakeLaser" in out
        and "tests.station.fake_instruments:FakeSwitch" in out
    )
    assert "mqtt: mqtts://broker.example.org" in out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "unknown_module.yaml",
            ":7: instruments.spd.class: module 'drivers.nosuchvendor.spd9000' not found",
        ),
        (
            "unknown_class.yaml",
            ":5: instruments.laser.class: module 'tests.station.fake_instruments' has no attribute",
        ),
        ("missing_field.yaml", ":6: instruments.switch.class: required field is missing"),
        ("bad_yaml.yaml", ":7: YAML syntax error"),
    ],
)
def test_bad_files_exit_2_naming_the_place(name: str, expected: str) -> None:
    result = labctl("check", DATA / name)
    assert result.returncode == 2
    assert f"{DATA / name}{expected}" in result.stderr


def test_check_without_connect_builds_nothing(tmp_path: Path) -> None:
    # An instrument whose connect would hang: plain check must not even build it.
    config = tmp_path / "s.yaml"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [tests]\n"
        "instruments:\n  laser:\n    class: tests.station.fake_instruments:FakeLaser\n"
        "    settings: {fail: hang, not_a_setting: 1}\n"
    )
    result = labctl("check", config, timeout_s=30)
    assert result.returncode == 0, result.stderr


def test_connect_reports_every_failure_and_releases_what_it_opened(
    tmp_path: Path, line_server: tuple[int, list[str]]
) -> None:
    port, received = line_server
    dead_port = _free_port()
    config = tmp_path / "station.yaml"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [tests]\n"
        "instruments:\n"
        f"  alive:\n{_probe(port)}"
        f"  dead:\n{_probe(dead_port)}"
        "  stuck:\n    class: tests.station.fake_instruments:FakeLaser\n"
        "    settings: {fail: hang}\n"
    )
    result = labctl("check", config, "--connect", "--timeout", "1")
    assert result.returncode == 1
    assert "connect failed on 2 instrument(s)" in result.stderr
    assert f"dead [connect]: connection lost: cannot reach 127.0.0.1:{dead_port}" in result.stderr
    assert "stuck [connect]: timeout: no result within 1 s" in result.stderr
    assert "alive" in result.stdout and "replied 'PONG'" in result.stdout
    # The reachable instrument was asked for its health, then put in its safe state.
    assert received == ["PING", "SAFE"]


def test_connect_all_healthy_exits_0(tmp_path: Path, line_server: tuple[int, list[str]]) -> None:
    port, _ = line_server
    config = tmp_path / "station.yaml"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [tests]\n"
        "instruments:\n"
        f"  alive:\n{_probe(port)}"
        "  laser:\n    class: tests.station.fake_instruments:FakeLaser\n"
    )
    result = labctl("check", config, "--connect")
    assert result.returncode == 0, result.stderr
    assert "all 2 instrument(s) connected and healthy" in result.stdout


def test_bad_factory_settings_exit_2_only_with_connect(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [tests]\n"
        "instruments:\n  laser:\n    class: tests.station.fake_instruments:FakeLaser\n"
        "    settings: {powr_mw: 1}\n"
    )
    result = labctl("check", config, "--connect")
    assert result.returncode == 2
    assert f"{config}:5: instruments.laser.settings: unknown setting 'powr_mw'" in result.stderr


def test_failures_are_logged_as_json_lines(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    log_file = tmp_path / "logs" / "labctl.jsonl"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [tests]\n"
        "instruments:\n  laser:\n    class: tests.station.fake_instruments:FakeLaser\n"
        "    settings: {fail: lost}\n"
    )
    result = labctl("--log-json", log_file, "check", config, "--connect")
    assert result.returncode == 1
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    errors = [e for e in entries if e["level"] == "ERROR"]
    assert errors and errors[0]["logger"] == "labctl.station.station"
    assert (
        "connect laser failed: laser [connect]: connection lost: peer closed"
        in errors[0]["message"]
    )
    assert {"ts", "level", "logger", "message"} <= set(errors[0])


def test_config_logging_json_file_is_used_when_no_option_given(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [tests]\n"
        "logging: {json_file: out/log.jsonl}\ninstruments:\n"
        "  laser:\n    class: tests.station.fake_instruments:FakeLaser\n"
        "    settings: {fail: lost}\n"
    )
    result = labctl("check", config, "--connect")
    assert result.returncode == 1
    text = (tmp_path / "out" / "log.jsonl").read_text()
    assert "connect laser failed" in text


def test_nonpositive_timeout_is_bad_input() -> None:
    result = labctl("check", DATA / "good.yaml", "--timeout", "0")
    assert result.returncode == 2 and "--timeout: must be > 0" in result.stderr

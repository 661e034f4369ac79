"""One grammar for every command: durations, ``--set`` into config sections, old spellings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.cli.grammar import duration_of, parse_duration_s
from labctl.cli.main import build_parser
from labctl.cli.overrides import load_with_overrides, parse_overrides
from labctl.interfaces.errors import ConfigError
from labctl.store.events import read_events

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "configs" / "sim.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("2m", 120.0), ("1.5h", 5400.0), ("1h30m", 5400.0),
     ("500ms", 0.5), ("1d", 86400.0), ("1h 30m 10s", 5410.0)],
)  # fmt: skip
def test_durations_read_the_same_everywhere(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "1h30", "5x", "0s", "1m1m", "-3s"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="--timeout"):
        parse_duration_s(text, "--timeout")


def test_old_spellings_are_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    parser, _ = build_parser()
    args = parser.parse_args(["run", "c.yaml", "--duration-s", "30"])
    assert args.duration == "30"
    assert "deprecated" in capsys.readouterr().err
    args = parser.parse_args(["check", "c.yaml", "--timeout-s", "1m"])
    assert args.timeout == "1m"


def test_set_reaches_the_qkd_section_and_stays_plan_args_otherwise() -> None:
    loaded = load_with_overrides(SIM, ["qkd.block_pulses=1e7", "steps=5"])
    assert loaded.config.raw_section("qkd")["block_pulses"] == 10_000_000
    assert loaded.overrides.args == {"steps": 5}
    bare = load_with_overrides(SIM, ["block_pulses=2e6"])
    assert bare.config.raw_section("qkd")["block_pulses"] == 2_000_000
    assert "block_pulses: 2000000" in bare.text


def test_misspelled_keys_get_suggestions() -> None:
    with pytest.raises(ConfigError, match=r"did you mean block_pulses"):
        parse_overrides(["qkd.block_pulsse=1e7"], {"qkd": {}})
    with pytest.raises(ConfigError, match=r"did you mean qkd\.block_pulses"):
        parse_overrides(["block_pulsse=1e7"], {"qkd": {}})


def test_bad_values_fail_like_the_file() -> None:
    with pytest.raises(ConfigError, match=r"qkd\.block_pulses"):
        load_with_overrides(SIM, ["qkd.block_pulses=10"])
    with pytest.raises(ConfigError, match=r"mqtt\.keepalive_s"):
        load_with_overrides(SIM, ["mqtt.keepalive_s=0"])


# Every command with its positional path; the options both limits read are checked below.
COMMANDS = {
    "run": (["run", "c.yaml"], "config", "c.yaml"),
    "resume": (["resume", "runs/x"], "run_dir", "runs/x"),
    "calibrate": (["calibrate", "all", "c.yaml"], "words", ["all", "c.yaml"]),
    "schedule": (["schedule", "c.yaml"], "config", "c.yaml"),
    "node": (["node", "bob", "c.yaml", "--psk-file", "k"], "config", "c.yaml"),
    "watch": (["watch", "--broker", "mqtt://h:1"], "broker", "mqtt://h:1"),
    "check": (["check", "c.yaml"], "config", "c.yaml"),
    "twin": (["twin", "serve", "c.yaml"], "config", "c.yaml"),
    "kme": (["kme", "serve", "c.yaml", "--node", "alice"], "config", "c.yaml"),
}
LIMITS = {
    "run": ("--duration", "--timeout"),
    "resume": ("--duration", "--timeout"),
    "calibrate": ("--duration", "--timeout"),
    "schedule": ("--duration", "--timeout"),
    "node": ("--duration", "--timeout"),
    "watch": ("--duration", "--timeout"),
    "check": ("--timeout",),
    "twin": ("--duration",),
    "kme": ("--duration",),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_takes_its_path_positional_and_limits_as_1h30m(command: str) -> None:
    parser, broken = build_parser()
    assert broken == []
    argv, attribute, expected = COMMANDS[command]
    assert getattr(parser.parse_args(argv), attribute) == expected
    for option in LIMITS[command]:
        args = parser.parse_args([*argv, option, "1h30m"])
        assert duration_of(args, option.removeprefix("--")) == 5400.0, (command, option)
        with pytest.raises(ConfigError, match=f"{option}: cannot read '1h30'"):
            duration_of(parser.parse_args([*argv, option, "1h30"]), option.removeprefix("--"))


def _labctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labctl", *args],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fixture_config(tmp_path: Path) -> Path:
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


@pytest.mark.slow
def test_run_timeout_ends_the_run_and_the_name_keeps_its_case(tmp_path: Path) -> None:
    config = _fixture_config(tmp_path)
    done = _labctl(
        tmp_path, "run", str(config), "--set", "n=100000", "--set", "step_s=0.05",
        "--timeout", "1.5s", "--name", "NightRun",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "timeout (run timeout 1.5 s reached)" in done.stdout, done.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("-NightRun")
    stop = [e for e in read_events(run_dir / "events.jsonl") if e["kind"] == "stop"]
    assert stop[0]["data"]["exit_status"] == "timeout"


@pytest.mark.slow
def test_set_reaches_the_plan_and_misspellings_fail_before_any_run(tmp_path: Path) -> None:
    config = _fixture_config(tmp_path)
    done = _labctl(
        tmp_path, "run", str(config), "--plan", "tests.runner.runner_fixtures:settings_plan",
        "--set", "qkd.block_pulses=2e6", "--set", "steps=3",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    events = read_events(run_dir / "events.jsonl")
    (event,) = [e for e in events if e["stream"] == "primary" and e["kind"] == "event"]
    assert event["data"]["qkd"]["block_pulses"] == 2_000_000
    assert event["data"]["args"] == {"steps": 3}
    psk = tmp_path / "link.psk"
    psk.write_bytes(bytes(range(32)))
    psk.chmod(0o600)
    for command in (["run", str(SIM)], ["node", "bob", str(SIM), "--connect", "h:1"]):
        extra = ["--psk-file", str(psk)] if command[0] == "node" else []
        bad = _labctl(tmp_path, *command, *extra, "--set", "qkd.block_pulsse=1e7")
        assert bad.returncode == 2, bad.stderr
        assert "did you mean block_pulses?" in bad.stderr, bad.stderr
        value = _labctl(tmp_path, *command, *extra, "--set", "qkd.block_pulses=10")
        assert value.returncode == 2 and "qkd.block_pulses" in value.stderr, value.stderr
        assert str(SIM) in value.stderr or "sim.yaml" in value.stderr, value.stderr
    assert len(list((tmp_path / "runs").iterdir())) == 1  # the refused commands ran nothing

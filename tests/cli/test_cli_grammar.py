"""One grammar for every command: durations, ``--set`` into config sections, old spellings."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.cli.grammar import parse_duration_s
from labctl.cli.main import build_parser
from labctl.cli.overrides import load_with_overrides, parse_overrides
from labctl.interfaces.errors import ConfigError

SIM = Path(__file__).resolve().parents[2] / "configs" / "sim.yaml"


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

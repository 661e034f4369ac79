"""The YAML loader keeps the line of every key and item, and errors carry a line."""

from __future__ import annotations

import pytest

from labctl.interfaces import ConfigError
from labctl.station.yaml_lines import parse_yaml

TEXT = """\
# comment on line 1
lab: l
defaults: &base
  kind: tcp
  timeout_s: 1.0
instruments:
  a:
    transport:
      <<: *base
      address: h:1
  b: {class: "m:B", settings: {x: [1, 2,
      3]}}
list:
  - first
  - second: 2
"""


def test_every_key_and_item_has_its_line() -> None:
    data, lines = parse_yaml(TEXT, "f.yaml")
    assert data["instruments"]["a"]["transport"] == {
        "kind": "tcp",
        "timeout_s": 1.0,
        "address": "h:1",
    }
    assert lines.lines[("lab",)] == 2
    assert lines.lines[("instruments", "a", "transport", "address")] == 10
    assert lines.lines[("instruments", "b", "settings", "x")] == 11
    assert lines.lines[("instruments", "b", "settings", "x", 2)] == 12
    assert lines.lines[("list", 1, "second")] == 15
    # Keys merged in from an anchor point at the anchor, where the user wrote them.
    assert lines.lines[("instruments", "a", "transport", "kind")] == 4


def test_missing_paths_fall_back_to_the_nearest_ancestor() -> None:
    _, lines = parse_yaml(TEXT, "f.yaml")
    assert lines.line_of(("instruments", "a", "class")) == 7
    assert lines.line_of(("nowhere", "deep")) == 2  # the document itself starts at line 2
    assert lines.has(("lab",)) and not lines.has(("instruments", "a", "class"))


def test_non_string_keys_become_strings() -> None:
    data, lines = parse_yaml("1: one\n2.5: half\n")
    assert lines.lines[("1",)] == 1 and lines.lines[("2.5",)] == 2
    assert data == {1: "one", 2.5: "half"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: 1\nb: [1, 2\nc: 3\n", 3),
        ("a: 1\n  b: 2\n", 2),
        ("a: 'open\n", 2),
        ("a: *nowhere\n", 1),
        ("a: 1\n---\nb: 2\n", 2),
    ],
)
def test_syntax_errors_give_file_and_line(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "s.yaml")
    assert info.value.file == "s.yaml"
    assert info.value.line == line
    assert str(info.value).startswith(f"s.yaml:{line}: YAML syntax error")


def test_duplicate_keys_are_rejected_at_any_depth() -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml("a:\n  b: 1\n  c: 2\n  b: 3\n", "d.yaml")
    assert (info.value.line, info.value.field) == (4, "a.b")


def test_exponent_floats_are_numbers_as_in_yaml_1_2() -> None:
    data, _ = parse_yaml("rate_hz: 1e9\nmu: 1.0e-1\nloss_db: -2.5E3\nv: .5\nversion: 1.2.3\nn: 7\n")
    assert data == {
        "rate_hz": 1e9,
        "mu": 0.1,
        "loss_db": -2500.0,
        "v": 0.5,
        "version": "1.2.3",
        "n": 7,
    }
    assert isinstance(data["n"], int)

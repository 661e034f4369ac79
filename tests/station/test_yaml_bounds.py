"""Station files from elsewhere: bounded to read, and classes only from allowed packages."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import pytest

from labctl.interfaces import ConfigError
from labctl.interfaces.build import Source
from labctl.station import ConfigErrorGroup, import_classes, load_config, yaml_lines
from labctl.station.classpath import import_class, is_allowed
from labctl.station.yaml_lines import MAX_DEPTH, MAX_ITEMS, MAX_NODES, parse_yaml, read_yaml


def _bomb(levels: int = 10, fan: int = 9) -> str:
    """The classic alias bomb: fan**levels values from ~levels lines."""
    lines = ["lab: l", "node: n", f"a0: &a0 [{', '.join(['lol'] * fan)}]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * fan)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_fast_and_small(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")  # 9**10 ~ 3.5e9 values expanded
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    elapsed_s = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kb) / 1024
    assert elapsed_s < 1.0 and grown_mb < 100
    assert str(info.value).startswith(f"{path}:")
    assert f"more than {MAX_NODES} values once aliases are expanded" in str(info.value)


def test_the_shipped_item_bound_is_generous() -> None:
    assert MAX_ITEMS >= 10_000


def test_a_modest_alias_reuse_is_still_fine() -> None:
    data, _ = parse_yaml(_bomb(levels=3, fan=4), "ok.yaml")
    assert len(data["a2"]) == 4 and data["a2"][0][0] == ["lol"] * 4


@pytest.mark.parametrize(
    ("text", "error", "line"),
    [
        ("lab: l\nx: &a [1, *a]\n", "recursive alias", 2),
        ("lab: l\nx: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n", "nesting", 2),
        ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nesting", 1),
        ("lab: l\nbig: [" + ", ".join(["0"] * 51) + "]\n", "list of more than 50", 2),
        ("lab: l\nwide:\n" + "".join(f"  k{i}: 0\n" for i in range(51)), "mapping of more", 3),
    ],
)
def test_unbounded_shapes_are_refused_with_file_and_line(
    text: str, error: str, line: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yaml_lines, "MAX_ITEMS", 50)  # the shipped bound, 10 000, is slow to fill
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "s.yaml")
    assert error in str(info.value)
    assert info.value.file == "s.yaml" and info.value.line == line


def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("lab: l\n# " + "x" * (8 * 1024 * 1024) + "\n")
    with pytest.raises(ConfigError, match="file too large") as info:
        read_yaml(path)
    assert info.value.file == str(path)


# ---------------------------------------------------------------- allowed packages


def test_class_paths_outside_the_allowed_packages_are_refused_before_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module that would leave a mark if it were ever imported.
    module = tmp_path / "sideeffect_mod.py"
    marker = tmp_path / "imported"
    module.write_text(f"open({str(marker)!r}, 'w').close()\nclass C: pass\n", encoding="utf-8")
    config = tmp_path / "s.yaml"
    config.write_text(
        "lab: l\nnode: n\ninstruments:\n  evil:\n    class: sideeffect_mod:C\n"
        "  shell:\n    class: os:system\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(tmp_path)  # where a lab's own module would be installed
    with pytest.raises(ConfigErrorGroup) as info:
        import_classes(load_config(config))
    text = str(info.value)
    assert f"{config}:5: instruments.evil.class: module 'sideeffect_mod' is outside" in text
    assert f"{config}:7: instruments.shell.class: module 'os' is outside" in text
    assert "allowed_packages: [sideeffect_mod]" in text
    assert not marker.exists() and "sideeffect_mod" not in sys.modules


def test_a_lab_package_listed_in_the_file_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "lasers.py").write_text(
        "class L:\n    @classmethod\n"
        "    def from_config(cls, spec, context):\n        return cls()\n",
        encoding="utf-8",
    )
    config = tmp_path / "s.yaml"
    config.write_text(
        "lab: l\nnode: n\nallowed_packages: [mylab]\ninstruments:\n"
        "  laser:\n    class: mylab.lasers:L\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(tmp_path)
    classes = import_classes(load_config(config))
    assert classes["laser"].__name__ == "L"


def test_prefix_matching_is_by_whole_package_names() -> None:
    assert is_allowed("drivers", ()) and is_allowed("drivers.idq.id1000", ())
    assert is_allowed("sims.twins", ()) and is_allowed("mylab.x", ("mylab",))
    assert not is_allowed("driversevil", ()) and not is_allowed("mylabs.x", ("mylab",))
    with pytest.raises(ConfigError, match="outside the allowed packages"):
        import_class("subprocess:Popen", field="f", source=Source(file="s.yaml", line=3))


def test_allowed_packages_must_be_package_names(tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text("lab: l\nnode: n\nallowed_packages: ['../evil']\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert f"{config}:3" in str(info.value) and "allowed_packages" in str(info.value)

"""``--set KEY=VALUE``: change the station file's sections (what plans read) or plan arguments.

``qkd.block_pulses=1e7`` changes the ``qkd`` section; a bare ``block_pulses=1e7`` is resolved
against the sections that know that key (the keys written in the file and, for sections
with a settings class installed under the ``labctl.settings`` entry points, every field of
it). A dotted key whose first part
is a section, or a bare key close to a section key, must name a known key: a misspelling
is an error with "did you mean" suggestions, never a silent no-op. Other bare keys stay plan
arguments (``run.args``), as before. The changed file is validated like the file itself.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from labctl import extensions
from labctl.interfaces.errors import ConfigError
from labctl.station.loader import validate_config
from labctl.station.model import StationConfig
from labctl.station.yaml_lines import read_yaml

OPEN_SECTIONS = ("qkd", "calibration", "sync", "alice", "runner", "twin_serve", "kme")
"""Free-form sections: their keys are those in the file (plus their settings class's fields)."""


@dataclass
class Overrides:
    """What a list of ``--set`` items asks for."""

    config: dict[str, Any] = field(default_factory=dict)
    """Nested changes to the station file's sections."""
    args: dict[str, Any] = field(default_factory=dict)
    """Plan arguments (``run.args``)."""
    applied: list[str] = field(default_factory=list)
    """``section.key=value`` of every config change, for the run log."""


def parse_value(raw: str) -> Any:
    """A YAML value, with ``1e7``-style numbers read as numbers (YAML 1.1 reads them as text)."""
    text = raw.strip()
    if not text:
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{raw!r}: value is not valid YAML ({exc})", field="--set") from exc
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() and "e" in value.lower() else number
    return value


def settings_class(section: str) -> type | None:
    """The settings dataclass an installed package declares for ``section`` (``labctl.settings``
    entry points), or None: the section's keys are then those written in the file."""
    if section not in extensions.declared(extensions.SETTINGS):
        return None
    cls = extensions.load(extensions.SETTINGS, section)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise ConfigError(
            f"labctl.settings entry point {section!r} is not a settings dataclass",
            field=extensions.SETTINGS,
        )
    return cls


def _settings_fields(section: str) -> set[str]:
    cls = settings_class(section)
    if cls is None:
        return set()
    return {f.name for f in dataclasses.fields(cls)}


def known_keys(data: Mapping[str, Any]) -> dict[str, set[str]]:
    """Section -> the keys ``--set`` may change in it."""
    known: dict[str, set[str]] = {}
    for name, info in StationConfig.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            known[name] = set(annotation.model_fields)
    for name in OPEN_SECTIONS:
        written = data.get(name)
        keys = set(written) if isinstance(written, Mapping) else set()
        known[name] = keys | _settings_fields(name)
    return known


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=3, cutoff=0.7)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _closed(section: str, known: Mapping[str, set[str]]) -> bool:
    """True when every key of the section is known (a model or a settings class lists them)."""
    return section not in OPEN_SECTIONS or bool(_settings_fields(section))


def _resolve(key: str, known: Mapping[str, set[str]]) -> list[str] | None:
    """The path of ``key`` in the config, or None for a plan argument."""
    parts = key.split(".")
    if parts[0] in known:
        section, allowed = parts[0], known[parts[0]]
        if len(parts) < 2:
            raise ConfigError(f"{key!r}: name a key of the section ({section}.KEY)", field="--set")
        leaf = parts[1]
        hint = _suggest(leaf, allowed)
        if leaf not in allowed and (_closed(section, known) or hint):
            raise ConfigError(f"{key!r}: unknown key {leaf!r} in {section}{hint}", field="--set")
        return parts
    if len(parts) > 1:
        return None  # a nested plan argument
    owners = sorted(s for s in OPEN_SECTIONS if key in known[s])
    if len(owners) == 1:
        return [owners[0], key]
    if len(owners) > 1:
        choices = " or ".join(f"{s}.{key}" for s in owners)
        raise ConfigError(f"{key!r} is in several sections; say which: {choices}", field="--set")
    names = {k: s for s in OPEN_SECTIONS for k in known[s]}
    close = difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.8)
    if close:
        spelled = " or ".join(f"{names[c]}.{c}" for c in close)
        raise ConfigError(
            f"{key!r} is neither a config key nor a known plan argument; did you mean {spelled}?",
            field="--set",
        )
    return None


def _check_sections(changed: Mapping[str, Any], sections: Iterable[str], file: str | None) -> None:
    """Validate changed sections with their settings class (its file-style errors)."""
    for section in sections:
        cls = settings_class(section)
        if cls is None:
            continue
        check = getattr(cls, "from_section", None)
        if callable(check):
            check(changed.get(section), file=file)


def parse_overrides(items: Iterable[str], data: Mapping[str, Any]) -> Overrides:
    """Split ``KEY=VALUE`` items into config changes and plan arguments."""
    known = known_keys(data)
    out = Overrides()
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", field="--set")
        value = parse_value(raw)
        path = _resolve(key, known)
        target = out.args if path is None else out.config
        parts = key.split(".") if path is None else path
        node = target
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{item!r}: {part!r} is already a value", field="--set")
            node = child
        node[parts[-1]] = value
        if path is not None:
            out.applied.append(f"{'.'.join(path)}={value!r}")
    return out


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


@dataclass
class LoadedConfig:
    """A station file with ``--set`` applied."""

    config: StationConfig
    text: str
    """The file's text, or the changed file as YAML when ``--set`` changed a section."""
    overrides: Overrides


def load_with_overrides(path: str | Path, items: Iterable[str]) -> LoadedConfig:
    """Read, apply ``--set`` and validate (errors name ``--set`` or the file and line)."""
    data, lines = read_yaml(path)
    original = Path(path).read_text(encoding="utf-8")
    if not isinstance(data, dict):
        return LoadedConfig(validate_config(data, lines), original, Overrides())
    overrides = parse_overrides(items, data)
    if not overrides.config:
        return LoadedConfig(validate_config(data, lines), original, overrides)
    changed = copy.deepcopy(data)
    _merge(changed, overrides.config)
    config = validate_config(changed, lines)
    _check_sections(changed, overrides.config, lines.file)
    text = yaml.safe_dump(changed, sort_keys=False)
    return LoadedConfig(config, text, overrides)

"""Load a YAML station file and remember the line of every key, so errors can point at it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labctl.interfaces.errors import ConfigError

KeyPath = tuple[str | int, ...]

_FLOAT_TAG = "tag:yaml.org,2002:float"
# YAML 1.2 floats: PyYAML (YAML 1.1) reads 1e9 and 1.0e9 as *strings*; physicists write them.
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads exponent floats without a dot or sign (1e9, 1.0e9)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))


@dataclass(slots=True)
class LineMap:
    """Line numbers (1-based) of every mapping key and sequence item in one YAML document."""

    file: str | None
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, path: KeyPath) -> int | None:
        """Line of ``path``, or of its nearest ancestor that is in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None

    def has(self, path: KeyPath) -> bool:
        """True when ``path`` itself (not only an ancestor) appears in the file."""
        return tuple(path) in self.lines


def _key_of(loader: _Loader, node: yaml.Node) -> str | int:
    """A mapping key as used in validation paths (strings stay, anything else becomes str)."""
    value = loader.construct_object(node, deep=True)
    return value if isinstance(value, str) else str(value)


def _walk(loader: _Loader, node: yaml.Node, path: KeyPath, out: LineMap) -> None:
    """Record the line of every key/item under ``node`` and reject duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str | int, int] = {}
        for key_node, value_node in node.value:
            key = _key_of(loader, key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"duplicate key '{key}' (first given at line {seen[key]})",
                    file=out.file,
                    line=line,
                    field=".".join(str(p) for p in (*path, key)),
                )
            seen[key] = line
            out.lines[(*path, key)] = line
            _walk(loader, value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            out.lines[(*path, index)] = item.start_mark.line + 1
            _walk(loader, item, (*path, index), out)


def parse_yaml(text: str, file: str | None = None) -> tuple[Any, LineMap]:
    """Parse one YAML document; return the plain data and the line of every key in it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, LineMap(file)
        lines = LineMap(file, {(): node.start_mark.line + 1})
        # Build the data first: it flattens merge keys (<<) in place, so the walk sees them.
        data = loader.construct_document(node)
        _walk(loader, node, (), lines)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        raise ConfigError(
            f"YAML syntax error: {problem}",
            file=file,
            line=None if mark is None else mark.line + 1,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", file=file) from None
    finally:
        loader.dispose()
    return data, lines


def read_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """Read and parse a YAML file; ConfigError names the file when it cannot be read."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", file=file) from None
    return parse_yaml(text, file)

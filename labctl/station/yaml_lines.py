"""Load a YAML station file and remember the line of every key, so errors can point at it.

Station files may come from elsewhere, so reading one is bounded before anything is built:
at most ``MAX_DOCUMENT_BYTES`` of text, ``MAX_NODES`` values *after* alias expansion (a
"billion laughs" alias bomb is refused from its node graph, which stays small, before it
is expanded), ``MAX_ITEMS`` entries in one list or mapping, ``MAX_DEPTH`` levels of nesting
(checked on the parser's events before the recursive composer runs), and no recursive
alias. Each refusal is a ConfigError with file and line.
"""

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

MAX_DOCUMENT_BYTES = 256 * 1024
"""Largest station file read (a shipped one is ~5 kB)."""
MAX_NODES = 100_000
"""Most values (scalars, lists, mappings) in one document, counted with aliases expanded."""
MAX_ITEMS = 10_000
"""Most items in one list or entries in one mapping."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings, aliases followed."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_nesting(text: str, file: str | None) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the parser's events, before composing.

    The composer recurses once per level (a RecursionError, after seconds, at ~1000); the
    event parser does not, so this pass is cheap whatever the depth.
    """
    depth = 0
    loader = _Loader(text)
    try:
        while loader.check_event():
            event = loader.get_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = None if event.start_mark is None else event.start_mark.line + 1
                    raise ConfigError(
                        f"nesting deeper than {MAX_DEPTH} levels", file=file, line=line
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def check_bounds(root: yaml.Node, file: str | None) -> None:
    """Refuse a composed document that is too large, too deep or recursive once expanded.

    Works on the node graph, where an alias is a second reference to the same node: the
    expanded size is summed per distinct node (memoised), so a bomb costs its graph, not
    its expansion. Iterative, so no depth of nesting can exhaust the stack.
    """

    def fail(message: str, node: yaml.Node) -> ConfigError:
        return ConfigError(message, file=file, line=node.start_mark.line + 1)

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise fail(
                    f"document too large: more than {MAX_NODES} values once aliases are "
                    "expanded (an alias bomb?)",
                    node,
                )
            if depth[key] > MAX_DEPTH:
                raise fail(f"nesting deeper than {MAX_DEPTH} levels", node)
            continue
        if key in size:
            continue
        if key in on_path:
            raise fail("recursive alias: a value contains itself", node)
        kids = _children(node)
        if len(node.value if isinstance(node, yaml.MappingNode) else kids) > MAX_ITEMS:
            kind = "mapping" if isinstance(node, yaml.MappingNode) else "list"
            raise fail(f"{kind} of more than {MAX_ITEMS} entries", node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


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
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"file too large: {len(text)} characters, at most {MAX_DOCUMENT_BYTES}", file=file
        )
    loader = _Loader(text)
    try:
        check_nesting(text, file)
        node = loader.get_single_node()
        if node is None:
            return None, LineMap(file)
        check_bounds(node, file)
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
    except RecursionError:
        line = loader.get_mark().line + 1 if loader.get_mark() is not None else None
        raise ConfigError(f"nesting deeper than {MAX_DEPTH} levels", file=file, line=line) from None
    finally:
        loader.dispose()
    return data, lines


def read_yaml(path: str | Path) -> tuple[Any, LineMap]:
    """Read and parse a YAML file; ConfigError names the file when it cannot be read."""
    file = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"file too large: over {MAX_DOCUMENT_BYTES} bytes", file=file)
        text = raw.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", file=file) from None
    return parse_yaml(text, file)

"""Turning a nested settings mapping into typed, frozen dataclasses with clear errors.

Each settings section is a frozen dataclass whose fields carry their unit in the name;
``parse_section`` checks keys (unknown key -> ConfigError naming it and the closest known
key), converts scalars and fixed-length tuples, and runs the bounds the field metadata asks
for. Errors name the dotted path, e.g. ``world.settings.fiber.length_km``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from labctl.interfaces import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Where:
    """Where a settings mapping came from: dotted path prefix plus file and line."""

    path: str = "world.settings"
    file: str | None = None
    line: int | None = None

    def child(self, key: str) -> Where:
        """The location of ``key`` below this one."""
        return Where(f"{self.path}.{key}", self.file, self.line)

    def error(self, message: str, suggestion: str | None = None) -> ConfigError:
        """A ConfigError pointing here."""
        return ConfigError(
            message, file=self.file, line=self.line, field=self.path, suggestion=suggestion
        )


def bounds(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    length: int | None = None,
) -> dict[str, Any]:
    """Field metadata: numeric limits (closed unless *_open) and a fixed tuple length."""
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "length": length}


def check_keys(raw: Mapping[str, Any], known: list[str], where: Where) -> None:
    """Reject keys that are not in ``known`` with the closest suggestion."""
    for key in raw:
        if not isinstance(key, str):
            raise where.error(f"keys must be strings, got {key!r}")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            raise where.child(key).error(
                f"unknown setting (known: {', '.join(sorted(known))})",
                suggestion=close[0] if close else None,
            )


def as_mapping(raw: Any, where: Where) -> Mapping[str, Any]:
    """``raw`` as a mapping (None = empty) or a ConfigError."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.error(f"expected a mapping, got {type(raw).__name__}")
    return raw


def _number(value: Any, kind: type, where: Where) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(f"expected a number, got {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise where.error(f"expected a whole number, got {value!r}")
        return int(value)
    if not math.isfinite(float(value)):
        raise where.error(f"expected a finite number, got {value!r}")
    return float(value)


def _check_bounds(value: float, meta: Mapping[str, Any], where: Where) -> None:
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value <= lo if meta.get("lo_open") else value < lo):
        op = ">" if meta.get("lo_open") else ">="
        raise where.error(f"must be {op} {lo}, got {value}")
    if hi is not None and (value >= hi if meta.get("hi_open") else value > hi):
        op = "<" if meta.get("hi_open") else "<="
        raise where.error(f"must be {op} {hi}, got {value}")


def convert(value: Any, hint: Any, meta: Mapping[str, Any], where: Where) -> Any:
    """Convert one value to the annotated type (float, int, bool, str, tuple, optional)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = next(a for a in args if a is not type(None))
        return convert(value, inner, meta, where)
    if hint is bool:
        if not isinstance(value, bool):
            raise where.error(f"expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise where.error(f"expected a string, got {value!r}")
        return value
    if hint in (int, float):
        number = _number(value, hint, where)
        _check_bounds(number, meta, where)
        return number
    if origin is tuple:
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise where.error(f"expected a list, got {value!r}")
        length = meta.get("length")
        if length is not None and len(value) != length:
            raise where.error(f"expected {length} values, got {len(value)}")
        return tuple(
            convert(item, args[0], meta, where.child(str(i))) for i, item in enumerate(value)
        )
    raise TypeError(f"settings type {hint!r} not supported at {where.path}")  # programming error


def parse_section(cls: type[T], raw: Any, where: Where, **extra: Any) -> T:
    """Build the frozen dataclass ``cls`` from ``raw``; ``extra`` fills fields parsed elsewhere."""
    mapping = as_mapping(raw, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = [name for name in fields if name not in extra]
    check_keys(mapping, known, where)
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = dict(extra)
    for key, value in mapping.items():
        values[key] = convert(value, hints[key], fields[key].metadata, where.child(key))
    return cls(**values)

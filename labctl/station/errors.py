"""Turn pydantic validation errors into ConfigErrors that name file, line, field and a fix."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from labctl.interfaces.errors import ConfigError
from labctl.station.yaml_lines import KeyPath, LineMap

# Values of these fields never appear in an error message (they are credentials).
_SECRET_FIELDS = frozenset({"password", "token"})


class ConfigErrorGroup(ConfigError):
    """Several problems in one station file, reported together (the first sets file/line)."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrorGroup needs at least one error")
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(
            first.message,
            file=first.file,
            line=first.line,
            field=first.field,
            suggestion=first.suggestion,
        )

    def _render(self) -> str:
        if len(self.errors) == 1:
            return str(self.errors[0])
        lines = [f"{len(self.errors)} problems:"]
        lines += [f"  {error}" for error in self.errors]
        return "\n".join(lines)


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional/Union/Annotated (dict and model types kept)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in typing.get_args(annotation):
            found += _unwrap(arg)
        return found
    return [annotation]


def _field_names(model: type[BaseModel]) -> list[str]:
    """The names a user writes in YAML for ``model`` (aliases where defined)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def _field_annotation(model: type[BaseModel], key: str | int) -> Any:
    """The annotation of the field a YAML key selects (by alias or name), else None."""
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def model_at(root: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    """The config model that validates the mapping at ``path`` (None inside free-form dicts)."""
    current: Any = root
    index = 0
    while index < len(path):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        annotation = _field_annotation(current, path[index])
        index += 1
        current = None
        for candidate in _unwrap(annotation):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                current = candidate
            elif typing.get_origin(candidate) is dict:
                value_types = [
                    t
                    for t in _unwrap(typing.get_args(candidate)[1])
                    if isinstance(t, type) and issubclass(t, BaseModel)
                ]
                if value_types and index < len(path):
                    index += 1  # the next path element is the dict key (an instrument name)
                    current = value_types[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _dotted(path: KeyPath) -> str:
    """``instruments.laser.transport.timeout_s`` style field name."""
    return ".".join(str(part) for part in path)


def _describe_input(field: str | int | None, value: Any) -> str:
    """A short ', got ...' suffix showing what the file said (never for secrets)."""
    if field in _SECRET_FIELDS or isinstance(value, dict | list):
        return ""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f", got {text} ({type(value).__name__})"


def _one_error(root: type[BaseModel], detail: ErrorDetails, lines: LineMap) -> ConfigError:
    """One pydantic error detail as a ConfigError with line and suggestion."""
    # Pydantic appends validator names to locations of model-level checks; keep only keys.
    path: KeyPath = tuple(
        part for part in detail["loc"] if isinstance(part, int) or "[" not in part
    )
    kind = detail["type"]
    last = path[-1] if path else None
    suggestion = None
    if kind == "extra_forbidden" and last is not None:
        model = model_at(root, path[:-1])
        message = "unknown field"
        if model is not None:
            valid = _field_names(model)
            close = difflib.get_close_matches(str(last), valid, n=1, cutoff=0.6)
            suggestion = close[0] if close else None
            if suggestion is None:
                message += f" (valid fields: {', '.join(valid)})"
    elif kind == "missing":
        message = "required field is missing"
    else:
        message = detail["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if kind not in ("value_error", "assertion_error"):
            message += _describe_input(last, detail.get("input"))
    if kind == "string_pattern_mismatch":
        got = _describe_input(last, detail.get("input"))
        if last in ("class", "class_path"):
            message = "class path must look like 'package.module:Class'" + got
        elif path in (("lab",), ("node",)) or (len(path) == 2 and path[0] == "instruments"):
            message = "ids use only a-z, 0-9 and '-' (they appear in MQTT topics)" + got
    return ConfigError(
        message,
        file=lines.file,
        line=lines.line_of(path),
        field=_dotted(path) or "<top level>",
        suggestion=suggestion,
    )


def config_error_from(
    root: type[BaseModel], exc: ValidationError, lines: LineMap
) -> ConfigErrorGroup:
    """All problems of one validation as a single ConfigErrorGroup, in file order."""
    found = [_one_error(root, detail, lines) for detail in exc.errors()]
    found.sort(key=lambda e: e.line or 0)
    return ConfigErrorGroup(found)

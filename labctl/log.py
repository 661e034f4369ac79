"""Logging for labctl: readable lines on the terminal, JSON lines in a file, secrets masked.

Key material must never reach a log. The key store (and anything else holding a secret)
registers the secret with ``register_secret``; every handler installed here masks every
registered value, in its text, hex and base64 forms, before a line is written.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.logging import RichHandler

MASK = "[redacted]"
MIN_SECRET_CHARS = 8
"""Shorter values would mask ordinary text (a 2-byte key would hide every '00' in a log)."""

# Attributes every LogRecord has; anything else was passed with ``extra=`` and goes to JSON.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_MARK = "_labctl_handler"  # tags handlers installed by setup_logging, so a rerun replaces them


class SecretRegistry:
    """The set of values (str or bytes) no log line may contain; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str | bytes, int] = {}
        self._pattern: re.Pattern[str] | None = None

    def register(self, value: str | bytes) -> None:
        """Mask ``value`` (and its hex/base64 forms for bytes) in every later log line."""
        if not isinstance(value, str | bytes):
            raise TypeError(f"only str or bytes secrets can be registered, got {type(value)}")
        chars = len(value) * (2 if isinstance(value, bytes) else 1)
        if chars < MIN_SECRET_CHARS:
            raise ValueError(
                f"secret too short to mask safely ({len(value)} "
                f"{'bytes' if isinstance(value, bytes) else 'chars'}; "
                f"need >= {MIN_SECRET_CHARS} chars or {MIN_SECRET_CHARS // 2} bytes)"
            )
        with self._lock:
            self._values[value] = self._values.get(value, 0) + 1
            self._pattern = None

    def unregister(self, value: str | bytes) -> None:
        """Stop masking ``value`` once every registration of it is undone."""
        with self._lock:
            count = self._values.get(value, 0)
            if count <= 1:
                self._values.pop(value, None)
            else:
                self._values[value] = count - 1
            self._pattern = None

    def clear(self) -> None:
        """Forget every registered secret."""
        with self._lock:
            self._values.clear()
            self._pattern = None

    def __len__(self) -> int:
        return len(self._values)

    def _compiled(self) -> re.Pattern[str] | None:
        """One alternation of every form of every secret, longest first."""
        with self._lock:
            if self._pattern is None and self._values:
                forms: set[str] = set()
                for value in self._values:
                    forms.update(_text_forms(value))
                ordered = sorted(forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(f) for f in ordered))
            return self._pattern

    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``[redacted]``."""
        pattern = self._compiled()
        return text if pattern is None else pattern.sub(MASK, text)


def _text_forms(value: str | bytes) -> set[str]:
    """The ways a secret can show up in text: itself, hex (either case), base64, repr."""
    if isinstance(value, str):
        return {value}
    forms = {value.hex(), value.hex().upper(), base64.b64encode(value).decode("ascii")}
    forms.add(repr(value)[2:-1])  # how f"{key!r}" or str(bytes) would print it
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


secrets = SecretRegistry()
"""The process-wide registry every labctl handler consults."""


def register_secret(value: str | bytes) -> None:
    """Mask ``value`` in every log line from now on (see SecretRegistry.register)."""
    secrets.register(value)


def unregister_secret(value: str | bytes) -> None:
    """Stop masking ``value`` (see SecretRegistry.unregister)."""
    secrets.unregister(value)


def redact(text: str) -> str:
    """``text`` with every registered secret masked."""
    return secrets.redact(text)


class RedactingFilter(logging.Filter):
    """Masks registered secrets in a record's message and traceback before any output."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops a record."""
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, exc, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (secrets masked)."""
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


def _level(level: str | int) -> int:
    """A level name or number as a number; ValueError names the bad level."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level '{level}' (use DEBUG, INFO, WARNING or ERROR)")
    return number


def _install(handler: logging.Handler, level: int) -> None:
    """Attach ``handler`` to the root logger with masking, tagged as ours."""
    handler.setLevel(level)
    handler.addFilter(RedactingFilter())
    setattr(handler, _MARK, True)
    logging.getLogger().addHandler(handler)


def add_json_file(path: str | Path, level: str | int = "INFO") -> Path:
    """Also write JSON lines to ``path`` (created with its folder); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(target, encoding="utf-8")
    handler.setFormatter(JsonLinesFormatter())
    number = _level(level)
    _install(handler, number)
    root = logging.getLogger()
    root.setLevel(min(root.level or logging.WARNING, number))
    return target


def setup_logging(
    level: str | int = "INFO",
    json_file: str | Path | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Human-readable logs on stderr (or ``stream``), plus JSON lines when ``json_file`` is set.

    Calling it again replaces the handlers it installed before (not anybody else's).
    """
    number = _level(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()
    console = Console(file=stream, stderr=stream is None, soft_wrap=True)
    _install(RichHandler(console=console, show_path=False, markup=False), number)
    root.setLevel(number)
    if json_file is not None:
        add_json_file(json_file, number)


def set_level(level: str | int) -> None:
    """Change the level of the root logger and of every handler setup_logging installed."""
    number = _level(level)
    root = logging.getLogger()
    root.setLevel(number)
    for handler in root.handlers:
        if getattr(handler, _MARK, False):
            handler.setLevel(number)

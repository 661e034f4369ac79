"""Logging for labctl: readable lines on the terminal, JSON lines in a file, secrets masked.

Key material must never reach a log. The key store (and anything else holding a secret)
registers the secret with ``register_secret`` (the process-wide registry of
:mod:`labctl.secrets`, which the MQTT publisher checks too); every handler installed here
masks every registered value, in its text, hex and base64 forms, before a line is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.logging import RichHandler

from labctl.secrets import SecretRegistry, default_registry

# Attributes every LogRecord has; anything else was passed with ``extra=`` and goes to JSON.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_MARK = "_labctl_handler"  # tags handlers installed by setup_logging, so a rerun replaces them

secrets: SecretRegistry = default_registry()
"""The process-wide registry every labctl handler consults (:mod:`labctl.secrets`)."""


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


TERMINAL_QUIET = ("qcodes",)
"""Libraries whose INFO lines ("Created run with guid ...") stay off every labctl terminal
(run, calibrate, node...); warnings still show, and JSON log files keep everything."""


class QuietBelowWarning(logging.Filter):
    """Drops records under WARNING from the named loggers (and their children)."""

    def __init__(self, prefixes: tuple[str, ...] = TERMINAL_QUIET) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep warnings and everything from other loggers."""
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == p or record.name.startswith(p + ".") for p in self.prefixes)


TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""Every terminal log line starts with its local time in this format, ``[...]``."""


class PlainLineHandler(logging.StreamHandler[TextIO]):
    """One unwrapped line per record, ``[time] LEVEL    message``, for output that is no
    terminal (a pipe, a service's log, a test): rich would wrap it at 80 columns and pad it.

    With no fixed stream it writes to the ``sys.stderr`` of the moment (a redirect made
    after setup, as rich's live display or pytest do, is honoured).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream
        self.setFormatter(
            logging.Formatter("[%(asctime)s] %(levelname)-8s %(message)s", datefmt=TIME_FORMAT)
        )

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record to the fixed stream, else to the current ``sys.stderr``."""
        self.stream = self._fixed or sys.stderr
        super().emit(record)


_terminal_console: Console | None = None


def terminal_console() -> Console | None:
    """The rich Console the terminal log handler writes to (None when logs are plain lines).

    Progress bars must draw on this same Console: rich keeps log lines above its live bars
    only for output that goes through the Console that draws them (a second Console on the
    same terminal writes straight past the bars, onto their line).
    """
    return _terminal_console


def terminal_handler(stream: TextIO | None = None) -> logging.Handler:
    """The terminal's handler: rich on a terminal or in Jupyter, plain lines otherwise.

    Both print ``[YYYY-MM-DD HH:MM:SS] LEVEL message``, every line with its time, so the
    logs of two processes (Alice's and Bob's nodes) read and sort the same way.
    """
    global _terminal_console
    console = Console(file=stream, stderr=stream is None, soft_wrap=True)
    if not (console.is_terminal or console.is_jupyter):
        _terminal_console = None
        return PlainLineHandler(stream)
    _terminal_console = console if stream is None else None
    return RichHandler(
        console=console,
        show_path=False,
        markup=False,
        log_time_format=f"[{TIME_FORMAT}]",
        omit_repeated_times=False,
    )


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
    terminal = terminal_handler(stream)
    terminal.addFilter(QuietBelowWarning())
    _install(terminal, number)
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

"""The grammar every ``labctl`` command shares: durations, time limits and the config path.

``--duration`` and ``--timeout`` read ``90``, ``90s``, ``2m``, ``1.5h``, ``1h30m`` or
``500ms`` with one parser (a bare number is seconds); the older ``--duration-s`` and
``--timeout-s`` spellings stay as aliases. Commands that run a plan (run, resume,
calibrate, schedule, node bob) read ``--duration`` as the run-clock time of the run and
``--timeout`` as its wall-clock limit (``add_run_limits``); commands that wait on a peer
or a broker read ``--timeout`` as that wait. This module adds no command of its own.
"""

from __future__ import annotations

import argparse
import re
import sys
from argparse import SUPPRESS

from labctl.interfaces.errors import ConfigError

_UNIT_S = {
    "": 1.0,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|sec|min|s|m|h|d)?", re.IGNORECASE)


def parse_duration_s(text: str, where: str = "--duration") -> float:
    """``"90"``, ``"90s"``, ``"2m"``, ``"1.5h"``, ``"1h30m"`` -> seconds (ConfigError if not)."""
    body = str(text).strip()
    total = 0.0
    pos = 0
    units: list[str] = []
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            break
        unit = (match.group(2) or "").lower()
        if units and unit == "":
            break  # "1h30" is ambiguous: say the unit
        units.append(unit)
        total += float(match.group(1)) * _UNIT_S[unit]
        pos = match.end()
        while pos < len(body) and body[pos] == " ":
            pos += 1
    if not units or pos != len(body) or len(set(units)) != len(units):
        raise ConfigError(
            f"cannot read {text!r} as a duration (e.g. 90s, 2m, 1.5h, 1h30m)", field=where
        )
    if total <= 0:
        raise ConfigError(f"must be > 0, got {text!r}", field=where)
    return total


class _Deprecated(argparse.Action):
    """Stores like the new option and prints a one-line deprecation note."""

    def __init__(self, *args: object, new: str = "", **kwargs: object) -> None:
        self.new = new
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"labctl: note: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_duration(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--duration D`` (and the old ``--duration-s``) into ``args.duration`` (text)."""
    parser.add_argument("--duration", metavar="D", help=f"{help_text} (90s, 2m, 1h30m)")
    parser.add_argument(
        "--duration-s", dest="duration", action=_Deprecated, new="--duration", help=SUPPRESS
    )


def add_timeout(parser: argparse.ArgumentParser, help_text: str, default: str | None) -> None:
    """``--timeout T`` (and the old ``--timeout-s``) into ``args.timeout`` (text)."""
    note = "" if default is None else f", default {default}"
    parser.add_argument(
        "--timeout", metavar="T", default=default, help=f"{help_text} (30s, 2m{note})"
    )
    parser.add_argument(
        "--timeout-s", dest="timeout", action=_Deprecated, new="--timeout", help=SUPPRESS
    )


def duration_of(args: argparse.Namespace, name: str = "duration") -> float | None:
    """``args.<name>`` in seconds (None when not given); ConfigError names the option."""
    value = getattr(args, name, None)
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return parse_duration_s(str(value), f"--{name}")


def add_run_limits(parser: argparse.ArgumentParser, duration_help: str) -> None:
    """``--duration`` (run-clock time) and ``--timeout`` (wall-clock limit) of a plan's run."""
    add_duration(parser, duration_help)
    add_timeout(parser, "wall-clock limit of the run, whatever its clock; it ends 'timeout'", None)


def timeout_of(args: argparse.Namespace) -> float | None:
    """``args.timeout`` in seconds (None when not given); ConfigError names ``--timeout``."""
    return duration_of(args, "timeout")

"""The ``labctl`` command: global options, then one sub-command per module of labctl.cli.

A module of this package that defines ``register(subparsers) -> None`` adds its own
sub-command (and sets ``func``); nothing here names the commands, so adding one is adding
a module. Installed packages add theirs through the ``labctl.commands`` entry points
(``labctl.extensions``), as the key-generation plans add ``labctl node``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import labctl
import labctl.cli
from labctl import extensions
from labctl.cli.malloc_arenas import use_one_malloc_arena
from labctl.interfaces.errors import ConfigError, LabctlError
from labctl.log import setup_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DEGRADED = 3
"""The run finished but degraded (``labctl run``/``resume``: too few blocks gave key)."""
EXIT_INTERRUPTED = 130

log = logging.getLogger(__name__)

_NOT_COMMANDS = frozenset({"main", "__main__"})


def command_modules() -> tuple[list[ModuleType], list[str]]:
    """Every labctl.cli module with ``register``, plus a note for each one that fails to import."""
    found: list[ModuleType] = []
    broken: list[str] = []
    for info in sorted(pkgutil.iter_modules(labctl.cli.__path__), key=lambda i: i.name):
        if info.name in _NOT_COMMANDS or info.name.startswith("_"):
            continue
        name = f"labctl.cli.{info.name}"
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # one broken command must not take the others down
            broken.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if callable(getattr(module, "register", None)):
            found.append(module)
    for entry in extensions.declared(extensions.COMMANDS).values():
        try:
            module = extensions.load_module(extensions.COMMANDS, entry.name)
        except Exception as exc:  # as above: the built-in commands still work
            broken.append(f"{entry.value}: {type(exc).__name__}: {exc}")
            continue
        if callable(getattr(module, "register", None)):
            found.append(module)
    return found, broken


def build_parser() -> tuple[argparse.ArgumentParser, list[str]]:
    """The full argument parser and the command modules that could not be loaded."""
    parser = argparse.ArgumentParser(
        prog="labctl",
        description="Run quantum key distribution optics labs: real instruments or simulated "
        "twins, calibrations, key generation, MQTT streaming.",
    )
    parser.add_argument("--version", action="version", version=f"labctl {labctl.__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="terminal log level (default: the config's logging.level, else INFO)",
    )
    parser.add_argument(
        "--log-json",
        metavar="PATH",
        default=None,
        help="also write logs as JSON lines to PATH (overrides the config's logging.json_file)",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    modules, broken = command_modules()
    for module in modules:
        module.register(subparsers)
    return parser, broken


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, set up logging and run one command; returns the exit code."""
    use_one_malloc_arena()  # before any thread starts (see the module)
    parser, broken = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level or "INFO", args.log_json)
    for note in broken:
        log.warning("command module failed to import: %s", note)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        code = func(args)
    except ConfigError as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except LabctlError as exc:
        print(f"labctl: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("labctl: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(code)

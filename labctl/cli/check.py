"""``labctl check CONFIG [--connect]``: validate a station file; optionally reach instruments."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from labctl.cli.common import load_station_config
from labctl.cli.grammar import add_timeout, parse_duration_s
from labctl.interfaces.errors import ConfigError
from labctl.interfaces.instrument import Health
from labctl.station.loader import import_classes
from labctl.station.model import StationConfig
from labctl.station.station import DEFAULT_TIMEOUT_S, Station, StationError

HELP = """\
Validate a station file. Without --connect: check the schema (every field, with file:line
and a suggestion for typos), the mqtt section's files and tokens, and import every class
path (world and instruments), but build and connect nothing. With --connect: also build
every instrument, connect them all in parallel, print each one's health, report every
failure together, then put what was opened in its safe state and close it. Exit codes:
0 ok, 1 an instrument failed, 2 the file is invalid.
"""


def register(subparsers: Any) -> None:
    """Add the ``check`` sub-command."""
    parser = subparsers.add_parser(
        "check",
        help="validate a station file (and with --connect, reach every instrument)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", help="station YAML file")
    parser.add_argument(
        "--connect",
        action="store_true",
        help="connect to every instrument in parallel and print its health",
    )
    add_timeout(
        parser, "per-instrument limit of connect, health and close", f"{DEFAULT_TIMEOUT_S:g}s"
    )
    parser.set_defaults(func=run_check)


def check_mqtt(config: StationConfig) -> None:
    """Apply labctl.stream's own rules to the mqtt section (files exist, token length...)."""
    from labctl.stream.settings import settings_from_config

    try:
        settings_from_config(config.raw_section("mqtt"), config.config_dir)
    except ConfigError as exc:
        if exc.file is not None:
            raise
        path = (exc.field or "mqtt").split(".")
        raise ConfigError(
            exc.message,
            file=config.file,
            line=config.source_of(*path).line,
            field=exc.field,
            suggestion=exc.suggestion,
        ) from exc


def _transport_text(config: StationConfig, name: str) -> str:
    """``kind address`` of an instrument, or ``-`` for one without a transport (a twin)."""
    transport = config.instruments[name].transport
    return "-" if transport is None else f"{transport.kind} {transport.address}"


def print_summary(config: StationConfig, console: Console) -> None:
    """What the file describes: lab/node, world, instruments, broker, storage."""
    console.print(f"station {config.lab}/{config.node}: {config.file or '<api>'} is valid")
    if config.world is not None:
        console.print(f"world: {config.world.class_path}")
    table = Table(title=f"{len(config.instruments)} instrument(s)")
    for column in ("name", "class", "transport"):
        table.add_column(column)
    for name, entry in config.instruments.items():
        table.add_row(name, entry.class_path, _transport_text(config, name))
    console.print(table)
    broker = config.mqtt.url or "embedded broker on 127.0.0.1"
    console.print(f"mqtt: {broker}")
    console.print(f"runs: {config.storage.runs_dir}")


def _health_table(
    config: StationConfig, health: dict[str, Health], failed: dict[str, BaseException]
) -> Table:
    """One row per instrument: connected or not, healthy or not, and why."""
    table = Table(title="instrument health")
    for column in ("name", "class", "status", "detail"):
        table.add_column(column)
    for name, entry in config.instruments.items():
        if name in failed:
            error = failed[name]
            table.add_row(name, entry.class_path, "[red]connect failed[/red]", str(error))
            continue
        result = health.get(name, Health(ok=False, detail="no health result"))
        status = "[green]ok[/green]" if result.ok else "[red]unhealthy[/red]"
        table.add_row(name, entry.class_path, status, result.detail)
    return table


async def connect_and_report(config: StationConfig, timeout_s: float, console: Console) -> int:
    """Connect everything, print health, release everything; 0 when all are reachable and ok."""
    station = Station.from_config(config, timeout_s=timeout_s)
    problems: list[str] = []
    failed: dict[str, BaseException] = {}
    try:
        try:
            await station.connect_all()
        except StationError as exc:
            failed = exc.failures
            problems.append(str(exc))
        health = await station.health_all(only_connected=True)
        console.print(_health_table(config, health, failed))
        unhealthy = [f"  {name}: {h.detail}" for name, h in health.items() if not h.ok]
        if unhealthy:
            head = f"health failed on {len(unhealthy)} instrument(s):"
            problems.append("\n".join([head, *unhealthy]))
    finally:
        # Release what was opened even when printing failed or the user pressed Ctrl-C.
        try:
            await station.safe_state_all(only_connected=True)
        except StationError as exc:
            problems.append(str(exc))
        try:
            await station.close_all()
        except StationError as exc:
            problems.append(str(exc))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    console.print(f"all {len(config.instruments)} instrument(s) connected and healthy")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Entry point of ``labctl check``."""
    try:
        timeout_s = parse_duration_s(str(args.timeout), "--timeout")
    except ConfigError as exc:
        print(f"labctl: error: {exc}", file=sys.stderr)
        return 2
    config = load_station_config(args, args.config)
    import_classes(config)
    check_mqtt(config)
    console = Console(soft_wrap=True)
    print_summary(config, console)
    if not args.connect:
        return 0
    return asyncio.run(connect_and_report(config, timeout_s, console))

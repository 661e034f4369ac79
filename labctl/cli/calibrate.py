"""``labctl calibrate NAME CONFIG`` (or ``CONFIG NAME``): run one calibration routine (or
``all``) as a run. ``--config CONFIG`` still works, with a deprecation note.

Prints a summary table (routine, instrument, PASS/FAIL, reason). Exit code 0 when every
routine passed, 1 when any failed (or the run itself failed), 2 for bad input. The
routines are the plans installed under the ``labctl.calibrations`` entry points
(``labctl.extensions``); ``labctl.config_checks`` check the station file first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labctl import extensions
from labctl.cli.grammar import add_run_limits, duration_of, timeout_of
from labctl.cli.runsetup import engine_options, quiet_console, store_locks
from labctl.interfaces.errors import ConfigError
from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine, RunResult
from labctl.runner.plans import Plan, load_plan
from labctl.runner.signals import abort_on_signals
from labctl.station.model import StationConfig


def names() -> list[str]:
    """The calibrations installed (``all`` first)."""
    found = list(extensions.declared(extensions.CALIBRATIONS))
    return sorted(found, key=lambda n: (n != "all", n))


def plan_spec(name: str) -> str:
    """``module:function`` of the plan behind calibration ``name`` (ConfigError if unknown)."""
    key = name.replace("-", "_")
    if key not in names():
        raise ConfigError(
            f"unknown calibration {name!r}; known: {', '.join(names())}", field="NAME"
        )
    return extensions.spec(extensions.CALIBRATIONS, key)


def check_config(config: StationConfig) -> None:
    """Every installed config check (bad calibration/sync sections fail before any run)."""
    for name in extensions.declared(extensions.CONFIG_CHECKS):
        check = extensions.load(extensions.CONFIG_CHECKS, name)
        if callable(check):
            check(config)


def summary_table(result: RunResult) -> Table:
    """One row per routine: what, which instrument, verdict and why."""
    table = Table(title=f"calibration {result.run_id}: {result.status}")
    for column in ("routine", "instrument", "verdict", "reason"):
        table.add_column(column, overflow="fold")
    for routine in getattr(result.result, "results", []):
        verdict = "[green]PASS[/green]" if routine.passed else "[red]FAIL[/red]"
        table.add_row(routine.name, routine.instrument, verdict, routine.reason)
    return table


def exit_code(result: RunResult) -> int:
    """0 when the run finished and every routine passed, else 1."""
    report: Any = result.result
    if result.status != "ok" or report is None:
        return 1
    return 0 if bool(report.passed) else 1


async def _run(
    args: argparse.Namespace, config: Any, plan: Plan, spec: str, files: tuple[str, str]
) -> int:
    from labctl.station import Station

    control = RunControl()
    with store_locks(config, keys=False), abort_on_signals(control):
        station = Station.from_config(config)
        async with station:
            engine = RunEngine(
                station,
                runs_dir=Path(config.storage.runs_dir),
                config=config.model_dump(mode="json"),
                config_text=files[0],
                config_file=files[1],
                **engine_options(config),
            )
            result = await engine.run(
                plan,
                name=f"calibrate-{args.routine}",
                plan_name=spec,
                control=control,
                duration_s=duration_of(args),
                timeout_s=timeout_of(args),
            )
    console = Console()
    console.print(summary_table(result))
    if result.status != "ok":
        console.print(f"run {result.status}: {result.reason}")
    console.print(f"folder: {result.path}")
    return exit_code(result)


def _main(args: argparse.Namespace) -> int:
    from labctl.cli.common import load_station_config

    args.routine, args.config = name_and_config(args)
    spec = plan_spec(args.routine)
    duration_of(args)  # bad limits fail before any instrument is touched
    timeout_of(args)
    config = load_station_config(args, args.config)
    quiet_console()
    check_config(config)
    plan = load_plan(spec)
    files = (Path(args.config).read_text(encoding="utf-8"), str(Path(args.config).resolve()))
    return asyncio.run(_run(args, config, plan, spec, files))


def register(subparsers: Any) -> None:
    """Add ``labctl calibrate``."""
    parser = subparsers.add_parser(
        "calibrate", help="run a calibration routine (or all) and print pass/fail with reasons"
    )
    parser.add_argument(
        "words", nargs="+", metavar="NAME CONFIG", help=f"NAME is one of: {', '.join(names())}"
    )
    parser.add_argument("--config", dest="config_flag", help=argparse.SUPPRESS)
    add_run_limits(parser, "stop after this much run-clock time")
    parser.set_defaults(func=_main)


def name_and_config(args: argparse.Namespace) -> tuple[str, str]:
    """The routine and the station file, in either order (``--config`` still accepted)."""
    words = list(args.words)
    if args.config_flag is not None:
        print(
            "labctl: note: --config is deprecated; use labctl calibrate NAME CONFIG",
            file=sys.stderr,
        )
        words.append(args.config_flag)
    if len(words) != 2:
        raise ConfigError(
            f"expected NAME and CONFIG, got {' '.join(words)!r}", field="labctl calibrate"
        )
    first, second = words
    if first.replace("-", "_") in names():
        return first, second
    if second.replace("-", "_") in names():
        return second, first
    return first, second  # plan_spec names the unknown routine

"""``labctl run CONFIG``: run a plan on the station, writing a run folder.

The plan comes from ``--plan module:function`` or the config's ``runner.plan``. Exit code
0 when the plan finished ok, 3 when it finished ``degraded`` (key generation: too few
blocks gave key), 1 for any other end (aborted, halted, failed, timeout, or a store held
by another run), 2 for bad input. The first Ctrl-C/SIGTERM aborts at the next checkpoint,
a second halts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labctl.cli.grammar import add_run_limits, duration_of, timeout_of
from labctl.cli.grammar import parse_duration_s as parse_duration_s  # re-exported
from labctl.cli.overrides import LoadedConfig, load_with_overrides, parse_overrides
from labctl.cli.runsetup import RunStream, quiet_console, run_stream, store_locks
from labctl.cli.runsetup import engine_options as engine_options  # re-exported: resume, node
from labctl.interfaces.errors import ConfigError
from labctl.report import write_report_logged
from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine, RunResult
from labctl.runner.plans import Plan, load_plan
from labctl.runner.signals import abort_on_signals
from labctl.runner.status import FinalStatus

log = logging.getLogger(__name__)

SUMMARY_ROWS = (
    "status",
    "reason",
    "blocks",
    "blocks_with_key",
    "key_block_share",
    "pulses",
    "detections",
    "sifted_bits",
    "qber_z",
    "qber_x",
    "secret_bits",
    "key_rate_per_pulse",
    "run_time_s",
    "secret_key_rate_bps",
    "secret_key_rate_acquisition_bps",
    "ec_efficiency",
    "channel_uses",
    "sync_offset_ps",
    "sync_drift_ppb",
)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """Plan arguments among ``--set`` items (config keys are applied to the config)."""
    return parse_overrides(items, {}).args


def resolve_plan(spec: str, where: str) -> Plan:
    """load_plan, turning a bad spec into a ConfigError (exit code 2)."""
    try:
        return load_plan(spec)
    except ValueError as exc:
        raise ConfigError(str(exc), field=where) from exc


def report(result: RunResult) -> int:
    """Write the run's report.html, print how the run ended and return the exit code."""
    page = write_report_logged(result.path)  # a failure is logged; the run stays as it is
    print(f"run {result.run_id}: {result.status} ({result.reason})")
    print(f"folder: {result.path}")
    if page is not None:
        print(f"report: {page}")
    for name, error in result.safe_state_errors.items():
        print(f"safe_state({name}) failed: {error}", file=sys.stderr)
    return exit_code(result.status)


def exit_code(status: str) -> int:
    """0 ok, 3 degraded, 1 any other end of a run (see the module docstring)."""
    from labctl.cli.main import EXIT_DEGRADED, EXIT_FAILED, EXIT_OK

    if status == FinalStatus.OK.value:
        return EXIT_OK
    return EXIT_DEGRADED if status == FinalStatus.DEGRADED.value else EXIT_FAILED


def with_publisher(plan: Plan, stream: RunStream) -> Plan:
    """The plan, with the run's publisher reachable as ``run.publisher`` (link metrics)."""

    async def streamed(run: Any) -> Any:
        run.publisher = stream.publisher
        if stream.broker_url:  # the terminal saw it before the run folder existed
            run.log.info("streaming on %s", stream.broker_url)
        return await plan(run)

    return streamed


def summary_table(path: Path) -> Table | None:
    """The run folder's summary.json (written by key generation) as a table, if there is one."""
    file = path / "summary.json"
    if not file.is_file():
        return None
    summary = json.loads(file.read_text(encoding="utf-8"))
    table = Table(title=f"run {summary.get('run_id', path.name)}: {summary.get('status')}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key in SUMMARY_ROWS:
        if key in summary:
            table.add_row(key, _cell(summary[key]))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "n/a" if value is None else str(value)


async def _run(
    args: argparse.Namespace, loaded: LoadedConfig, plan: Plan, spec: str, file: str
) -> int:
    from labctl.station import Station

    config = loaded.config
    control = RunControl()
    with store_locks(config), abort_on_signals(control):
        station = Station.from_config(config)
        async with station, run_stream(config, station, control, spec) as stream:
            engine = RunEngine(
                station,
                runs_dir=Path(config.storage.runs_dir),
                sinks=[stream],
                config=config.model_dump(mode="json"),
                config_text=loaded.text,
                config_file=file,
                **engine_options(config),
            )
            result = await engine.run(
                with_publisher(plan, stream),
                name=args.name,
                plan_name=spec,
                args=loaded.overrides.args,
                duration_s=duration_of(args),
                control=control,
                timeout_s=timeout_of(args),
            )
    table = summary_table(result.path)
    if table is not None:
        Console().print(table)
    return report(result)


def _main(args: argparse.Namespace) -> int:
    from labctl.cli.common import apply_config_logging

    loaded = load_with_overrides(args.config, args.set)  # bad --set fails before any run
    config = loaded.config
    apply_config_logging(args, config)
    quiet_console()
    for change in loaded.overrides.applied:
        log.info("--set %s", change)
    spec = args.plan or config.runner.get("plan")
    if not spec:
        raise ConfigError(
            "no plan: give --plan module:function or set runner.plan",
            file=config.file,
            field="runner.plan",
        )
    plan = resolve_plan(str(spec), "--plan" if args.plan else "runner.plan")
    duration_of(args)  # a bad --duration or --timeout fails before any instrument is touched
    timeout_of(args)
    return asyncio.run(_run(args, loaded, plan, str(spec), str(Path(args.config).resolve())))


def register(subparsers: Any) -> None:
    """Add ``labctl run``."""
    parser = subparsers.add_parser("run", help="run a plan on a station, writing a run folder")
    parser.add_argument("config", help="station file (YAML)")
    parser.add_argument("--plan", help="module:function of the plan (default: runner.plan)")
    add_run_limits(parser, "stop after this much run-clock time")
    parser.add_argument("--name", help="run name (folder runs/{timestamp}-{name})")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key (qkd.block_pulses=1e7, or block_pulses=1e7 when one section has "
        "it) or a plan argument (YAML value); repeatable",
    )
    parser.set_defaults(func=_main)

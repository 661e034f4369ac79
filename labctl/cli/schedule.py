"""``labctl schedule CONFIG``: unattended runs — queued, at wall-clock times, repeated — and
recalibration whenever the calibration store's entries expire.

From the command line (one entry) and/or the station file's ``schedule:`` section::

    labctl schedule configs/lab.yaml --at 22:00 --every 12h --duration 2h --recalibrate

    schedule:
      timezone: Europe/Vienna       # times of day are read here (default: the machine's)
      until: 3d                     # stop scheduling after this much clock time (default: never)
      runs:                         # in order; without ``at`` a run is queued at once
        - {name: night, at: "22:00", every: 12h, duration: 2h}
        - {plan: "mymodule:sweep", args: {n: 10}, count: 1}
      recalibrate:                  # a calibration plan whenever a calibration expires
        plan: mymodule:recalibrate  # default: the installed calibration "all"
        margin: 10m                 # that much before the expiry (default 0)
        retry: 10m                  # again after this long if it did not renew (default 10m)

A run entry: ``plan`` (default ``runner.plan``), ``name``, ``at`` (HH:MM), ``every``,
``count``, ``duration``, ``priority`` (higher first, calibration is 20), ``args``. With no
entry at all, ``runner.plan`` is queued once. The schedule holds the stores for its whole
life (one run per store) and streams every run as ``labctl run`` does. Exit code 0 when
every run ended ok, 3 when the worst was degraded, 1 otherwise, 2 for bad input. Ctrl-C
starts no further run and aborts the current one; a second Ctrl-C halts it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl import extensions
from labctl.cli.grammar import add_duration, add_timeout, timeout_of
from labctl.cli.main import EXIT_DEGRADED, EXIT_FAILED, EXIT_OK
from labctl.cli.overrides import load_with_overrides
from labctl.cli.run import exit_code, parse_duration_s, resolve_plan, with_publisher
from labctl.cli.runsetup import engine_options, quiet_console, run_stream, store_locks
from labctl.interfaces.errors import ConfigError
from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine
from labctl.runner.plans import Plan
from labctl.runner.scheduler import Scheduler, TaskStatus
from labctl.runner.triggers import Trigger, parse_time_of_day, parse_zone
from labctl.store.calibration import CalibrationStore


def default_calibration_plan() -> str:
    """The recalibration plan of a schedule that names none: the calibration ``all``."""
    return extensions.spec(extensions.CALIBRATIONS, "all")


_RUN_KEYS = {"plan", "name", "at", "every", "count", "duration", "priority", "args"}
_SECTION_KEYS = {"timezone", "until", "runs", "recalibrate"}
_RECAL_KEYS = {"plan", "margin", "retry"}


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One scheduled plan (validated)."""

    name: str
    plan_spec: str
    trigger: Trigger
    duration_s: float | None = None
    priority: int = 0
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recalibration:
    """The calibration plan run on expiry (validated)."""

    plan_spec: str
    margin_s: float = 0.0
    retry_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Schedule:
    """A whole schedule: what runs when, recalibration, for how long."""

    runs: list[RunEntry]
    recalibrate: Recalibration | None = None
    until_s: float | None = None


def _mapping(value: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be a mapping, got {value!r}", field=where)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown}; known: {sorted(allowed)}", field=where)
    return value


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration_s(str(value))
    except ConfigError as exc:
        raise ConfigError(exc.message, field=where) from None


def _entry(raw: Mapping[str, Any], where: str, default_plan: str | None, zone: Any) -> RunEntry:
    _mapping(raw, where, _RUN_KEYS)
    spec = raw.get("plan") or default_plan
    if not spec:
        raise ConfigError("no plan: set plan here or runner.plan", field=f"{where}.plan")
    at = raw.get("at")
    count = raw.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(f"must be a whole number >= 1, got {count!r}", field=f"{where}.count")
    every = raw.get("every")
    if every is None and count is None:
        count = 1  # neither repeat nor count given: once
    trigger = Trigger(
        at=None if at is None else parse_time_of_day(str(at), f"{where}.at"),
        every_s=None if every is None else _duration(every, f"{where}.every"),
        zone=zone,
        count=count,
    )
    if trigger.every_s is None and (count or 1) > 1:
        raise ConfigError("count > 1 needs every", field=f"{where}.count")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigError(f"must be a whole number, got {priority!r}", field=f"{where}.priority")
    args = raw.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"must be a mapping, got {args!r}", field=f"{where}.args")
    duration = raw.get("duration")
    return RunEntry(
        name=str(raw.get("name") or str(spec).rpartition(":")[2]),
        plan_spec=str(spec),
        trigger=trigger,
        duration_s=None if duration is None else _duration(duration, f"{where}.duration"),
        priority=priority,
        args=dict(args),
    )


def parse_schedule(
    section: Mapping[str, Any] | None,
    *,
    default_plan: str | None,
    cli: Mapping[str, Any] | None = None,
    cli_recalibrate: bool = False,
    cli_zone: str | None = None,
) -> Schedule:
    """The ``schedule:`` section plus the command line's entry, validated (ConfigError names
    ``schedule.<field>`` or the option)."""
    section = _mapping(section or {}, "schedule", _SECTION_KEYS)
    zone = parse_zone(cli_zone or section.get("timezone"), "schedule.timezone")
    raw_runs = section.get("runs") or []
    if not isinstance(raw_runs, list):
        raise ConfigError(f"must be a list, got {raw_runs!r}", field="schedule.runs")
    runs = [
        _entry(raw, f"schedule.runs[{i}]", default_plan, zone) for i, raw in enumerate(raw_runs)
    ]
    if cli:
        runs.append(_entry(cli, "command line", default_plan, zone))
    if not runs:
        runs.append(_entry({}, "runner.plan", default_plan, zone))
    recal_raw = section.get("recalibrate")
    recalibrate = None
    if recal_raw is not None or cli_recalibrate:
        raw = _mapping(recal_raw or {}, "schedule.recalibrate", _RECAL_KEYS)
        margin, retry = raw.get("margin"), raw.get("retry")
        recalibrate = Recalibration(
            plan_spec=str(raw.get("plan") or default_calibration_plan()),
            margin_s=0.0 if margin is None else _duration(margin, "schedule.recalibrate.margin"),
            retry_s=600.0 if retry is None else _duration(retry, "schedule.recalibrate.retry"),
        )
    until = section.get("until")
    return Schedule(
        runs, recalibrate, None if until is None else _duration(until, "schedule.until")
    )


def install(
    scheduler: Scheduler,
    schedule: Schedule,
    store: CalibrationStore,
    wrap: Any = None,
) -> list[tuple[str, float]]:
    """Put ``schedule`` on ``scheduler``; returns (name, first start) of every run entry.

    ``wrap(plan) -> plan`` is applied to every plan (the CLI hands plans its publisher).
    """
    plans: dict[str, Plan] = {}

    def plan_of(spec: str, where: str) -> Plan:
        if spec not in plans:
            plan = resolve_plan(spec, where)
            plans[spec] = plan if wrap is None else wrap(plan)
        return plans[spec]

    firsts = []
    for i, entry in enumerate(schedule.runs):
        first_s = scheduler.at(
            entry.name,
            plan_of(entry.plan_spec, f"schedule.runs[{i}].plan"),
            entry.trigger,
            priority=entry.priority,
            args=entry.args,
            duration_s=entry.duration_s,
        )
        firsts.append((entry.name, first_s))
    if schedule.recalibrate is not None:
        recal = schedule.recalibrate
        scheduler.recalibrate_on_expiry(
            "recalibrate",
            plan_of(recal.plan_spec, "schedule.recalibrate.plan"),
            store,
            margin_s=recal.margin_s,
            retry_s=recal.retry_s,
        )
    return firsts


def final_code(scheduler: Scheduler) -> int:
    """The worst end over every run: 0 ok, 3 degraded, 1 anything else."""
    codes = {exit_code(t.result.status) for t in scheduler.history if t.result is not None}
    if any(t.status is TaskStatus.FAILED for t in scheduler.history) or EXIT_FAILED in codes:
        return EXIT_FAILED
    return EXIT_DEGRADED if EXIT_DEGRADED in codes else EXIT_OK


@contextlib.contextmanager
def stop_on_signals(scheduler: Scheduler) -> Iterator[None]:
    """First Ctrl-C/SIGTERM: no further run, abort the current one; second: halt it."""
    loop = asyncio.get_running_loop()
    installed = []

    def handler() -> None:
        if scheduler.stopped and scheduler.current is not None:
            scheduler.current.halt("second interrupt")
        scheduler.stop("interrupted: the schedule stops")

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError):
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def _run(
    config: Any, schedule: Schedule, files: tuple[str, str], timeout_s: float | None
) -> int:
    from labctl.station import Station

    spec = str(config.runner.get("plan") or schedule.runs[0].plan_spec)
    with store_locks(config):
        station = Station.from_config(config)
        session = RunControl()  # the stream's own control: idle between runs
        async with station, run_stream(config, station, session, spec) as stream:
            engine = RunEngine(
                station,
                runs_dir=Path(config.storage.runs_dir),
                sinks=[stream],
                config=config.model_dump(mode="json"),
                config_text=files[0],
                config_file=files[1],
                **engine_options(config),
            )
            scheduler = Scheduler(
                engine,
                control_factory=lambda: stream.attach(RunControl()),
                run_timeout_s=timeout_s,
            )
            store = CalibrationStore(Path(config.storage.calibration_store))
            for name, first_s in install(
                scheduler, schedule, store, lambda p: with_publisher(p, stream)
            ):
                print(f"scheduled {name}: first start in {first_s - station.clock.now_s():.0f} s")
            until_s = math.inf
            if schedule.until_s is not None:
                until_s = station.clock.now_s() + schedule.until_s
            with stop_on_signals(scheduler):
                history = await scheduler.run_until(until_s)
    for task in history:
        if task.result is not None:
            print(f"{task.name}: {task.result.status} ({task.result.reason}) {task.result.path}")
    return final_code(scheduler)


def _cli_entry(args: argparse.Namespace, plan_args: dict[str, Any]) -> dict[str, Any] | None:
    given = {
        "plan": args.plan,
        "name": args.name,
        "at": args.at,
        "every": args.every,
        "count": args.count,
        "duration": args.duration,
        "args": plan_args or None,
    }
    entry = {k: v for k, v in given.items() if v is not None}
    return entry or None


def _main(args: argparse.Namespace) -> int:
    from labctl.cli.common import apply_config_logging

    loaded = load_with_overrides(args.config, args.set)  # bad --set fails before any run
    config = loaded.config
    apply_config_logging(args, config)
    quiet_console()
    timeout_s = timeout_of(args)
    try:
        schedule = parse_schedule(
            config.schedule,
            default_plan=config.runner.get("plan"),
            cli=_cli_entry(args, loaded.overrides.args),
            cli_recalibrate=args.recalibrate,
            cli_zone=args.timezone,
        )
    except ConfigError as exc:
        if exc.file is None and str(exc.field or "").startswith("schedule"):
            raise ConfigError(exc.message, file=config.file, field=exc.field) from None
        raise
    if args.until is not None:
        schedule = Schedule(schedule.runs, schedule.recalibrate, _duration(args.until, "--for"))
    files = (loaded.text, str(Path(args.config).resolve()))
    return asyncio.run(_run(config, schedule, files, timeout_s))


def register(subparsers: Any) -> None:
    """Add ``labctl schedule``."""
    parser = subparsers.add_parser(
        "schedule", help="unattended runs: queued, at times of day, repeated; recalibration"
    )
    parser.add_argument("config", help="station file (YAML)")
    parser.add_argument("--plan", help="module:function (default: runner.plan)")
    parser.add_argument("--name", help="run name")
    parser.add_argument("--at", help="first start at this time of day (HH:MM)")
    parser.add_argument("--every", help="then again every (12h, 30m)")
    parser.add_argument("--count", type=int, help="at most this many runs")
    add_duration(parser, "each run's run-clock limit")
    add_timeout(parser, "each run's wall-clock limit, whatever its clock", None)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config key (qkd.block_pulses=1e7) or a plan argument, as for labctl run",
    )
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="run a calibration plan when a calibration expires (the installed calibration all)",
    )
    parser.add_argument("--timezone", help="zone of --at (default: schedule.timezone, local)")
    parser.add_argument("--for", dest="until", help="stop scheduling after this long (3d)")
    parser.set_defaults(func=_main)

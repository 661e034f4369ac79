"""``labctl resume RUN_DIR``: continue a crashed or stopped run from its last checkpoint.

It streams like ``labctl run`` (same ``run_stream``): documents continue the run's seq
numbering on MQTT, the outbox beside the runs folder replays what the crashed process left
unacknowledged, ``$state``/``$meta`` are published and remote commands drive the run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

from rich.console import Console

from labctl.cli.grammar import add_run_limits, duration_of, timeout_of
from labctl.cli.runsetup import quiet_console, run_stream, store_locks
from labctl.interfaces.errors import ConfigError
from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine
from labctl.runner.metadata import REDACTED, redact_station_text
from labctl.runner.signals import abort_on_signals
from labctl.store.run_folder import RunFolder

log = logging.getLogger(__name__)


def station_file(folder: RunFolder) -> Path:
    """The original station file when it still matches the run's copy, else the copy.

    Relative paths in a station file follow the file, so the original (when unchanged)
    keeps them right; the copy is the fallback that still rebuilds the same instruments.
    """
    original = folder.read_metadata().get("config_file")
    copy = folder.config_path
    if not copy.exists():
        raise ConfigError(f"{folder.path}: run folder has no config copy", field="RUN_DIR")
    copy_text = copy.read_text(encoding="utf-8", errors="replace")
    if original and Path(original).is_file():
        text = Path(original).read_text(encoding="utf-8", errors="replace")
        # The copy is the original with its secret values redacted (verbatim if none).
        if redact_station_text(text) == copy_text:
            return Path(original)
        log.warning("%s changed since the run started; resuming with the run's copy", original)
    if REDACTED in copy_text:
        raise ConfigError(
            f"the run's copy {copy} has its secrets redacted and the original "
            f"({original or 'unknown'}) is gone or changed: restore the original, or give "
            "secrets by file (token_file, password_file) in future runs",
            field="RUN_DIR",
        )
    return copy


async def _resume(args: argparse.Namespace, folder: RunFolder, config: Any) -> int:
    from labctl.cli.run import (
        engine_options,
        report,
        resolve_plan,
        summary_table,
        with_publisher,
    )
    from labctl.station import Station

    spec = args.plan or str(folder.read_metadata().get("plan", ""))
    if not spec:
        raise ConfigError(f"{folder.path}: metadata names no plan; give --plan", field="--plan")
    plan = resolve_plan(spec, "--plan" if args.plan else "metadata.plan")
    control = RunControl()
    with store_locks(config), abort_on_signals(control):
        station = Station.from_config(config)
        runs_dir = folder.path.parent
        async with station, run_stream(config, station, control, spec, runs_dir) as stream:
            engine = RunEngine(
                station,
                runs_dir=runs_dir,
                sinks=[stream],
                config=config.model_dump(mode="json"),
                **engine_options(config),
            )
            try:
                result = await engine.resume(
                    folder.path,
                    with_publisher(plan, stream),
                    duration_s=duration_of(args),
                    control=control,
                    timeout_s=timeout_of(args),
                )
            except ValueError as exc:
                raise ConfigError(str(exc), field="RUN_DIR") from exc
    table = summary_table(result.path)
    if table is not None:
        Console().print(table)
    return report(result)


def _main(args: argparse.Namespace) -> int:
    from labctl.cli.common import load_station_config

    try:
        folder = RunFolder.open(Path(args.run_dir))
        folder.read_checkpoint()  # a corrupt checkpoint is named before anything is built
        path = station_file(folder)
    except ValueError as exc:  # RunFolderError names the file and the field
        raise ConfigError(str(exc), field="RUN_DIR") from None
    config = load_station_config(args, path)
    duration_of(args)  # bad limits fail before any instrument is touched
    timeout_of(args)
    quiet_console()
    return asyncio.run(_resume(args, folder, config))


def register(subparsers: Any) -> None:
    """Add ``labctl resume``."""
    parser = subparsers.add_parser("resume", help="continue a crashed run from its checkpoint")
    parser.add_argument("run_dir", help="the run folder (runs/{timestamp}-{name})")
    parser.add_argument("--plan", help="module:function overriding the recorded plan")
    add_run_limits(parser, "run-clock time limit for the resumed part")
    parser.set_defaults(func=_main)

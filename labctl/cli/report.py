"""``labctl report RUN``: (re)build a run folder's ``report.html`` from what the folder holds."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from labctl.interfaces.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add ``labctl report``."""
    parser = subparsers.add_parser(
        "report",
        help="build a run folder's report.html (plots, calibration, alarms, summary)",
        description="Rebuild report.html in a run folder from its events, datasets and "
        "summary. The file is self-contained: open it in any browser, offline.",
    )
    parser.add_argument("run", nargs="+", help="run folder(s), e.g. runs/20250101-120000-main")
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Entry point of ``labctl report``: one report per folder, its path printed."""
    from labctl.report import build_report

    for run in args.run:
        try:
            path = build_report(Path(run))
        except ValueError as exc:
            raise ConfigError(str(exc), field="RUN") from exc
        print(path)
    return 0

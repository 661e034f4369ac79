"""Build ``report.html`` in a run folder; the end-of-run hook that never loses a run."""

from __future__ import annotations

import html
import logging
from pathlib import Path

from labctl.report import figures, page
from labctl.report.reader import RunRecord, read_run
from labctl.report.series import RunSeries, run_series
from labctl.store.atomic import write_bytes_atomic

REPORT_FILE = "report.html"

_log = logging.getLogger(__name__)


def render(record: RunRecord) -> str:
    """The report of ``record`` as one HTML page."""
    series = run_series(record)
    status = record.metadata.get("status", "?")
    sections = [page.summary_section(record.summary, record.metadata)]
    sections.append("<h2>Alarms and faults</h2>")
    sections.append(
        page.figure_html(figures.timeline(series.incidents, series.end_s, series.blocks))
    )
    sections.append(
        page.incident_section(series.incidents, record.log_lines, record.log_lines_total)
    )
    sections.extend(_key_sections(series))
    sections.append(page.calibration_section(series.calibrations))
    drawn = [f for _, ds in sorted(record.datasets.items()) if (f := figures.dataset(ds))]
    if drawn:
        sections.append("<h2>Datasets</h2>")
        sections.extend(page.figure_html(figure) for figure in drawn)
    if record.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in record.problems)
        sections.append(f"<h2>Unreadable parts of the run folder</h2><ul>{items}</ul>")
    return page.document(f"Run {record.run_id}: {status}", sections)


def _key_sections(series: RunSeries) -> list[str]:
    parts: list[str] = []
    for title, figure in (
        ("QBER", figures.qber(series.blocks)),
        ("Key", figures.key(series.blocks)),
        ("Detectors", figures.detectors(series.blocks, series.calibrations)),
        ("Synchronization", figures.sync(series.sync)),
    ):
        if figure is not None:
            parts.append(f"<h2>{title}</h2>{page.figure_html(figure)}")
    return parts


def build_report(run_dir: Path) -> Path:
    """Write ``report.html`` into the run folder (atomically) and return its path."""
    record = read_run(Path(run_dir))
    path = record.path / REPORT_FILE
    write_bytes_atomic(path, render(record).encode("utf-8"))
    return path


def write_report_logged(run_dir: Path, log: logging.Logger | None = None) -> Path | None:
    """build_report for the end of a run: any failure is logged and the run kept as it is."""
    try:
        return build_report(run_dir)
    except Exception as exc:  # the report is a view of the run; it must never fail the run
        (log or _log).error("run report for %s failed: %s: %s", run_dir, type(exc).__name__, exc)
        return None

"""The run report: one self-contained ``report.html`` per run folder.

``read_run`` loads what a run folder holds (metadata, events, summary, datasets, log),
``series`` turns the events into per-block, sync, calibration and incident records,
``figures`` draws them (matplotlib, Agg, embedded as base64 PNG), ``page`` assembles the
HTML and ``build`` ties them together. ``labctl run`` writes the report at the end of
every run; ``labctl report RUN`` rebuilds it.
"""

from labctl.report.build import REPORT_FILE, build_report, write_report_logged
from labctl.report.reader import RunRecord, read_run

__all__ = ["REPORT_FILE", "RunRecord", "build_report", "read_run", "write_report_logged"]

"""Read what a run folder holds into one :class:`RunRecord` (read-only, never writes).

Every part is optional except ``metadata.json``: a run that failed early has no datasets,
a run that is not key generation has no ``summary.json``. Datasets are read straight from
the qcodes SQLite schema (the ``runs`` table names each dataset's result table), opened
read-only so that building a report can never change the run's data.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.store.events import read_events
from labctl.store.run_folder import RunFolder

SUMMARY_FILE = "summary.json"
LOG_LEVELS_KEPT = ("WARNING", "ERROR", "CRITICAL")
LOG_LINES_KEPT = 1000
"""The last this many warning/error lines of run.log (a long run's log can be large)."""


@dataclass(frozen=True, slots=True)
class Dataset:
    """One qcodes dataset of the run: its columns as lists of numbers (None for NULL)."""

    name: str
    columns: dict[str, list[float | None]]

    def column(self, name: str) -> list[float]:
        """Column ``name`` with NULLs dropped (KeyError naming the dataset when absent)."""
        if name not in self.columns:
            raise KeyError(f"dataset {self.name!r}: no column {name!r} (has {list(self.columns)})")
        return [v for v in self.columns[name] if v is not None]


@dataclass(slots=True)
class RunRecord:
    """Everything a report needs from one run folder."""

    path: Path
    run_id: str
    metadata: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    datasets: dict[str, Dataset] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    """The last warning and error lines of run.log (at most LOG_LINES_KEPT)."""
    log_lines_total: int = 0
    """How many warning and error lines run.log holds."""
    problems: list[str] = field(default_factory=list)
    """Parts of the folder that could not be read (shown in the report, not raised)."""

    def start_data(self) -> dict[str, Any]:
        """The start document's data ({} when the run has none)."""
        for event in self.events:
            if event.get("kind") == "start":
                data = event.get("data")
                return data if isinstance(data, dict) else {}
        return {}

    def stop_data(self) -> dict[str, Any]:
        """The last stop document's data ({} when the run never stopped cleanly)."""
        for event in reversed(self.events):
            if event.get("kind") == "stop":
                data = event.get("data")
                return data if isinstance(data, dict) else {}
        return {}


def read_run(path: Path) -> RunRecord:
    """Load the run folder at ``path`` (ValueError naming it when it is not a run folder)."""
    folder = RunFolder.open(Path(path))
    record = RunRecord(folder.path, folder.run_id, folder.read_metadata())
    if folder.events_path.is_file():
        try:
            record.events = read_events(folder.events_path)
        except ValueError as exc:
            record.problems.append(str(exc))
    summary_path = folder.path / SUMMARY_FILE
    if summary_path.is_file():
        try:
            value = json.loads(summary_path.read_text(encoding="utf-8"))
            record.summary = value if isinstance(value, dict) else None
        except json.JSONDecodeError as exc:
            record.problems.append(f"{summary_path}: not JSON ({exc})")
    if folder.database_path.is_file():
        try:
            record.datasets = read_datasets(folder.database_path)
        except sqlite3.Error as exc:
            record.problems.append(f"{folder.database_path}: cannot read datasets ({exc})")
    if folder.log_path.is_file():
        record.log_lines, record.log_lines_total = _warnings(folder.log_path)
    return record


def read_datasets(path: Path) -> dict[str, Dataset]:
    """Every dataset in a qcodes database file, by name (the last one wins on a name clash)."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    found: dict[str, Dataset] = {}
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        runs = conn.execute("SELECT name, result_table_name FROM runs ORDER BY run_id").fetchall()
        for name, table in runs:
            cursor = conn.execute(f'SELECT * FROM "{table}" ORDER BY id')
            names = [d[0] for d in cursor.description if d[0] != "id"]
            rows = cursor.fetchall()
            columns: dict[str, list[float | None]] = {n: [] for n in names}
            for row in rows:
                for n, value in zip(names, row[1:], strict=True):
                    columns[n].append(_number(value))
            found[str(name)] = Dataset(str(name), columns)
    return found


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _warnings(path: Path) -> tuple[list[str], int]:
    kept: deque[str] = deque(maxlen=LOG_LINES_KEPT)
    total = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if any(f" {level} " in line for level in LOG_LEVELS_KEPT):
                kept.append(line.rstrip("\n"))
                total += 1
    return list(kept), total

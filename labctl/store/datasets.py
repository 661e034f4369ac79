"""qcodes datasets of a run: one SQLite file per run, one dataset per sweep or measurement.

Each ``add`` commits one SQLite transaction, so rows already added survive a killed
process; ``load_by_guid`` / ``load_by_run_spec`` read them back with plain qcodes. The
runner records every dataset's last row id at each checkpoint and rolls later rows back
on resume, so a resumed plan redoes them exactly once.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.interfaces.units import UNIT_OF_SUFFIX, unit_of

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

LABELS = {
    "intensity_class": "intensity class (Alice's intensities in order: 0 = signal, "
    "1 = decoy, 2 = vacuum in the default decoy scheme)",
    "mu": "mean photon number",
    "mu_design": "design mean photon number",
    "counts": "counts",
    "qber": "quantum bit error rate",
    "qber_z": "QBER, Z basis",
    "qber_x": "QBER, X basis",
    "evaluation": "optimiser evaluation",
    "channel": "detector channel",
    "port": "switch port",
}
"""Labels of common unitless columns (others get their name, spaced)."""

UNIT_OF_NAME = {
    "counts": "count",
    "detections": "count",
    "qber": "1",
    "qber_z": "1",
    "qber_x": "1",
    "mu": "photon/pulse",
    "mu_design": "photon/pulse",
}
"""Units of common columns whose name carries no unit suffix (``1``: a fraction). Indices
(channel, port, block, step, evaluation, intensity_class) stay without a unit."""

INDEX_COLUMNS = frozenset(
    {"channel", "port", "block", "step", "evaluation", "attempt", "intensity_class", "idx"}
)
"""Columns that number things rather than measure them: no unit, by design."""


@dataclass(frozen=True, slots=True)
class Column:
    """One dataset parameter: its name, unit and label."""

    name: str
    unit: str = ""
    label: str = ""


def _check_name(name: str, what: str) -> None:
    # qcodes builds SQL with unquoted column names, so a keyword such as "index" breaks
    # every insert later; probing an in-memory table rejects it here with a clear message.
    if not _NAME.match(name):
        raise ValueError(f"{what} {name!r}: must be a Python identifier ([A-Za-z_][A-Za-z0-9_]*)")
    try:
        sqlite3.connect(":memory:").execute(f"CREATE TABLE probe ({name} REAL)")
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{what} {name!r}: is an SQL keyword, pick another name") from exc


def label_of(name: str) -> str:
    """A readable label: the name without its unit suffix, underscores as spaces."""
    if name in LABELS:
        return LABELS[name]
    lowered = name.lower()
    for suffix, _unit in UNIT_OF_SUFFIX:
        if lowered.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)].replace("_", " ")
    return name.replace("_", " ")


def _as_column(value: str | Column) -> Column:
    """A Column with the unit read from the name's suffix (``v0_mv`` -> mV) unless given."""
    column = value if isinstance(value, Column) else Column(value)
    unit = column.unit or unit_of(column.name) or UNIT_OF_NAME.get(column.name, "")
    return Column(column.name, unit, column.label or label_of(column.name))


class RunDataset:
    """One qcodes dataset being written: ``add(index=3, rate_hz=1.2e3)``."""

    def __init__(self, dataset: Any, name: str, columns: Sequence[str]) -> None:
        self._dataset = dataset
        self.name = name
        self.columns = tuple(columns)

    @property
    def guid(self) -> str:
        """The qcodes GUID (``qcodes.dataset.load_by_guid``)."""
        return str(self._dataset.guid)

    @property
    def captured_run_id(self) -> int:
        """The qcodes captured run id inside the run's database."""
        return int(self._dataset.captured_run_id)

    def add(self, **values: Any) -> None:
        """Append one row (committed to disk before returning)."""
        self.add_many([values])

    def add_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append several rows in one transaction."""
        if not rows:
            return
        for row in rows:
            unknown = set(row) - set(self.columns)
            if unknown:
                raise ValueError(
                    f"dataset {self.name!r}: unknown column(s) {sorted(unknown)}; "
                    f"known: {list(self.columns)}"
                )
        self._dataset.add_results(list(rows))

    def last_row_id(self) -> int:
        """Id of the last row written (0 when empty); what a checkpoint records."""
        row = self._dataset.conn.execute(
            f'SELECT max(id) FROM "{self._dataset.table_name}"'
        ).fetchone()
        return int(row[0] or 0)

    def rollback_to(self, last_row_id: int) -> int:
        """Delete rows written after ``last_row_id``; returns how many were deleted."""
        conn = self._dataset.conn
        cursor = conn.execute(
            f'DELETE FROM "{self._dataset.table_name}" WHERE id > ?', (last_row_id,)
        )
        conn.commit()
        return int(cursor.rowcount)

    def complete(self) -> None:
        """Mark the dataset completed (read-only); idempotent."""
        if not self._dataset.completed:
            self._dataset.mark_completed()

    def read(self) -> dict[str, Any]:
        """The data written so far, as qcodes ``get_parameter_data`` returns it."""
        return dict(self._dataset.get_parameter_data())


class RunDatabase:
    """The run's ``data.db``: an experiment named after the run, datasets inside it."""

    def __init__(self, path: Path, run_id: str) -> None:
        from qcodes.dataset import load_or_create_experiment
        from qcodes.dataset.sqlite.database import connect

        self.path = Path(path)
        self.run_id = run_id
        self._conn = connect(str(self.path))
        self._experiment = load_or_create_experiment(run_id, sample_name="labctl", conn=self._conn)
        self._open: dict[str, RunDataset] = {}
        self.run_metadata: dict[str, str | int | float] = {}
        """Added to every dataset created from now on (run id, plan, name...)."""
        self.station_snapshot: dict[str, Any] | None = None
        """The instruments' snapshots, stored as each new dataset's qcodes snapshot."""

    def describe(self, start: Mapping[str, Any]) -> None:
        """Take run metadata and the station snapshot from the run's start document data."""
        self.run_metadata = {"labctl_run_id": self.run_id}
        for key in ("plan", "code_version"):
            value = start.get(key)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                self.run_metadata[f"labctl_{key}"] = value
        if start.get("args"):
            self.run_metadata["labctl_args"] = json.dumps(start["args"], default=str)
        snapshots = start.get("snapshots")
        if isinstance(snapshots, Mapping):
            self.station_snapshot = {"station": {"instruments": dict(snapshots)}}

    def create(
        self,
        name: str,
        *,
        setpoints: Sequence[str | Column] = (),
        measured: Sequence[str | Column],
        metadata: Mapping[str, str | int | float] | None = None,
    ) -> RunDataset:
        """Create a dataset whose ``measured`` columns depend on the ``setpoints`` columns."""
        from qcodes.dataset import new_data_set
        from qcodes.dataset.descriptions.dependencies import InterDependencies_
        from qcodes.parameters import ParamSpecBase

        if name in self._open:
            raise ValueError(f"dataset {name!r} already exists in run {self.run_id}")
        if not measured:
            raise ValueError(f"dataset {name!r}: needs at least one measured column")
        set_cols = [_as_column(c) for c in setpoints]
        meas_cols = [_as_column(c) for c in measured]
        names = [c.name for c in set_cols + meas_cols]
        for col_name in names:
            _check_name(col_name, f"dataset {name!r}: column")
        if len(set(names)) != len(names):
            raise ValueError(f"dataset {name!r}: duplicate column names in {names}")

        def spec(col: Column) -> ParamSpecBase:
            return ParamSpecBase(col.name, "numeric", label=col.label or col.name, unit=col.unit)

        set_specs = tuple(spec(c) for c in set_cols)
        if set_specs:
            interdeps = InterDependencies_(dependencies={spec(c): set_specs for c in meas_cols})
        else:
            interdeps = InterDependencies_(standalones=tuple(spec(c) for c in meas_cols))
        dataset = new_data_set(name, exp_id=self._experiment.exp_id, conn=self._conn)
        dataset.set_interdependencies(interdeps)
        for key, value in {**self.run_metadata, **(metadata or {})}.items():
            dataset.add_metadata(key, value)
        if self.station_snapshot is not None:
            dataset.add_snapshot(json.dumps(self.station_snapshot, default=str))
        dataset.mark_started()
        handle = RunDataset(dataset, name, names)
        self._open[name] = handle
        return handle

    def reopen(self, name: str, guid: str) -> RunDataset:
        """Reattach to a dataset written by an earlier (crashed) process of this run."""
        from qcodes.dataset import load_by_guid

        dataset = load_by_guid(guid, conn=self._conn)
        columns = list(dataset.description.interdeps.names)
        handle = RunDataset(dataset, name, columns)
        self._open[name] = handle
        return handle

    def get(self, name: str) -> RunDataset | None:
        """The open dataset called ``name``, if any."""
        return self._open.get(name)

    @property
    def datasets(self) -> dict[str, RunDataset]:
        """Every dataset open in this process, by name."""
        return dict(self._open)

    def close(self, *, complete: bool = True) -> None:
        """Close the database; ``complete`` marks every dataset read-only first.

        A run that did not finish ok leaves its datasets open, so ``resume`` can append.
        """
        if complete:
            for handle in self._open.values():
                handle.complete()
        self._conn.close()

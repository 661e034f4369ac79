"""One folder per run: ``runs/{timestamp}-{name}/`` and the files inside it.

config.yaml      verbatim copy of the station file (what resume rebuilds from)
metadata.json    run id, plan, arguments, code version, status (atomic rewrites)
run.log          the run's log
events.jsonl     every document, one per line (see labctl.store.events)
checkpoint.json  the plan's last resumable state (atomic: temp + fsync + rename)
data.db          qcodes SQLite database with the run's datasets
summary.json     the plan's totals (key generation); ``status: degraded`` in it makes a
                 run whose plan finished end ``degraded`` instead of ``ok``
run.lock         present while a process runs the folder (labctl.store.lock)

metadata.json and checkpoint.json are read back by ``labctl resume``; a file that is not
JSON, not UTF-8, or holds a field of the wrong type raises RunFolderError naming the file
and the field (``metadata.json: field 'datasets.main': expected a string ...``) instead of
a KeyError or TypeError deep in the engine.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from labctl.store.atomic import read_json, write_bytes_atomic, write_json_atomic


class RunFolderError(ValueError):
    """A run folder file is unreadable or holds a field of the wrong type (file and field)."""

    def __init__(self, path: Path, message: str, field: str | None = None) -> None:
        self.path = path
        self.field = field
        where = f"{path}: field '{field}': " if field else f"{path}: "
        super().__init__(where + message)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _read_object(path: Path) -> dict[str, Any]:
    try:
        value = read_json(path)
    except UnicodeDecodeError as exc:  # before ValueError, its base class
        raise RunFolderError(path, f"not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError; read_json names the file
        raise RunFolderError(path, f"not valid JSON ({str(exc).split(' (', 1)[-1]}") from None
    except RecursionError:
        raise RunFolderError(path, "JSON nested too deeply") from None
    except OSError as exc:
        raise RunFolderError(path, f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(value, dict):
        raise RunFolderError(path, f"expected a JSON object, got {type(value).__name__}")
    return value


def _check(path: Path, data: dict[str, Any], field: str, kinds: tuple[type, ...], what: str) -> Any:
    """data[field] when present and of one of ``kinds`` (bool is never an int here)."""
    value = data.get(field)
    if field in data and (
        not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)
    ):
        raise RunFolderError(path, f"expected {what}, got {_describe(value)}", field)
    return value


def validate_metadata(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The fields ``labctl resume`` relies on, type-checked (others are left alone)."""
    for name in ("plan", "status", "run_id", "config_file"):
        _check(path, data, name, (str, type(None)), "a string")
    _check(path, data, "args", (dict,), "an object")
    datasets = _check(path, data, "datasets", (dict,), "an object of dataset name -> guid")
    for name, guid in (datasets or {}).items():
        if not isinstance(guid, str):
            raise RunFolderError(
                path, f"expected a string guid, got {_describe(guid)}", f"datasets.{name}"
            )
    resumes = _check(path, data, "resumes", (list,), "a list")
    for i, entry in enumerate(resumes or []):
        if not isinstance(entry, dict):
            raise RunFolderError(
                path, f"expected an object, got {_describe(entry)}", f"resumes[{i}]"
            )
    return data


PENDING_EVENT = "pending_event"
"""Checkpoint field: an event document committed with the state, maybe not yet in the log."""


def validate_checkpoint(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """seq_next (int >= 0) and datasets.{name}.last_row_id (int >= 0), type-checked."""
    seq = _check(path, data, "seq_next", (int,), "an integer >= 0")
    if seq is not None and seq < 0:
        raise RunFolderError(path, f"expected an integer >= 0, got {seq}", "seq_next")
    datasets = _check(path, data, "datasets", (dict,), "an object of dataset name -> position")
    for name, saved in (datasets or {}).items():
        field = f"datasets.{name}"
        if not isinstance(saved, dict):
            raise RunFolderError(path, f"expected an object, got {_describe(saved)}", field)
        row = saved.get("last_row_id")
        if "last_row_id" in saved and (
            not isinstance(row, int) or isinstance(row, bool) or row < 0
        ):
            raise RunFolderError(
                path, f"expected an integer >= 0, got {_describe(row)}", f"{field}.last_row_id"
            )
    pending = _check(path, data, PENDING_EVENT, (dict,), "an event document")
    if pending is not None:
        pending_seq = pending.get("seq")
        if not isinstance(pending_seq, int) or isinstance(pending_seq, bool) or pending_seq < 0:
            raise RunFolderError(
                path, f"expected an integer >= 0, got {_describe(pending_seq)}", "pending_event.seq"
            )
    return data


CONFIG_FILE = "config.yaml"
METADATA_FILE = "metadata.json"
LOG_FILE = "run.log"
EVENTS_FILE = "events.jsonl"
CHECKPOINT_FILE = "checkpoint.json"
DATABASE_FILE = "data.db"
SUMMARY_FILE = "summary.json"

_SLUG = re.compile(r"[^A-Za-z0-9]+")


def slugify(name: str) -> str:
    """Run names become ids made of ``[A-Za-z0-9-]`` (MQTT topic segments and folder names).

    The case is kept as typed (``--name NightRun`` -> ``...-NightRun``): MQTT topics and
    folder names are case-sensitive text, and a lowercased id no longer matches what the
    operator searches for.
    """
    slug = _SLUG.sub("-", name).strip("-")
    if not slug:
        raise ValueError(f"run name {name!r}: needs at least one letter or digit")
    return slug[:60]


class RunFolder:
    """Paths and small files of one run folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name

    @classmethod
    def create(
        cls,
        runs_dir: Path,
        name: str,
        *,
        config_text: str | None = None,
        now_s: float | None = None,
    ) -> RunFolder:
        """Make a fresh ``{timestamp}-{name}`` folder (suffixed ``-2``, ``-3``... on a clash)."""
        runs_dir = Path(runs_dir)
        runs_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now_s is None else now_s))
        base = f"{stamp}-{slugify(name)}"
        candidate, n = runs_dir / base, 1
        while True:
            try:
                candidate.mkdir()
                break
            except FileExistsError:
                n += 1
                candidate = runs_dir / f"{base}-{n}"
        folder = cls(candidate)
        if config_text is not None:
            write_bytes_atomic(folder.config_path, config_text.encode("utf-8"))
        return folder

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """An existing run folder; ValueError naming the path when it is not one."""
        path = Path(path)
        if not (path / METADATA_FILE).is_file():
            raise ValueError(f"{path}: not a run folder (no {METADATA_FILE})")
        return cls(path)

    @property
    def config_path(self) -> Path:
        """The station file copy."""
        return self.path / CONFIG_FILE

    @property
    def metadata_path(self) -> Path:
        """metadata.json."""
        return self.path / METADATA_FILE

    @property
    def log_path(self) -> Path:
        """run.log."""
        return self.path / LOG_FILE

    @property
    def events_path(self) -> Path:
        """events.jsonl."""
        return self.path / EVENTS_FILE

    @property
    def checkpoint_path(self) -> Path:
        """checkpoint.json."""
        return self.path / CHECKPOINT_FILE

    @property
    def database_path(self) -> Path:
        """data.db (qcodes)."""
        return self.path / DATABASE_FILE

    def write_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace metadata.json atomically."""
        write_json_atomic(self.metadata_path, metadata)

    def read_metadata(self) -> dict[str, Any]:
        """metadata.json as a dict (RunFolderError naming file and field when corrupt)."""
        return validate_metadata(self.metadata_path, _read_object(self.metadata_path))

    def update_metadata(self, **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into metadata.json atomically and return the result."""
        metadata = self.read_metadata() if self.metadata_path.exists() else {}
        metadata.update(changes)
        self.write_metadata(metadata)
        return metadata

    def write_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Replace checkpoint.json atomically (a crash leaves the previous checkpoint)."""
        write_json_atomic(self.checkpoint_path, checkpoint)

    def read_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint, or None when the run never reached one."""
        if not self.checkpoint_path.exists():
            return None
        return validate_checkpoint(self.checkpoint_path, _read_object(self.checkpoint_path))

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json, or None when the plan wrote none."""
        path = self.path / SUMMARY_FILE
        if not path.exists():
            return None
        value = read_json(path)
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return value

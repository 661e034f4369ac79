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
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from labctl.store.atomic import read_json, write_bytes_atomic, write_json_atomic

CONFIG_FILE = "config.yaml"
METADATA_FILE = "metadata.json"
LOG_FILE = "run.log"
EVENTS_FILE = "events.jsonl"
CHECKPOINT_FILE = "checkpoint.json"
DATABASE_FILE = "data.db"
SUMMARY_FILE = "summary.json"

_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """Run names become ids made of ``[a-z0-9-]`` (MQTT topic segments and folder names)."""
    slug = _SLUG.sub("-", name.lower()).strip("-")
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
        """metadata.json as a dict."""
        value = read_json(self.metadata_path)
        if not isinstance(value, dict):
            raise ValueError(f"{self.metadata_path}: expected a JSON object")
        return value

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
        value = read_json(self.checkpoint_path)
        if not isinstance(value, dict):
            raise ValueError(f"{self.checkpoint_path}: expected a JSON object")
        return value

    def read_summary(self) -> dict[str, Any] | None:
        """summary.json, or None when the plan wrote none."""
        path = self.path / SUMMARY_FILE
        if not path.exists():
            return None
        value = read_json(path)
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return value

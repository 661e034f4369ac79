"""The calibration store: the latest calibration of every instrument, with provenance.

One JSON file, rewritten atomically. An entry records what was calibrated (a JSON-able
``values`` dict), when (run clock seconds), by which run/plan, and until when it is valid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from labctl.store.atomic import read_json, write_json_atomic


@dataclass(frozen=True, slots=True)
class Calibration:
    """One instrument's calibration result."""

    instrument: str
    kind: str
    values: dict[str, Any]
    time_s: float
    expires_s: float
    provenance: dict[str, Any] = field(default_factory=dict)

    def is_valid(self, now_s: float) -> bool:
        """True while ``now_s`` is before the expiry time."""
        return now_s < self.expires_s


class CalibrationStore:
    """Latest calibration per (instrument, kind) in one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        value = read_json(self.path)
        if not isinstance(value, dict):
            raise ValueError(f"{self.path}: calibration store must be a JSON object")
        return value

    def save(self, calibration: Calibration) -> None:
        """Record ``calibration`` as the latest of its instrument and kind."""
        if calibration.expires_s <= calibration.time_s:
            raise ValueError(
                f"calibration {calibration.instrument}/{calibration.kind}: expires_s "
                f"({calibration.expires_s}) must be after time_s ({calibration.time_s})"
            )
        entries = self._load()
        entries[f"{calibration.instrument}/{calibration.kind}"] = asdict(calibration)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, entries)

    def latest(self, instrument: str, kind: str) -> Calibration | None:
        """The latest calibration of ``instrument`` of ``kind``, valid or not."""
        entry = self._load().get(f"{instrument}/{kind}")
        return None if entry is None else Calibration(**entry)

    def valid(self, instrument: str, kind: str, now_s: float) -> Calibration | None:
        """The latest calibration if it has not expired at ``now_s``, else None."""
        found = self.latest(instrument, kind)
        return found if found is not None and found.is_valid(now_s) else None

    def all(self) -> list[Calibration]:
        """Every stored calibration."""
        return [Calibration(**entry) for entry in self._load().values()]

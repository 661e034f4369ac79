"""Shared helpers of the runner tests: a station-like object of real test instruments."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labctl.interfaces import Clock, WallClock

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # runner_fixtures is imported by class path in station files
    sys.path.insert(0, _HERE)

from runner_fixtures import MarkerInstrument  # noqa: E402


@dataclass
class MiniStation:
    """The part of labctl.station.Station the runner uses: instruments and a clock."""

    instruments: Mapping[str, Any] = field(default_factory=dict)
    clock: Clock = field(default_factory=WallClock)


@pytest.fixture
def marker_station(tmp_path: Path) -> MiniStation:
    """One connected MarkerInstrument called 'laser' on the wall clock."""
    laser = MarkerInstrument("laser", tmp_path / "marks.jsonl", WallClock())
    laser.connected = True
    return MiniStation({"laser": laser})

"""Shared helpers of the runner tests: a station-like object of real test instruments."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.interfaces import WallClock
from tests.runner.runner_fixtures import MarkerInstrument, MiniStation


@pytest.fixture
def marker_station(tmp_path: Path) -> MiniStation:
    """One connected MarkerInstrument called 'laser' on the wall clock."""
    laser = MarkerInstrument("laser", tmp_path / "marks.jsonl", WallClock())
    laser.connected = True
    return MiniStation({"laser": laser})

"""Calibrations renewed between blocks before they expire: key output never stops for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.keygen.renewal import Renewal
from labctl.station import load_config
from labctl.store.calibration import Calibration, CalibrationStore
from labctl.store.events import read_events
from tests.experiments.keygen.keygen_helpers import run_keygen, write_config


class Entries:
    def __init__(self, entries: list[Calibration]) -> None:
        self.entries = entries

    def all(self) -> list[Calibration]:
        return self.entries


async def no_drain() -> None:
    return None


def test_due_names_the_kinds_whose_latest_calibration_expires_within_the_lead() -> None:
    store = Entries(
        [
            Calibration("pc-bob", "polarization", {}, 0.0, 3600.0),
            Calibration("pc-bob", "polarization", {}, 3000.0, 6600.0),  # the latest counts
            Calibration("laser", "mean_photon_number", {}, 0.0, 3620.0),
            Calibration("switch", "switch", {}, 0.0, 1.0),  # not a kind this renewal keeps
        ]
    )
    renewal = Renewal(store, ("delays", "polarization", "mean_photon_number"), 20.0, no_drain)
    assert renewal.due(3590.0) == []
    assert renewal.due(3600.0) == ["mean_photon_number"]  # expires at 3620: within 20 s
    assert renewal.due(6580.0) == ["polarization", "mean_photon_number"]
    with pytest.raises(ValueError, match="lead_s"):
        Renewal(store, ("polarization",), 0.0, no_drain)


async def test_polarization_is_renewed_before_it_expires_and_every_block_keeps_key(
    tmp_path: Path,
) -> None:
    # Polarization valid for 3 s of run clock, blocks every second, a 7 s run: without
    # renewal the blocks after 3 s would be stopped by the expired calibration.
    config = write_config(tmp_path)
    store = CalibrationStore(Path(load_config(config).storage.calibration_store))
    stored = store.latest("pc-bob", "polarization")
    assert stored is not None
    store.save(Calibration("pc-bob", "polarization", stored.values, 0.0, 3.0))
    result = await run_keygen(config, duration_s=7.0)
    assert result.status == "ok", result.reason
    events = read_events(result.path / "events.jsonl")
    renewals = [e["data"] for e in events if e["stream"] == "calibration" and "action" in e["data"]]
    assert renewals and renewals[0] == {"action": "renew", "kinds": ["polarization"]}
    assert not [r for r in renewals if r["action"] == "renew-failed"]
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["blocks"] >= 5 and summary["blocks_with_key"] == summary["blocks"]
    renewed = store.latest("pc-bob", "polarization")
    assert renewed is not None and renewed.expires_s > 3.0

"""Datasets people open in qcodes: units and labels on every parameter, run metadata, snapshot."""

from __future__ import annotations

import json
from pathlib import Path

from qcodes.dataset import load_by_guid
from qcodes.dataset.sqlite.database import connect

from labctl.store.datasets import Column, RunDatabase


def test_units_labels_metadata_and_snapshot_reach_qcodes(tmp_path: Path) -> None:
    database = RunDatabase(tmp_path / "data.db", "r1")
    database.describe(
        {
            "plan": "experiments.calibration.registry:plan_photons",
            "args": {"n": 3},
            "snapshots": {"laser": {"power_mw": 1.0, "output": True}},
        }
    )
    dataset = database.create(
        "cal",
        setpoints=["intensity_class", "v0_mv"],
        measured=["mu", "rate_hz", Column("delay_ps", label="delay")],
    )
    dataset.add(intensity_class=0, v0_mv=12.5, mu=0.5, rate_hz=1e3, delay_ps=7)
    guid = dataset.guid
    database.close()
    loaded = load_by_guid(guid, conn=connect(str(tmp_path / "data.db")))
    specs = {p.name: p for p in loaded.description.interdeps.paramspecs}
    assert specs["v0_mv"].unit == "mV" and specs["v0_mv"].label == "v0"
    assert specs["rate_hz"].unit == "Hz" and specs["delay_ps"].unit == "ps"
    assert specs["delay_ps"].label == "delay"
    assert "signal" in specs["intensity_class"].label
    assert specs["mu"].label == "mean photon number" and specs["mu"].unit == "photon/pulse"
    assert loaded.metadata["labctl_run_id"] == "r1"
    assert loaded.metadata["labctl_plan"].endswith(":plan_photons")
    assert json.loads(loaded.metadata["labctl_args"]) == {"n": 3}
    snapshot = json.loads(str(getattr(loaded, "snapshot_raw", None) or loaded.metadata["snapshot"]))
    assert snapshot["station"]["instruments"]["laser"]["power_mw"] == 1.0

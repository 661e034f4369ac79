"""Run folders, the events file, atomic writes, qcodes datasets and the calibration store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from qcodes.dataset import load_by_guid, load_by_run_spec
from qcodes.dataset.sqlite.database import connect

from labctl.documents import Document
from labctl.store import (
    Calibration,
    CalibrationStore,
    EventLog,
    RunDatabase,
    RunFolder,
    read_events,
    slugify,
    truncate_events,
)


def test_run_folder_names_and_clashes(tmp_path: Path) -> None:
    first = RunFolder.create(tmp_path, "Key Gen #1", config_text="lab: x\n", now_s=0.0)
    second = RunFolder.create(tmp_path, "Key Gen #1", now_s=0.0)
    assert first.path.name == "19700101-000000-key-gen-1"
    assert second.path.name == "19700101-000000-key-gen-1-2"
    assert first.config_path.read_text() == "lab: x\n"
    with pytest.raises(ValueError, match="needs at least one letter"):
        slugify("***")
    with pytest.raises(ValueError, match="not a run folder"):
        RunFolder.open(second.path)


def test_events_tolerate_torn_last_line_but_not_corruption(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    for seq in range(3):
        log.append(Document("event", "r", seq, 1.0, "primary", {"i": seq}))
    log.close()
    with open(path, "ab") as handle:
        handle.write(b'{"kind": "event", "seq": 3, "da')  # killed mid-write
    assert [e["seq"] for e in read_events(path)] == [0, 1, 2]
    assert truncate_events(path, 2) == 1
    assert [e["seq"] for e in read_events(path)] == [0, 1]
    path.write_bytes(b'{"seq": 0}\nnot json\n{"seq": 2}\n')
    with pytest.raises(ValueError, match=r"events.jsonl:2: corrupt event line"):
        read_events(path)


def test_checkpoint_replaced_atomically(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path, "cp")
    folder.write_checkpoint({"state": {"next": 1}})
    folder.write_checkpoint({"state": {"next": 2}})
    assert folder.read_checkpoint() == {"state": {"next": 2}}
    assert [p.name for p in folder.path.iterdir()] == ["checkpoint.json"]  # no temp left


def test_dataset_rows_survive_a_killed_writer(tmp_path: Path) -> None:
    db_path = tmp_path / "data.db"
    script = f"""
import os
from labctl.store import RunDatabase, Column
db = RunDatabase({str(db_path)!r}, "killed-run")
ds = db.create("sweep", setpoints=[Column("delay_ps", "ps")], measured=["rate_hz"])
for i in range(5):
    ds.add(delay_ps=100 * i, rate_hz=float(i * i))
print(ds.guid, flush=True)
os.kill(os.getpid(), 9)
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -9, proc.stderr
    guid = proc.stdout.strip()
    loaded = load_by_guid(guid, conn=connect(str(db_path)))
    data = loaded.get_parameter_data()["rate_hz"]
    assert data["delay_ps"].tolist() == [0, 100, 200, 300, 400]
    assert data["rate_hz"].tolist() == [0.0, 1.0, 4.0, 9.0, 16.0]
    by_spec = load_by_run_spec(captured_run_id=1, conn=connect(str(db_path)))
    assert by_spec.guid == guid and by_spec.exp_name == "killed-run"
    assert by_spec.paramspecs["delay_ps"].unit == "ps"


def test_dataset_rejects_bad_columns_and_rolls_back(tmp_path: Path) -> None:
    db = RunDatabase(tmp_path / "data.db", "r")
    with pytest.raises(ValueError, match="'index': is an SQL keyword"):
        db.create("bad", setpoints=["index"], measured=["v"])
    with pytest.raises(ValueError, match="must be a Python identifier"):
        db.create("bad2", measured=["rate hz"])
    ds = db.create("ok", measured=["v"])
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['w'\]"):
        ds.add(w=1.0)
    for i in range(6):
        ds.add(v=float(i))
    assert ds.last_row_id() == 6
    assert ds.rollback_to(4) == 2
    assert ds.read()["v"]["v"].tolist() == [0.0, 1.0, 2.0, 3.0]
    db.close()


def test_calibration_store_keeps_latest_with_expiry(tmp_path: Path) -> None:
    store = CalibrationStore(tmp_path / "cal" / "calibration.json")
    assert store.latest("pc-bob", "polarization") is None
    store.save(
        Calibration(
            "pc-bob", "polarization", {"voltages_mv": [1, 2, 3, 4]}, 10.0, 1810.0, {"run_id": "r1"}
        )
    )
    store.save(
        Calibration(
            "pc-bob", "polarization", {"voltages_mv": [5, 6, 7, 8]}, 20.0, 1820.0, {"run_id": "r2"}
        )
    )
    latest = store.latest("pc-bob", "polarization")
    assert latest is not None and latest.provenance == {"run_id": "r2"}
    assert store.valid("pc-bob", "polarization", 1819.0) == latest
    assert store.valid("pc-bob", "polarization", 1820.0) is None
    with pytest.raises(ValueError, match="expires_s"):
        store.save(Calibration("x", "k", {}, 5.0, 5.0))
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert os.listdir(tmp_path / "cal") == ["calibration.json"]

"""A key-generation run's qcodes datasets, read back by qcodes' own loader from data.db.

Per-block figures (one row per block, no key material) and the synchronization, each with
units and labels on every parameter, the station snapshot and the run's metadata.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from qcodes.dataset import load_by_guid
from qcodes.dataset.sqlite.database import connect

from experiments.keygen.block_dataset import DATASET, block_row
from experiments.sync import synchronize
from labctl.runner.engine import RunEngine
from labctl.station import Station, load_config
from labctl.store.datasets import INDEX_COLUMNS
from tests.experiments.keygen.keygen_helpers import run_keygen, store_rows, write_config


def _datasets(run_dir: Path) -> dict[str, object]:
    guids = json.loads((run_dir / "metadata.json").read_text())["datasets"]
    conn = connect(str(run_dir / "data.db"))
    return {name: load_by_guid(guid, conn=conn) for name, guid in guids.items()}


def _check_described(name: str, dataset: object, run_id: str) -> None:
    specs = dataset.paramspecs  # type: ignore[attr-defined]
    for param, spec in specs.items():
        assert spec.label, (name, param)
        assert spec.unit or param in INDEX_COLUMNS or param == "key_stored", (name, param)
    assert dataset.metadata["labctl_run_id"] == run_id  # type: ignore[attr-defined]
    snapshot = dataset.snapshot  # type: ignore[attr-defined]
    assert "tagger-bob" in snapshot["station"]["instruments"], name


async def test_key_blocks_dataset_has_one_row_per_block_with_units(tmp_path: Path) -> None:
    result = await run_keygen(write_config(tmp_path), duration_s=1.5)
    assert result.status == "ok", result.reason
    summary = json.loads((result.path / "summary.json").read_text())
    blocks = _datasets(result.path)[DATASET]
    _check_described(DATASET, blocks, result.run_id)
    specs = blocks.paramspecs  # type: ignore[attr-defined]
    assert specs["secret_bits"].unit == "bit" and specs["acquired_s"].unit == "s"
    assert specs["secret_key_rate_bps"].unit == "bit/s" and specs["qber_z"].unit == "1"
    data = blocks.get_parameter_data()  # type: ignore[attr-defined]
    rows = data["secret_bits"]
    assert rows["block"].tolist() == [0, 1]
    assert int(rows["secret_bits"].sum()) == summary["secret_bits"] > 0
    assert data["key_stored"]["key_stored"].tolist() == [1, 1]
    assert int(data["pulses"]["pulses"].sum()) == summary["pulses"]
    assert all(0.005 < q < 0.03 for q in data["qber_z"]["qber_z"].tolist())
    # No key material: the dataset file holds no byte string of any stored key.
    raw = (result.path / "data.db").read_bytes()
    for key_id, _, key in store_rows(tmp_path / "runs" / "keys-bob.sqlite"):
        assert key_id.encode() not in raw and key[:16] not in raw


def test_block_row_of_a_failed_block_keeps_nan_for_what_it_never_measured() -> None:
    event = {"block": 3, "status": "failed", "pulses": 100, "qber_z": None, "secret_bits": 0}
    row = block_row(event)
    assert row["block"] == 3 and row["key_stored"] == 0 and row["pulses"] == 100.0
    assert math.isnan(row["qber_z"]) and math.isnan(row["ec_efficiency"])


async def test_sync_dataset_holds_each_synchronization(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    station = Station.from_config(config)
    async with station:
        engine = RunEngine(station, runs_dir=Path(config.storage.runs_dir))

        async def twice(run: object) -> list[float]:
            return [(await synchronize(run)).offset_ps for _ in range(2)]  # type: ignore[arg-type]

        result = await engine.run(twice, name="sync-twice")
    assert result.status == "ok", result.reason
    sync = _datasets(result.path)["sync"]
    _check_described("sync", sync, result.run_id)
    specs = sync.paramspecs  # type: ignore[attr-defined]
    assert specs["offset_ps"].unit == "ps" and specs["drift_ppb"].unit == "ppb"
    rows = sync.get_parameter_data()["offset_ps"]  # type: ignore[attr-defined]
    assert rows["attempt"].tolist() == [0, 1]
    assert rows["offset_ps"].tolist() == pytest.approx(result.result, rel=1e-12)

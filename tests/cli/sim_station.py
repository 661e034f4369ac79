"""configs/sim.yaml copied into a test folder, its stores and runs kept there."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def write_sim_config(tmp_path: Path, *, short_link: bool = False) -> Path:
    """tmp_path/sim.yaml; ``short_link``: 2 km of fiber and short calibrations, so that a
    5e7-pulse block every second of run clock gives key within seconds of wall time."""
    data = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text(encoding="utf-8"))
    if short_link:
        data["world"]["settings"]["fiber"]["length_km"] = 2.0
        data["calibration"]["link"]["fiber_loss_db"] = 0.4
        data["calibration"]["detectors"] = {"dark_integration_s": 1.0}
        data["calibration"]["switch"] = {"integration_s": 0.2}
        data["qkd"] = {"block_pulses": 50_000_000, "block_interval_s": 1.0}
    data["storage"] = {
        "runs_dir": "runs",
        "calibration_store": "runs/calibration.json",
        "key_store": "runs/keys.sqlite",
    }
    data.pop("kme", None)
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path

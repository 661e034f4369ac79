"""``labctl calibrate`` as a technician runs it: a real subprocess on the simulated station."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.experiments.calibration.cal_helpers import REPO, station_file


def _labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labctl", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_calibrate_all_passes_on_the_default_scenario(tmp_path: Path) -> None:
    done = _labctl("calibrate", "all", str(station_file(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if "PASS" in line or "FAIL" in line]
    names = ["delays", "detectors", "polarization", "mean_photon_number", "switch"]
    assert [next(n for n in names if n in row) for row in rows] == names
    assert all("PASS" in row for row in rows)
    store = json.loads((tmp_path / "calibration.json").read_text())
    assert len(store) == 5


def test_calibrate_fails_with_exit_1_and_reason(tmp_path: Path) -> None:
    path = station_file(tmp_path, {"calibration": {"link": {"bob_port": 3}}})
    done = _labctl("calibrate", str(path), "switch")
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "switch on the wrong port" in done.stdout


def test_calibrate_bad_input_exits_2(tmp_path: Path) -> None:
    done = _labctl("calibrate", "focus", "--config", str(station_file(tmp_path)))
    assert done.returncode == 2 and "unknown calibration 'focus'" in done.stderr
    path = station_file(tmp_path, {"calibration": {"switch": {"max_crostalk_db": -40}}})
    done = _labctl("calibrate", "all", "--config", str(path))
    assert done.returncode == 2
    assert "calibration.switch.max_crostalk_db" in done.stderr
    assert "did you mean 'max_crosstalk_db'" in done.stderr

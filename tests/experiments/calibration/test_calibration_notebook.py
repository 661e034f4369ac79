"""notebooks/calibration.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.testing.notebooks import execute_notebook, inline_images

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def test_calibration_notebook_executes(tmp_path: Path) -> None:
    env = {"LABCTL_REPO": str(REPO), "LABCTL_RUNS_DIR": str(tmp_path), "LABCTL_PROGRESS": "0"}
    notebook = execute_notebook(REPO / "notebooks" / "calibration.ipynb", env=env, timeout_s=240)
    assert inline_images(notebook) == 2  # delay histograms and the polarization search
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-calibration")
    assert len(list(tmp_path.glob("calibration.json"))) == 1

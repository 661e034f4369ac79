"""notebooks/calibration.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "runner"))
from test_runner_notebook import _kernel_name  # noqa: E402  (the runner tests' kernel helper)

pytestmark = pytest.mark.slow


def test_calibration_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_REPO", str(REPO))
    monkeypatch.setenv("LABCTL_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("LABCTL_PROGRESS", "0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(REPO / "notebooks" / "calibration.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name=_kernel_name(),
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    client.execute()
    outputs = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-calibration")
    assert len(list(tmp_path.glob("calibration.json"))) == 1

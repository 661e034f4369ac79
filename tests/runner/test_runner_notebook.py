"""notebooks/runner.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _kernel_name() -> str:
    # ipykernel registers this interpreter's own kernel as "python3"; a fresh CI machine
    # needs no `ipykernel install` for that.
    specs = KernelSpecManager().find_kernel_specs()
    if "python3" not in specs:
        pytest.fail(f"no python3 kernel spec for {sys.executable}; found {sorted(specs)}")
    return "python3"


def test_runner_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_REPO", str(REPO))
    monkeypatch.setenv("LABCTL_RUNS_DIR", str(tmp_path))
    # nbclient's emulation of rich's live ipywidget is racy under load; bars stay off here.
    monkeypatch.setenv("LABCTL_PROGRESS", "0")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(REPO / "notebooks" / "runner.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name=_kernel_name(),
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    )
    client.execute()
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-notebook-demo")
    outputs = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]

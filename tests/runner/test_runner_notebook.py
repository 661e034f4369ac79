"""notebooks/runner.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.testing.notebooks import execute_notebook, inline_images

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_runner_notebook_executes(tmp_path: Path) -> None:
    # nbclient's emulation of rich's live ipywidget is racy under load; bars stay off here.
    env = {"LABCTL_REPO": str(REPO), "LABCTL_RUNS_DIR": str(tmp_path), "LABCTL_PROGRESS": "0"}
    notebook = execute_notebook(REPO / "notebooks" / "runner.ipynb", env=env)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-notebook-demo")
    assert inline_images(notebook) == 1  # the count-rate plot, shown in the notebook

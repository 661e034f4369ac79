"""notebooks/key_rate_vs_distance.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nbformat
import pytest
from keygen_helpers import ROOT
from nbclient import NotebookClient

pytestmark = pytest.mark.slow


def _kernel_name() -> str:
    """The python3 kernel check shared with tests/runner/test_runner_notebook.py."""
    path = ROOT / "tests" / "runner" / "test_runner_notebook.py"
    spec = importlib.util.spec_from_file_location("_runner_notebook_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    name: str = module._kernel_name()
    return name


def test_key_rate_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_REPO", str(ROOT))
    monkeypatch.setenv("LABCTL_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(ROOT / "notebooks" / "key_rate_vs_distance.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name=_kernel_name(),
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    client.execute()
    outputs = [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
    ]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figure = tmp_path / "key_rate_vs_distance.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000
    points = json.loads((tmp_path / "key_rate_vs_distance.json").read_text())
    assert [p["distance_km"] for p in points] == [0.0, 25.0, 50.0, 75.0, 100.0]
    for p in points:
        # Within counting error of the squashed-receiver formula (z < 3.5 over five points),
        # and of the plain formula up to the double-click term.
        assert abs(p["estimate"] - p["squashed_formula"]) < 3.5 * p["stderr"], p
        systematic = abs(p["squashed_formula"] - p["formula"])
        assert abs(p["estimate"] - p["formula"]) < 3.5 * p["stderr"] + systematic, p
        if p["plob"] is not None:
            assert p["estimate"] < p["plob"]
    # The rate falls with distance (0.21 dB/km: a factor ~10 per 50 km).
    rates = [p["estimate"] for p in points]
    assert rates == sorted(rates, reverse=True)

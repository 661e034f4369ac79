"""notebooks/key_rate_vs_distance.ipynb runs top to bottom in a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.testing.notebooks import execute_notebook, inline_images
from tests.experiments.keygen.keygen_helpers import ROOT

pytestmark = pytest.mark.slow


def test_key_rate_notebook_executes(tmp_path: Path) -> None:
    env = {"LABCTL_REPO": str(ROOT), "LABCTL_RUNS_DIR": str(tmp_path)}
    notebook = execute_notebook(ROOT / "notebooks" / "key_rate_vs_distance.ipynb", env=env)
    assert inline_images(notebook) == 1  # the figure is shown inline and saved
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

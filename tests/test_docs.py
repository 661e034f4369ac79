"""The docs site builds with ``mkdocs build --strict`` and the README points into it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.cli.schema import station_schema

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mkdocs_build_strict_generates_the_config_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    reference = (site / "reference" / "config" / "index.html").read_text(encoding="utf-8")
    schema = station_schema()
    for key in [*schema["properties"], *schema["$defs"]]:
        assert f"<code>{key}</code>" in reference, key
    # Sections validated by the plans come from their settings classes.
    for key in ("suspend_qber", "max_ppm", "max_dark_rate_hz"):
        assert key in reference, key
    technician = (site / "guides" / "technician" / "index.html").read_text(encoding="utf-8")
    assert "{{ calibration_limits }}" not in technician
    assert "detectors.max_dark_rate_hz" in technician
    api = (site / "reference" / "api" / "interfaces" / "index.html").read_text(encoding="utf-8")
    assert "labctl.interfaces.devices.Laser" in api and "set_power_mw" in api
    search = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    assert any("architecture" in doc["location"] for doc in search["docs"])


def test_readme_links_stay_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)", text)
    assert "docs/architecture.md" in targets
    for target in targets:
        assert not target.startswith(("../", "/")), target
        assert (ROOT / target).exists(), target
    assert "../" not in text

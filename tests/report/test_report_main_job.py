"""The report of a real main-job run (``labctl run sim.yaml --duration ...``), opened in
headless Chromium: every figure decodes and the page renders them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from labctl.cli.main import main
from tests.report.report_helpers import external_references, png_sizes

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
# Written into a copy of the page only: the report itself carries no script.
PROBE = (
    "<script>window.addEventListener('load', () => { document.body.dataset.images = "
    "Array.from(document.images).map(i => i.complete + ':' + i.naturalWidth + 'x' + "
    "i.naturalHeight).join(' '); });</script>"
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short main job through the real CLI (calibration, sync, a few 1 s blocks)."""
    tmp = tmp_path_factory.mktemp("main-job")
    data: dict[str, Any] = yaml.safe_load((REPO / "configs" / "sim.yaml").read_text())
    data["qkd"] = {"block_interval_s": 1.0}
    (tmp / "configs").mkdir()
    config = tmp / "configs" / "sim.yaml"
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "run", str(config), "--duration", "19s"],
        cwd=tmp,
        env=dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="120"),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = next(p for p in (tmp / "runs").iterdir() if p.name.endswith("-main"))
    assert f"report: {run_dir / 'report.html'}" in done.stdout
    return run_dir


def test_the_main_job_writes_a_self_contained_report(main_run: Path) -> None:
    html = (main_run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((main_run / "summary.json").read_text())
    assert summary["blocks"] >= 2 and summary["secret_bits"] > 0
    assert f"{100 * summary['qber_z']:.3f} %" in html
    assert f"{summary['secret_bits']:,} bits" in html
    for routine in ("delays", "detectors", "polarization", "mean_photon_number", "switch"):
        assert f"<td>{routine}</td>" in html, routine
    for title in ("QBER per block", "Sifted and secret key", "Clock synchronization"):
        assert title in html, title
    # timeline, QBER, key, detectors, sync and one figure per calibration dataset
    sizes = png_sizes(html)
    assert len(sizes) == 5 + len(json.loads((main_run / "metadata.json").read_text())["datasets"])
    assert external_references(html) == []
    for key_id in summary["key_ids"]:  # key ids stay in summary.json and the key stores
        assert key_id not in html


def test_labctl_report_rebuilds_the_same_sections(main_run: Path, capsys: Any) -> None:
    first = (main_run / "report.html").read_text(encoding="utf-8")
    (main_run / "report.html").unlink()
    assert main(["report", str(main_run)]) == 0
    assert capsys.readouterr().out.strip().endswith("report.html")
    again = (main_run / "report.html").read_text(encoding="utf-8")
    headings = re.compile(r"<h2>[^<]*</h2>")
    assert headings.findall(again) == headings.findall(first)
    assert len(png_sizes(again)) == len(png_sizes(first))


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed: install the Debian package chromium (.ci/run does)")


def _browser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ, HOME=os.environ.get("HOME", "/tmp")),
    )


def test_chromium_decodes_every_image(main_run: Path, tmp_path: Path) -> None:
    html = (main_run / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _browser("--dump-dom", probe.as_uri())
    match = re.search(r'data-images="([^"]*)"', done.stdout)
    assert match is not None, done.stdout[-2000:] + done.stderr[-2000:]
    images = match.group(1).split()
    expected = png_sizes(html)
    assert len(images) == len(expected)
    for seen, (width, height) in zip(images, expected, strict=True):
        assert seen == f"true:{width}x{height}"


def test_chromium_screenshot_shows_the_figures(main_run: Path, tmp_path: Path) -> None:
    from matplotlib.image import imread

    shot = tmp_path / "report.png"
    done = _browser(
        "--window-size=1000,3000", f"--screenshot={shot}", (main_run / "report.html").as_uri()
    )
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(imread(shot))[..., :3]
    assert pixels.shape[:2] == (3000, 1000)
    not_white = (pixels < 0.95).any(axis=2)
    # The figures' lines and bars: matplotlib's blue (#1f77b4) covers a visible area.
    blue = (np.abs(pixels - np.array([0x1F, 0x77, 0xB4]) / 255.0) < 0.08).all(axis=2)
    assert not_white.mean() > 0.05 and blue.sum() > 5000

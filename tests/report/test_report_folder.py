"""The run report of a run folder written by the real RunEngine (a short plan, no station)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from labctl.cli.main import main
from labctl.interfaces import Clock, WallClock
from labctl.report import REPORT_FILE, build_report, read_run, write_report_logged
from labctl.report.series import run_series
from labctl.runner.engine import RunEngine, RunResult
from tests.report.report_helpers import external_references, png_sizes

FAULTS = [{"kind": "disconnect", "at_s": 0.0, "duration_s": 5.0}]


@dataclass
class NoInstruments:
    """A station with no instruments: the runner needs only a clock and a mapping."""

    instruments: dict[str, Any] = field(default_factory=dict)
    clock: Clock = field(default_factory=WallClock)


async def _plan(run: Any) -> None:
    """What key generation writes, in miniature: calibration, sync, blocks, an alarm."""
    ds = run.database.create("cal_switch", measured=["port", "rate_hz", "signal_hz"])
    ds.add_many([{"port": p, "rate_hz": r, "signal_hz": r} for p, r in ((1, 7e7), (2, 700.0))])
    run.emit("calibration", {"routine": "switch", "passed": True, "reason": "ok", "loss_db": 0.7})
    run.emit("calibration", {"routine": "polarization", "passed": False, "reason": "QBER 9 %"})
    run.emit("sync", {"offset_ps": 1234567.0, "drift_ppb": 200.0})
    for block in range(3):
        run.emit(
            "qkd",
            {
                "block": block,
                "status": "key" if block < 2 else "aborted",
                "reason": "stored" if block < 2 else "QBER above limit",
                "pulses": 100_000_000,
                "detections": 3_700_000,
                "sifted_bits": 1_850_000,
                "secret_bits": 50_000 if block < 2 else 0,
                "qber_z": 0.017,
                "qber_x": 0.018 if block < 2 else 0.2,
                "acquired_s": 0.1,
            },
        )
    run.emit("sync", {"offset_ps": 1234568.5, "drift_ppb": 200.1})
    run.emit("alarm", {"severity": "error", "message": "detector Z1 latched"})
    run.log.warning("polarization drifting")


async def _run(tmp_path: Path) -> RunResult:
    engine = RunEngine(
        NoInstruments(),
        runs_dir=tmp_path / "runs",
        config={"instruments": {"laser": {"settings": {"faults": FAULTS}}}},
    )
    result = await engine.run(_plan, name="main")
    assert result.status == "ok", result.reason
    return result


async def test_report_shows_blocks_calibration_sync_alarms_and_faults(tmp_path: Path) -> None:
    result = await _run(tmp_path)
    path = build_report(result.path)
    assert path == result.path / REPORT_FILE
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and f"Run {result.run_id}: ok" in html
    for text in (
        "QBER per block",
        "Sifted and secret key",
        "Detector counts",
        "Clock synchronization",
        "Alarms and faults",
        "detector Z1 latched",
        "block 2: aborted (QBER above limit)",
        "fault disconnect via laser",
        "polarization FAILED: QBER 9 %",
        "polarization drifting",  # the run log's warning
        "cal_switch",
    ):
        assert text in html, text
    sizes = png_sizes(html)
    # timeline, QBER, key, detectors, sync, one dataset
    assert len(sizes) == 6 and all(w >= 600 and h >= 100 for w, h in sizes)
    assert external_references(html) == []


async def test_series_keep_run_time_and_fault_windows(tmp_path: Path) -> None:
    result = await _run(tmp_path)
    series = run_series(read_run(result.path))
    assert [b.block for b in series.blocks] == [0, 1, 2]
    assert [p.offset_ps for p in series.sync] == [1234567.0, 1234568.5]
    assert [(c.routine, c.passed) for c in series.calibrations] == [
        ("switch", True),
        ("polarization", False),
    ]
    fault = next(i for i in series.incidents if i.source == "fault")
    # The wall clock's start is far from 0, so the fault (at_s 0 on that clock) lies before.
    assert fault.until_s is not None and fault.until_s - fault.t_s == pytest.approx(5.0)
    severities = {i.source: i.severity for i in series.incidents if i.source != "calibration"}
    assert severities["alarm"] == "error" and severities["qkd"] == "warning"
    assert series.incidents == sorted(series.incidents, key=lambda i: i.t_s)


async def test_labctl_report_rebuilds_the_page(tmp_path: Path, capsys: Any) -> None:
    result = await _run(tmp_path)
    assert main(["report", str(result.path)]) == 0
    assert capsys.readouterr().out.strip() == str(result.path / REPORT_FILE)
    assert "Clock synchronization" in (result.path / REPORT_FILE).read_text(encoding="utf-8")


def test_labctl_report_names_a_folder_that_is_no_run(tmp_path: Path, capsys: Any) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_report_failure_is_logged_and_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        assert write_report_logged(tmp_path / "missing") is None
    assert "run report for" in caplog.text and "not a run folder" in caplog.text
    assert not (tmp_path / "missing" / REPORT_FILE).exists()


async def test_report_of_a_run_that_failed_before_any_block(tmp_path: Path) -> None:
    async def fails(run: Any) -> None:
        raise RuntimeError("laser interlock open")

    result = await RunEngine(NoInstruments(), runs_dir=tmp_path).run(fails, name="main")
    assert result.status == "failed"
    html = build_report(result.path).read_text(encoding="utf-8")
    assert "run stopped: failed (RuntimeError: laser interlock open)" in html
    assert "No calibration in this run." in html
    assert len(png_sizes(html)) == 1  # the timeline only


def test_a_long_run_lists_the_first_and_last_incidents_and_draws_them_all() -> None:
    from labctl.report import figures, page
    from labctl.report.series import Incident

    incidents = [Incident(float(t), "qkd", "warning", f"block {t}: no-key") for t in range(5000)]
    html = page.incident_section(incidents, ["w"] * 3, log_total=1500)
    assert html.count("<tr>") == 1 + page.MAX_INCIDENT_ROWS
    assert "block 0: no-key" in html and "block 4999: no-key" in html
    assert "block 2500: no-key" not in html
    assert f"{5000 - page.MAX_INCIDENT_ROWS} entries in the middle" in html
    assert "1500 warning/error line(s) in run.log, the last 3 shown" in html
    figure = figures.timeline(incidents, 5000.0, [])
    assert figure.caption == "5000 entries" and figure.data_uri.startswith("data:image/png")

"""A plan that finishes short of its purpose ends ``degraded`` (never ``ok``), and a
degraded run is finished: nothing to resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labctl.runner.engine import RunEngine
from labctl.runner.scheduler import Scheduler, TaskStatus
from labctl.store.events import read_events
from tests.runner.runner_fixtures import degraded_plan


@pytest.mark.parametrize("via", ["call", "summary"])
async def test_degraded_is_a_final_status(marker_station, tmp_path: Path, via: str) -> None:
    engine = RunEngine(marker_station, runs_dir=tmp_path / "runs")
    result = await engine.run(degraded_plan, args={"via": via})
    assert result.status == "degraded"
    assert result.reason == "only 1 of 10 blocks gave key"
    assert result.result == {"blocks": 10}
    stop = [e for e in read_events(result.path / "events.jsonl") if e["kind"] == "stop"]
    assert stop[0]["data"]["exit_status"] == "degraded"
    assert json.loads((result.path / "metadata.json").read_text())["status"] == "degraded"
    with pytest.raises(ValueError, match="finished degraded; nothing to resume"):
        await engine.resume(result.path, degraded_plan)


async def test_scheduler_counts_a_degraded_run_apart(marker_station, tmp_path: Path) -> None:
    scheduler = Scheduler(RunEngine(marker_station, runs_dir=tmp_path / "runs"))
    task = scheduler.submit("keygen", degraded_plan)
    await scheduler.run_until(marker_station.clock.now_s() + 0.5, idle_step_s=0.05)
    assert task.status is TaskStatus.DEGRADED

"""Scheduler: priorities, FIFO within a priority, periodic tasks on the virtual clock."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from labctl.runner.engine import RunEngine
from labctl.runner.scheduler import Scheduler, TaskStatus
from sims.clock import VirtualClock
from tests.runner.runner_fixtures import MiniStation


async def test_priorities_and_periodic_recalibration(tmp_path: Path) -> None:
    clock = VirtualClock()
    order: list[tuple[str, float]] = []

    def plan_named(name: str, work_s: float, fail: bool = False) -> Any:
        async def plan(run: Any) -> None:
            order.append((name, run.clock.now_s()))
            await run.sleep(work_s)
            if fail:
                raise RuntimeError("broken")

        return plan

    scheduler = Scheduler(RunEngine(MiniStation({}, clock), runs_dir=tmp_path))
    low = scheduler.submit("low", plan_named("low", 60.0), priority=0)
    scheduler.submit("high-a", plan_named("high-a", 60.0), priority=5)
    scheduler.submit("high-b", plan_named("high-b", 60.0, fail=True), priority=5)
    dropped = scheduler.submit("dropped", plan_named("dropped", 1.0))
    scheduler.cancel(dropped)
    scheduler.every("recal", plan_named("recal", 10.0), every_s=1800.0)
    history = await scheduler.run_until(3 * 3600.0)

    names = [name for name, _t in order]
    assert names[:3] == ["high-a", "high-b", "low"]
    recal_times = [t for name, t in order if name == "recal"]
    assert len(recal_times) == 5  # at 30, 60, 90, 120, 150 min (+ the 10 s each takes)
    assert all(abs(b - a - 1800.0) < 11.0 for a, b in itertools.pairwise(recal_times))
    assert dropped.status is TaskStatus.CANCELLED and "dropped" not in names
    assert low.status is TaskStatus.DONE
    assert [t.status for t in history if t.name == "high-b"] == [TaskStatus.FAILED]
    scheduler.trigger("recal")
    await scheduler.run_until(clock.now_s() + 1.0)
    assert [name for name, _t in order][-1] == "recal"

"""A queue of plans for unattended operation: priorities, FIFO within a priority, periodic.

Each task runs as its own run (its own folder) through the RunEngine, one at a time.
Periodic tasks (e.g. recalibrate every 30 min of run clock) re-queue themselves when due;
``trigger(name)`` queues a periodic task at once (what a suspender or operator asks for).
Task states follow ARTIQ's scheduler: pending -> running -> done / failed / cancelled.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from labctl.runner.engine import RunEngine, RunResult
from labctl.runner.plans import Plan


class TaskStatus(Enum):
    """Life of a scheduled task."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEGRADED = "degraded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_TASK_STATUS = {"ok": TaskStatus.DONE, "degraded": TaskStatus.DEGRADED}


@dataclass(slots=True)
class ScheduledTask:
    """One queued plan run."""

    name: str
    plan: Plan
    priority: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.PENDING
    result: RunResult | None = None


@dataclass(slots=True)
class _Periodic:
    name: str
    plan: Plan
    every_s: float
    priority: int
    next_s: float


class Scheduler:
    """Runs queued and periodic plans in priority order on one engine."""

    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine
        self.clock = engine.station.clock
        self._queue: list[tuple[int, int, ScheduledTask]] = []
        self._order = itertools.count()
        self._periodic: dict[str, _Periodic] = {}
        self.history: list[ScheduledTask] = []

    def submit(
        self, name: str, plan: Plan, *, priority: int = 0, args: dict[str, Any] | None = None
    ) -> ScheduledTask:
        """Queue ``plan``; higher ``priority`` runs first, equal priorities in order."""
        task = ScheduledTask(name, plan, priority, dict(args or {}))
        heapq.heappush(self._queue, (-priority, next(self._order), task))
        return task

    def every(self, name: str, plan: Plan, every_s: float, *, priority: int = 10) -> None:
        """Run ``plan`` every ``every_s`` seconds of run clock (first after one period)."""
        if every_s <= 0:
            raise ValueError(f"periodic task {name!r}: every_s must be > 0, got {every_s}")
        self._periodic[name] = _Periodic(
            name, plan, every_s, priority, self.clock.now_s() + every_s
        )

    def trigger(self, name: str) -> ScheduledTask:
        """Queue periodic task ``name`` now (restarting its period)."""
        periodic = self._periodic.get(name)
        if periodic is None:
            raise KeyError(f"no periodic task {name!r} (known: {sorted(self._periodic)})")
        periodic.next_s = self.clock.now_s() + periodic.every_s
        return self.submit(name, periodic.plan, priority=periodic.priority)

    def cancel(self, task: ScheduledTask) -> None:
        """Drop a pending task (a running one is stopped through its RunControl instead)."""
        if task.status is TaskStatus.PENDING:
            task.status = TaskStatus.CANCELLED

    def _queue_due(self) -> None:
        now_s = self.clock.now_s()
        for periodic in self._periodic.values():
            if now_s >= periodic.next_s:
                periodic.next_s = now_s + periodic.every_s
                self.submit(periodic.name, periodic.plan, priority=periodic.priority)

    def _pop(self) -> ScheduledTask | None:
        while self._queue:
            _prio, _n, task = heapq.heappop(self._queue)
            if task.status is TaskStatus.PENDING:
                return task
        return None

    async def run_until(self, until_s: float, *, idle_step_s: float = 1.0) -> list[ScheduledTask]:
        """Run tasks until the run clock reaches ``until_s``; sleeps ``idle_step_s`` when idle."""
        while self.clock.now_s() < until_s:
            self._queue_due()
            task = self._pop()
            if task is None:
                await self.clock.sleep(min(idle_step_s, until_s - self.clock.now_s()))
                continue
            task.status = TaskStatus.RUNNING
            task.result = await self.engine.run(task.plan, name=task.name, args=task.args)
            task.status = _TASK_STATUS.get(task.result.status, TaskStatus.FAILED)
            self.history.append(task)
        return self.history

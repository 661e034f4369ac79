"""A queue of plans for unattended operation: priorities, FIFO within a priority, periodic.

Each task runs as its own run (its own folder) through the RunEngine, one at a time.
Periodic tasks (e.g. recalibrate every 30 min of run clock) re-queue themselves when due;
``trigger(name)`` queues a periodic task at once (what a suspender or operator asks for).
Timed tasks (:meth:`Scheduler.at`) start at a wall-clock time of day and repeat (see
:mod:`labctl.runner.triggers`); :meth:`Scheduler.recalibrate_on_expiry` queues a
calibration plan when the calibration store's earliest entry is about to expire.
Task states follow ARTIQ's scheduler: pending -> running -> done / degraded / failed /
cancelled.

Everything is read on the engine's station clock, so the same schedule runs on the wall
clock in the lab and on the virtual clock in tests (hours of schedule in a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine, RunResult
from labctl.runner.plans import Plan
from labctl.runner.triggers import Trigger
from labctl.store.calibration import CalibrationStore

log = logging.getLogger(__name__)


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
    duration_s: float | None = None
    """Run-clock limit of the run (None: until the plan ends)."""


@dataclass(slots=True)
class _Periodic:
    name: str
    plan: Plan
    every_s: float
    priority: int
    next_s: float


@dataclass(slots=True)
class _Timed:
    name: str
    plan: Plan
    trigger: Trigger
    next_s: float | None
    priority: int
    args: dict[str, Any]
    duration_s: float | None
    started: int = 0


@dataclass(slots=True)
class _ExpiryWatch:
    name: str
    plan: Plan
    store: CalibrationStore
    margin_s: float
    retry_s: float
    priority: int
    queued_for_s: float | None = None  # the expiry time last acted on
    queued_at_s: float = -math.inf


class Scheduler:
    """Runs queued and periodic plans in priority order on one engine."""

    def __init__(
        self,
        engine: RunEngine,
        *,
        control_factory: Callable[[], RunControl] | None = None,
        run_timeout_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.run_timeout_s = run_timeout_s
        """Wall-clock limit of every run (None: none beyond each run's duration)."""
        self._new_control = control_factory or RunControl
        self.clock = engine.station.clock
        self._queue: list[tuple[int, int, ScheduledTask]] = []
        self._order = itertools.count()
        self._periodic: dict[str, _Periodic] = {}
        self._timed: list[_Timed] = []
        self._expiry: _ExpiryWatch | None = None
        self._stop = asyncio.Event()
        self.current: RunControl | None = None
        """The RunControl of the task running now (None between tasks)."""
        self.history: list[ScheduledTask] = []

    def submit(
        self,
        name: str,
        plan: Plan,
        *,
        priority: int = 0,
        args: dict[str, Any] | None = None,
        duration_s: float | None = None,
    ) -> ScheduledTask:
        """Queue ``plan``; higher ``priority`` runs first, equal priorities in order."""
        task = ScheduledTask(name, plan, priority, dict(args or {}), duration_s=duration_s)
        heapq.heappush(self._queue, (-priority, next(self._order), task))
        return task

    def every(self, name: str, plan: Plan, every_s: float, *, priority: int = 10) -> None:
        """Run ``plan`` every ``every_s`` seconds of run clock (first after one period)."""
        if every_s <= 0:
            raise ValueError(f"periodic task {name!r}: every_s must be > 0, got {every_s}")
        self._periodic[name] = _Periodic(
            name, plan, every_s, priority, self.clock.now_s() + every_s
        )

    def at(
        self,
        name: str,
        plan: Plan,
        trigger: Trigger,
        *,
        priority: int = 0,
        args: dict[str, Any] | None = None,
        duration_s: float | None = None,
    ) -> float:
        """Queue ``plan`` whenever ``trigger`` says; returns the first start (clock seconds)."""
        first_s = trigger.first_s(self.clock.now_s())
        self._timed.append(
            _Timed(name, plan, trigger, first_s, priority, dict(args or {}), duration_s)
        )
        return first_s

    def recalibrate_on_expiry(
        self,
        name: str,
        plan: Plan,
        store: CalibrationStore,
        *,
        margin_s: float = 0.0,
        retry_s: float = 600.0,
        priority: int = 20,
    ) -> None:
        """Queue ``plan`` when the store's earliest calibration expires (``margin_s`` early).

        The store decides: after the plan has saved fresh calibrations, the next expiry is
        theirs. If the plan ran and the same expiry still stands (it failed), it is queued
        again after ``retry_s``, not in a loop.
        """
        if margin_s < 0 or retry_s <= 0:
            raise ValueError(f"{name}: margin_s must be >= 0 and retry_s > 0")
        self._expiry = _ExpiryWatch(name, plan, store, margin_s, retry_s, priority)

    def next_expiry_s(self) -> float | None:
        """The earliest expiry in the watched calibration store (None: nothing to renew)."""
        if self._expiry is None:
            return None
        found = [c.expires_s for c in self._expiry.store.all()]
        return min(found) if found else None

    def stop(self, reason: str = "scheduler stopped") -> None:
        """Start no further task and abort the running one at its next checkpoint."""
        self._stop.set()
        if self.current is not None:
            self.current.abort(reason)

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

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
        for timed in self._timed:
            if timed.next_s is not None and now_s >= timed.next_s:
                timed.started += 1
                self.submit(
                    timed.name,
                    timed.plan,
                    priority=timed.priority,
                    args=timed.args,
                    duration_s=timed.duration_s,
                )
                done = timed.trigger.count is not None and timed.started >= timed.trigger.count
                timed.next_s = None if done else timed.trigger.next_s(timed.next_s, now_s)
        self._queue_expired(now_s)

    def _queue_expired(self, now_s: float) -> None:
        watch = self._expiry
        expires_s = self.next_expiry_s()
        if watch is None or expires_s is None or now_s < expires_s - watch.margin_s:
            return
        if watch.queued_for_s == expires_s and now_s < watch.queued_at_s + watch.retry_s:
            return  # queued for this expiry already: wait for that run (or the retry)
        log.info("calibration expires at %.0f s: queueing %s", expires_s, watch.name)
        watch.queued_for_s, watch.queued_at_s = expires_s, now_s
        self.submit(watch.name, watch.plan, priority=watch.priority)

    def _next_due_s(self) -> float:
        """The clock time of the next periodic, timed or expiry start (inf: none)."""
        times = [p.next_s for p in self._periodic.values()]
        times += [t.next_s for t in self._timed if t.next_s is not None]
        watch = self._expiry
        expires_s = self.next_expiry_s()
        if watch is not None and expires_s is not None:
            due_s = expires_s - watch.margin_s
            if watch.queued_for_s == expires_s:
                due_s = max(due_s, watch.queued_at_s + watch.retry_s)
            times.append(due_s)
        return min(times, default=math.inf)

    @property
    def idle(self) -> bool:
        """True when nothing is queued and nothing timed, periodic or expiring is left."""
        return not any(t.status is TaskStatus.PENDING for _p, _n, t in self._queue) and (
            self._next_due_s() == math.inf
        )

    def _pop(self) -> ScheduledTask | None:
        while self._queue:
            _prio, _n, task = heapq.heappop(self._queue)
            if task.status is TaskStatus.PENDING:
                return task
        return None

    async def run_until(
        self, until_s: float = math.inf, *, idle_step_s: float = 1.0
    ) -> list[ScheduledTask]:
        """Run tasks until the run clock reaches ``until_s`` (inf: until stop() or nothing is
        left to do); when idle it sleeps until the next start, at most ``idle_step_s`` on
        the wall clock (a virtual clock jumps straight there)."""
        while self.clock.now_s() < until_s and not self.stopped:
            self._queue_due()
            task = self._pop()
            if task is None:
                if until_s == math.inf and self.idle:
                    break
                wait_s = min(self._next_due_s(), until_s) - self.clock.now_s()
                if not self.clock.is_virtual:
                    wait_s = min(wait_s, idle_step_s)
                await self._sleep(max(wait_s, 0.0))
                continue
            task.status = TaskStatus.RUNNING
            self.current = self._new_control()
            try:
                task.result = await self.engine.run(
                    task.plan,
                    name=task.name,
                    args=task.args,
                    duration_s=task.duration_s,
                    control=self.current,
                    timeout_s=self.run_timeout_s,
                )
            finally:
                self.current = None
            task.status = _TASK_STATUS.get(task.result.status, TaskStatus.FAILED)
            self.history.append(task)
        return self.history

    async def _sleep(self, duration_s: float) -> None:
        """The clock's sleep, cut short by stop()."""
        sleeper = asyncio.ensure_future(self.clock.sleep(duration_s))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (sleeper, stopper):
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

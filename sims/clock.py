"""VirtualClock: simulated time that runs as fast as the CPU allows.

Tasks that ``await clock.sleep(d)`` are parked in a heap keyed by their deadline. Once every
task has had a few chances to run (a handful of ``asyncio.sleep(0)`` yields during which
nobody moved the clock), the clock jumps to the earliest deadline and wakes that sleeper. A
task that drives time itself (the world generating tags for a reader) holds the jump off,
so a plan streaming tags is never overtaken by a long sleeper elsewhere. The world
advances the same clock when it generates tags, and timers registered with ``call_at`` fire
in time order as it passes them, which is how scheduled faults hit at an exact sim time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True)
class _Timer:
    deadline_s: float
    seq: int
    callback: Callable[[], None] | None = field(compare=False)


@dataclass(order=True)
class _Sleeper:
    deadline_s: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)


class TimerHandle:
    """A timer registered with ``VirtualClock.call_at``; pass it to ``cancel``."""

    __slots__ = ("_timer",)

    def __init__(self, timer: _Timer) -> None:
        self._timer = timer

    @property
    def deadline_s(self) -> float:
        """Sim time at which the callback fires."""
        return self._timer.deadline_s


class VirtualClock:
    """Simulated time for the world and every twin (implements labctl.interfaces.Clock)."""

    def __init__(self, start_s: float = 0.0, *, settle_yields: int = 8) -> None:
        if not math.isfinite(start_s) or start_s < 0.0:
            raise ValueError(f"VirtualClock start_s must be finite and >= 0, got {start_s}")
        if settle_yields < 1:
            raise ValueError(f"VirtualClock settle_yields must be >= 1, got {settle_yields}")
        self._now_s = float(start_s)
        self._settle_yields = settle_yields
        self._sleepers: list[_Sleeper] = []
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._advancer: asyncio.Task[None] | None = None
        self._advancing = False
        self._moves = 0  # bumped whenever time moves: tells the advancer somebody is driving

    @property
    def is_virtual(self) -> bool:
        """Always True: this clock runs as fast as the CPU allows."""
        return True

    def now_s(self) -> float:
        """Seconds of simulated time since the simulation started."""
        return self._now_s

    async def sleep(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds of sim time pass (wakes in deadline order)."""
        if math.isnan(duration_s):
            raise ValueError("VirtualClock.sleep: duration_s is NaN")
        if duration_s <= 0.0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, _Sleeper(self._now_s + duration_s, next(self._seq), future))
        if self._advancer is None or self._advancer.done():
            self._advancer = loop.create_task(self._advance_when_idle())
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def call_at(self, deadline_s: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback()`` when sim time reaches ``deadline_s`` (at once if already past)."""
        if not math.isfinite(deadline_s):
            raise ValueError(f"VirtualClock.call_at: deadline_s must be finite, got {deadline_s}")
        timer = _Timer(max(deadline_s, self._now_s), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        if timer.deadline_s <= self._now_s and not self._advancing:
            self._fire_timers(self._now_s)
        return TimerHandle(timer)

    def cancel(self, handle: TimerHandle) -> None:
        """Cancel a timer that has not fired yet (no-op if it has)."""
        handle._timer.callback = None

    def next_timer_s(self) -> float | None:
        """Deadline of the earliest pending timer, or None."""
        while self._timers and self._timers[0].callback is None:
            heapq.heappop(self._timers)
        return self._timers[0].deadline_s if self._timers else None

    def advance(self, duration_s: float) -> None:
        """Move sim time forward by ``duration_s`` seconds (>= 0)."""
        if not duration_s >= 0.0:
            raise ValueError(f"VirtualClock.advance: duration_s must be >= 0, got {duration_s}")
        self.advance_to(self._now_s + duration_s)

    def advance_to(self, t_s: float) -> None:
        """Move sim time forward to ``t_s`` firing timers and waking sleepers on the way."""
        if not math.isfinite(t_s):
            raise ValueError(f"VirtualClock.advance_to: t_s must be finite, got {t_s}")
        if t_s <= self._now_s:
            return
        # Timers may themselves read now_s(), so step through them one deadline at a time.
        while True:
            next_timer = self.next_timer_s()
            if next_timer is None or next_timer > t_s:
                break
            self._now_s = max(self._now_s, next_timer)
            self._fire_timers(self._now_s)
        self._now_s = t_s
        self._moves += 1
        self._wake_sleepers()

    def _fire_timers(self, upto_s: float) -> None:
        self._advancing = True
        try:
            while self._timers and self._timers[0].deadline_s <= upto_s:
                timer = heapq.heappop(self._timers)
                callback, timer.callback = timer.callback, None
                if callback is not None:
                    callback()
        finally:
            self._advancing = False

    def _wake_sleepers(self) -> None:
        while self._sleepers and self._sleepers[0].deadline_s <= self._now_s:
            sleeper = heapq.heappop(self._sleepers)
            if not sleeper.future.done():
                sleeper.future.set_result(None)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0].future.done():
            heapq.heappop(self._sleepers)

    async def _advance_when_idle(self) -> None:
        """Jump to the earliest deadline whenever nobody else has work to do."""
        while True:
            moves = self._moves
            for _ in range(self._settle_yields):
                await asyncio.sleep(0)
            self._drop_cancelled()
            if not self._sleepers:
                return
            if self._moves != moves:
                continue  # time is being driven (tags being read): do not jump ahead of it
            self.advance_to(self._sleepers[0].deadline_s)

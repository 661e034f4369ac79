"""VirtualClock: sim time that jumps to the next deadline when every task sleeps."""

from __future__ import annotations

import asyncio
import time

import pytest

from labctl.interfaces import Clock
from sims.clock import VirtualClock


async def test_sleepers_wake_in_deadline_order_at_their_deadline() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def nap(name: str, duration_s: float) -> None:
        await clock.sleep(duration_s)
        woke.append((name, clock.now_s()))

    started = time.perf_counter()
    await asyncio.gather(nap("c", 3600.0), nap("a", 1.0), nap("b", 2.5))
    assert woke == [("a", 1.0), ("b", 2.5), ("c", 3600.0)]
    assert time.perf_counter() - started < 1.0  # an hour of sim time in well under a second
    assert isinstance(clock, Clock) and clock.is_virtual


async def test_a_task_sleeping_in_a_loop_sees_exact_sim_time() -> None:
    clock = VirtualClock(start_s=10.0)
    seen = []

    async def ticker() -> None:
        for _ in range(5):
            await clock.sleep(0.25)
            seen.append(clock.now_s())

    async def slow() -> None:
        await clock.sleep(0.6)
        seen.append(-clock.now_s())

    await asyncio.gather(ticker(), slow())
    assert seen == [10.25, 10.5, -10.6, 10.75, 11.0, 11.25]


async def test_busy_tasks_run_before_the_clock_jumps() -> None:
    clock = VirtualClock()
    progress = []

    async def worker() -> None:
        for step in range(3):
            progress.append((step, clock.now_s()))
            await asyncio.sleep(0)  # cooperative work, no sim time passes

    sleeper = asyncio.create_task(clock.sleep(5.0))
    await worker()
    await sleeper
    assert progress == [(0, 0.0), (1, 0.0), (2, 0.0)] and clock.now_s() == 5.0


async def test_cancelled_sleep_does_not_hold_the_clock() -> None:
    clock = VirtualClock()
    long = asyncio.create_task(clock.sleep(100.0))
    await asyncio.sleep(0)
    long.cancel()
    await clock.sleep(1.0)
    assert clock.now_s() == 1.0


def test_timers_fire_in_order_and_see_their_own_time() -> None:
    clock = VirtualClock()
    fired: list[tuple[str, float]] = []
    clock.call_at(2.0, lambda: fired.append(("two", clock.now_s())))
    clock.call_at(1.0, lambda: fired.append(("one", clock.now_s())))
    cancelled = clock.call_at(1.5, lambda: fired.append(("never", clock.now_s())))
    clock.cancel(cancelled)
    assert clock.next_timer_s() == 1.0
    clock.advance_to(3.0)
    assert fired == [("one", 1.0), ("two", 2.0)] and clock.now_s() == 3.0
    clock.advance(0.5)
    assert clock.now_s() == 3.5
    clock.advance_to(1.0)  # never backwards
    assert clock.now_s() == 3.5


def test_bad_arguments_are_refused() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="duration_s"):
        clock.advance(-1.0)
    with pytest.raises(ValueError, match="t_s"):
        clock.advance_to(float("nan"))
    with pytest.raises(ValueError, match="start_s"):
        VirtualClock(start_s=-1.0)

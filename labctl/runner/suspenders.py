"""Suspenders: conditions that suspend a plan at its next checkpoint and run a remedy.

A suspender's condition is an async callable returning None when all is well or a short
reason when the plan must not go on (QBER above a limit, a detector latched, sync lost,
an instrument unhealthy). The runner then runs the remedy plan, waits the settle delay on
the run's clock and checks again; after ``max_failures`` remedies that did not clear the
condition it aborts the run, naming the suspender and the last reason — unless the
suspender has a ``backoff``: then it keeps running the remedy, waiting twice as long each
time up to a bound (a condition that lasts, e.g. an hour of intercept-resend, keeps the run
suspended rather than ending it), and aborts only after ``give_up_s`` of run clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labctl.interfaces.devices import SinglePhotonDetector
from labctl.interfaces.instrument import Instrument

Condition = Callable[[], Awaitable[str | None]]
Plan = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between remedies past a suspender's failure budget: first_s, doubling to max_s."""

    first_s: float = 10.0
    max_s: float = 600.0
    give_up_s: float | None = None
    """Run-clock time from the first trip after which the run aborts (None: never)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.first_s <= self.max_s:
            raise ValueError(f"Backoff: need 0 < first_s <= max_s, got {self}")
        if self.give_up_s is not None and not self.give_up_s > 0.0:
            raise ValueError(f"Backoff: give_up_s must be > 0 or None, got {self.give_up_s}")

    def delay_s(self, extra_attempt: int) -> float:
        """Wait before remedy ``max_failures + extra_attempt`` (counted from 0)."""
        return min(self.first_s * 2.0 ** min(extra_attempt, 60), self.max_s)


@dataclass(slots=True)
class Suspender:
    """A named condition with its remedy plan, settle delay and failure budget."""

    name: str
    condition: Condition
    remedy: Plan | None = None
    settle_s: float = 0.0
    max_failures: int = 3
    check_interval_s: float = 0.0
    backoff: Backoff | None = None
    """After ``max_failures``: keep remedying with these waits instead of aborting."""
    last_check_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError(f"suspender {self.name!r}: max_failures must be >= 1")
        if self.settle_s < 0 or self.check_interval_s < 0:
            raise ValueError(f"suspender {self.name!r}: settle_s/check_interval_s must be >= 0")

    def due(self, now_s: float) -> bool:
        """True when the condition should be evaluated at ``now_s`` (run clock)."""
        return self.last_check_s is None or now_s - self.last_check_s >= self.check_interval_s

    @classmethod
    def above(
        cls,
        name: str,
        read: Callable[[], Awaitable[float | None]],
        limit: float,
        *,
        quantity: str,
        remedy: Plan | None = None,
        settle_s: float = 0.0,
        max_failures: int = 3,
        check_interval_s: float = 0.0,
        backoff: Backoff | None = None,
    ) -> Suspender:
        """Trip when ``await read()`` exceeds ``limit`` (None = no reading yet: not tripped)."""

        async def condition() -> str | None:
            value = await read()
            if value is not None and value > limit:
                return f"{quantity} {value:.6g} above limit {limit:.6g}"
            return None

        return cls(name, condition, remedy, settle_s, max_failures, check_interval_s, backoff)

    @classmethod
    def unhealthy(
        cls,
        instrument: Instrument,
        *,
        remedy: Plan | None = None,
        settle_s: float = 0.0,
        max_failures: int = 3,
        check_interval_s: float = 0.0,
    ) -> Suspender:
        """Trip when ``instrument.health()`` is not ok."""

        async def condition() -> str | None:
            health = await instrument.health()
            return None if health.ok else f"{instrument.name} unhealthy: {health.detail}"

        return cls(
            f"{instrument.name}-health", condition, remedy, settle_s, max_failures, check_interval_s
        )

    @classmethod
    def latched(
        cls,
        detector: SinglePhotonDetector,
        channels: Sequence[int],
        *,
        remedy: Plan | None = None,
        settle_s: float = 0.0,
        max_failures: int = 3,
        check_interval_s: float = 0.0,
    ) -> Suspender:
        """Trip when any of ``channels`` of ``detector`` is latched."""
        watched = tuple(channels)

        async def condition() -> str | None:
            stuck = [ch for ch in watched if await detector.is_latched(ch)]
            return f"{detector.name} channel(s) {stuck} latched" if stuck else None

        return cls(
            f"{detector.name}-latch", condition, remedy, settle_s, max_failures, check_interval_s
        )


@dataclass(slots=True)
class PeriodicPlan:
    """A plan the runner runs at checkpoints every ``every_s`` seconds of run clock."""

    name: str
    plan: Plan
    every_s: float
    last_run_s: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.every_s <= 0:
            raise ValueError(f"periodic plan {self.name!r}: every_s must be > 0")

    def due(self, now_s: float) -> bool:
        """True when ``every_s`` has passed since the last run (or since the run began)."""
        if self.last_run_s is None:
            self.last_run_s = now_s
            return False
        return now_s - self.last_run_s >= self.every_s

"""An instrument that stays down suspends the run instead of failing it.

Drivers recover from short outages themselves (reconnect with backoff, settings
re-applied, garbled replies re-sent). When an error outlives those retries — a device
being power-cycled, a twin server restarted, a cable re-plugged — the plan's call does
not fail: the run is *suspended* at that call. The guard publishes the state
``suspended`` and an event naming the instrument and the error, then runs the remedy —
close, connect (the driver re-applies its settings) and a health check — with
exponential backoff on the run's clock. When the instrument is back and healthy the call
is made again and the plan continues where it was; the run is ``running`` again. Only
when the instrument stays down for ``give_up_s`` (run clock, from the first failure of
that call) does the run abort, with a reason naming the instrument and the last error.

Plans need no change: the RunContext hands out guarded instruments (``run.instrument()``,
``run.instruments``, ``run.find()`` and ``run.station.instruments``), which forward
everything and guard every public coroutine method except the lifecycle ones. The engine
itself (snapshots, safe state) uses the bare instruments. Every operation of the real
drivers is safe to run again after a reconnect (see ``labctl.instrument.recovery``), which is
what makes repeating the failed call sound. A call that continues device state a restart
loses (the Pulse Streamer's ``append_pattern``) is made again too: the suspension is in the
run's events, and the plan's own checks (frame markers, QBER, finite-key bounds) reject a
block that spans the restart; an instrument class may instead list methods in
``unrepeatable_operations``, whose calls then go unguarded (their errors reach the plan).
Only link errors suspend (ConnectionLost,
InstrumentTimeout, ProtocolError); InstrumentFault — the device refusing a value — goes
to the plan at once.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labctl.interfaces.clock import Clock
from labctl.interfaces.errors import (
    ConnectionLost,
    InstrumentError,
    InstrumentTimeout,
    ProtocolError,
)
from labctl.runner.bus import DocumentBus
from labctl.runner.control import RunControl
from labctl.runner.status import RunState, StopPlan
from labctl.runner.watchdog import Watchdog

SUSPENDING_ERRORS: tuple[type[InstrumentError], ...] = (
    ConnectionLost,
    InstrumentTimeout,
    ProtocolError,
)
UNGUARDED_METHODS = frozenset({"connect", "close"})


@dataclass(frozen=True, slots=True)
class LinkRecoveryPolicy:
    """When to give up and how patiently to retry: wait k = first * factor**k, capped."""

    give_up_s: float = 300.0
    first_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 10.0
    step_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.give_up_s > 0 or not self.step_timeout_s > 0:
            raise ValueError(f"LinkRecoveryPolicy: give_up_s/step_timeout_s must be > 0: {self}")
        if self.first_delay_s < 0 or self.factor < 1 or self.max_delay_s < 0:
            raise ValueError(f"LinkRecoveryPolicy: invalid backoff {self}")

    def delay_s(self, attempt: int) -> float:
        """Wait before remedy attempt ``attempt`` (counted from 0)."""
        return float(min(self.max_delay_s, self.first_delay_s * self.factor**attempt))


class InstrumentGuard:
    """One run's link supervision: suspends on a lasting instrument error, remedies, resumes."""

    def __init__(
        self,
        *,
        policy: LinkRecoveryPolicy,
        clock: Clock,
        bus: DocumentBus,
        control: RunControl,
        log: logging.Logger,
        watchdog: Watchdog,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._bus = bus
        self._control = control
        self._log = log
        self._watchdog = watchdog
        self._locks: dict[str, asyncio.Lock] = {}
        self._recoveries: dict[str, int] = {}  # successful remedies per instrument
        self._down: set[str] = set()
        self._resume_state: RunState | None = None
        self.suspensions = 0

    def wrap(self, instrument: Any) -> Any:
        """``instrument`` behind the guard (the same object for instruments without a name)."""
        if isinstance(instrument, GuardedInstrument) or not hasattr(instrument, "name"):
            return instrument
        return GuardedInstrument(instrument, self)

    async def call(
        self, instrument: Any, method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> Any:
        """``method(*args, **kwargs)``; while it fails with a link error, suspend and remedy."""
        first_failure_s: float | None = None
        while True:
            try:
                return await method(*args, **kwargs)
            except SUSPENDING_ERRORS as exc:
                now_s = self._clock.now_s()
                if first_failure_s is None:
                    first_failure_s = now_s
                await self._suspend_until_back(instrument, exc, first_failure_s)

    async def _suspend_until_back(
        self, instrument: Any, error: InstrumentError, first_failure_s: float
    ) -> None:
        name = str(instrument.name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        recoveries = self._recoveries.get(name, 0)
        async with lock:
            if self._recoveries.get(name, 0) != recoveries:
                return  # another call's remedy brought it back meanwhile: just call again
            self._enter(name, error)
            try:
                await self._remedy_until_back(instrument, error, first_failure_s)
            finally:
                self._leave(name)

    async def _remedy_until_back(
        self, instrument: Any, error: InstrumentError, first_failure_s: float
    ) -> None:
        name = str(instrument.name)
        last = f"{type(error).__name__}: {error}"
        attempt = 0
        while True:
            down_s = self._clock.now_s() - first_failure_s
            if down_s >= self.policy.give_up_s:
                why = (
                    f"instrument {name!r} still failing after {down_s:.1f} s "
                    f"(give-up time {self.policy.give_up_s:g} s, {attempt} remedies); "
                    f"last: {last}"
                )
                self._log.error(why)
                self._bus.emit("event", "runner", {"action": "give-up", "instrument": name})
                raise StopPlan("aborted", why)
            delay_s = min(self.policy.delay_s(attempt), self.policy.give_up_s - down_s)
            await self._clock.sleep(delay_s)
            self._honour_abort()
            self._watchdog.kick()
            attempt += 1
            problem = await self._remedy(instrument)
            self._watchdog.kick()
            self._honour_abort()
            if problem is None:
                self._recoveries[name] = self._recoveries.get(name, 0) + 1
                down_s = self._clock.now_s() - first_failure_s
                self._log.warning(
                    "%s is back after %d remedy run(s), %.1f s down; the run resumes",
                    name,
                    attempt,
                    down_s,
                )
                self._bus.emit(
                    "event",
                    "runner",
                    {
                        "action": "unsuspended",
                        "suspender": f"{name}-link",
                        "instrument": name,
                        "attempts": attempt,
                        "down_s": down_s,
                    },
                )
                return
            last = problem
            self._log.warning("%s: remedy %d did not bring it back: %s", name, attempt, problem)
            self._bus.emit(
                "event",
                "runner",
                {
                    "action": "remedy-failed",
                    "remedy": f"{name}-reconnect",
                    "instrument": name,
                    "attempt": attempt,
                    "error": problem,
                },
            )

    async def _remedy(self, instrument: Any) -> str | None:
        """Close, connect (settings re-applied by the driver), health check; None when ok."""
        timeout_s = self.policy.step_timeout_s
        try:
            await asyncio.wait_for(instrument.close(), timeout_s)
        except (InstrumentError, TimeoutError):
            pass  # a dead link may not close cleanly; connect() decides
        try:
            await asyncio.wait_for(instrument.connect(), timeout_s)
            health = await asyncio.wait_for(instrument.health(), timeout_s)
        except TimeoutError:
            return f"InstrumentTimeout: no answer within {timeout_s:g} s"
        except InstrumentError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if health.ok else f"unhealthy: {health.detail}"

    def _honour_abort(self) -> None:
        reason = self._control.abort_reason
        if reason is not None:
            raise StopPlan(self._control.stop_status, reason)

    def _enter(self, name: str, error: InstrumentError) -> None:
        if not self._down:
            self._resume_state = self._control.state
        self._down.add(name)
        self.suspensions += 1
        self._control.set_state(RunState.SUSPENDED)
        text = f"{type(error).__name__}: {error}"
        self._log.warning("suspended: instrument %s failing after its own retries: %s", name, text)
        self._bus.emit(
            "event",
            "runner",
            {
                "action": "suspended",
                "suspender": f"{name}-link",
                "instrument": name,
                "command": error.command,
                "error": text,
                "reason": f"{name} failing after its own retries",
            },
        )

    def _leave(self, name: str) -> None:
        self._down.discard(name)
        if not self._down and self._resume_state is not None:
            self._control.set_state(self._resume_state)
            self._resume_state = None


class GuardedInstrument:
    """An instrument whose public coroutine methods go through an InstrumentGuard."""

    __slots__ = ("_guard", "_target")

    def __init__(self, target: Any, guard: InstrumentGuard) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_guard", guard)

    @property
    def unguarded(self) -> Any:
        """The instrument itself."""
        return self._target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or name in UNGUARDED_METHODS:
            return value
        if name in getattr(self._target, "unrepeatable_operations", ()):
            return value  # not safe to make again after a reconnect: the plan decides
        if not inspect.iscoroutinefunction(value):
            return value
        return functools.partial(self._guard.call, self._target, value)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"<guarded {self._target!r}>"

    async def __aenter__(self) -> GuardedInstrument:
        await self._target.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._target.close()


class GuardedInstruments(Mapping[str, Any]):
    """A station's instruments by name, each behind the guard (built once per run)."""

    def __init__(self, instruments: Mapping[str, Any], guard: InstrumentGuard) -> None:
        self._instruments = instruments
        self._guard = guard
        self._wrapped: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._wrapped:
            self._wrapped[name] = self._guard.wrap(self._instruments[name])
        return self._wrapped[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._instruments)

    def __len__(self) -> int:
        return len(self._instruments)


class GuardedStation:
    """A station seen by a plan: the same station, its instruments behind the guard."""

    def __init__(self, station: Any, guard: InstrumentGuard) -> None:
        self._station = station
        self._instruments = GuardedInstruments(station.instruments, guard)

    @property
    def instruments(self) -> Mapping[str, Any]:
        """Every instrument by name, guarded."""
        return self._instruments

    @property
    def clock(self) -> Clock:
        """The station's clock."""
        clock: Clock = self._station.clock
        return clock

    @property
    def unguarded(self) -> Any:
        """The station itself."""
        return self._station

    def __getattr__(self, name: str) -> Any:
        return getattr(self._station, name)

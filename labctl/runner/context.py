"""The ``run`` object a plan receives: station, clock, store, documents, progress, control.

``await run.checkpoint(state)`` is the plan's pause point: it persists ``state`` atomically
(with the event count and every dataset's last row, so resume rolls back anything later),
then honours abort, pause, named requests, periodic plans and suspenders.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from labctl.documents import Document
from labctl.interfaces.clock import Clock
from labctl.interfaces.instrument import Instrument
from labctl.progress import RunProgress
from labctl.runner.bus import DocumentBus
from labctl.runner.control import RunControl
from labctl.runner.link_guard import GuardedStation, InstrumentGuard, LinkRecoveryPolicy
from labctl.runner.status import RunState, StopPlan
from labctl.runner.supervision import RetryPolicy, supervised_call
from labctl.runner.suspenders import PeriodicPlan, Plan, Suspender
from labctl.runner.watchdog import Watchdog
from labctl.store.datasets import Column, RunDatabase, RunDataset
from labctl.store.run_folder import PENDING_EVENT, RunFolder

T = TypeVar("T")
P = TypeVar("P")


class StationLike(Protocol):
    """What the runner needs of a station: named instruments and the clock."""

    @property
    def instruments(self) -> Mapping[str, Any]: ...

    @property
    def clock(self) -> Clock: ...


@dataclass(slots=True)
class RunHooks:
    """What the runner checks at every checkpoint."""

    suspenders: list[Suspender] = field(default_factory=list)
    periodic: list[PeriodicPlan] = field(default_factory=list)
    remedies: dict[str, Plan] = field(default_factory=dict)

    def copy(self) -> RunHooks:
        """A per-run copy, so that a plan adding hooks does not change the next run."""
        return RunHooks(list(self.suspenders), list(self.periodic), dict(self.remedies))


class RunContext:
    """Everything a plan may use; created by the RunEngine, one per run."""

    def __init__(
        self,
        *,
        station: StationLike,
        folder: RunFolder,
        database: RunDatabase,
        bus: DocumentBus,
        control: RunControl,
        progress: RunProgress,
        log: logging.Logger,
        watchdog: Watchdog,
        hooks: RunHooks,
        args: dict[str, Any],
        resume_state: Any = None,
        deadline_s: float | None = None,
        call_timeout_s: float = 10.0,
        link_recovery: LinkRecoveryPolicy | None = None,
    ) -> None:
        self.guard = (
            None
            if link_recovery is None
            else InstrumentGuard(
                policy=link_recovery,
                clock=station.clock,
                bus=bus,
                control=control,
                log=log,
                watchdog=watchdog,
            )
        )
        # Plans see the station through the guard: an instrument that stays down
        # suspends the run at the failing call (labctl.runner.link_guard).
        self.station: StationLike = (
            station if self.guard is None else GuardedStation(station, self.guard)
        )
        self.clock: Clock = station.clock
        self.folder = folder
        self.store = folder
        self.database = database
        self.control = control
        self.progress = progress
        self.log = log
        self.args = args
        self.resume_state = resume_state
        self.deadline_s = deadline_s
        self.call_timeout_s = call_timeout_s
        self.checkpoints = 0
        self.degraded_reason: str | None = None
        """Set by :meth:`degrade`: the run ends ``degraded`` instead of ``ok``."""
        self._bus = bus
        self._watchdog = watchdog
        self._hooks = hooks
        self._in_remedy = False

    @property
    def run_id(self) -> str:
        """The run id (also the run folder's name)."""
        return self.folder.run_id

    @property
    def instruments(self) -> Mapping[str, Instrument]:
        """Every instrument of the station by name."""
        return self.station.instruments

    def instrument(self, name: str, kind: type[P] | None = None) -> P:
        """The instrument called ``name``; with ``kind``, checked against that Protocol."""
        try:
            found = self.station.instruments[name]
        except KeyError:
            known = ", ".join(sorted(self.station.instruments)) or "none"
            raise KeyError(f"no instrument {name!r} in the station (known: {known})") from None
        if kind is not None and not isinstance(found, kind):
            raise TypeError(f"instrument {name!r} is not a {kind.__name__}")
        instrument: P = found
        return instrument

    def find(self, kind: type[P]) -> list[P]:
        """Every instrument implementing the Protocol ``kind``."""
        return [inst for inst in self.station.instruments.values() if isinstance(inst, kind)]

    def emit(self, stream: str, data: dict[str, Any]) -> Document:
        """Send an event document on ``stream`` to every sink."""
        self._watchdog.saw_stream(stream)
        return self._bus.emit("event", stream, data)

    def degrade(self, reason: str) -> None:
        """Mark the run degraded: if the plan then returns, the run ends ``degraded``
        (``reason`` as its reason), never ``ok``. Aborts and failures still win."""
        self.degraded_reason = reason

    def add_suspender(self, suspender: Suspender) -> None:
        """Check ``suspender`` at every later checkpoint of this run."""
        self._hooks.suspenders.append(suspender)

    def add_periodic(self, periodic: PeriodicPlan) -> None:
        """Run ``periodic.plan`` at checkpoints every ``periodic.every_s`` of run clock."""
        self._hooks.periodic.append(periodic)

    def add_remedy(self, name: str, remedy: Plan) -> None:
        """Run ``remedy`` when ``control.request(name)`` arrives (MQTT cmd, notebook)."""
        self._hooks.remedies[name] = remedy

    def watch_stream(self, stream: str, max_gap_s: float) -> None:
        """Let the watchdog stop the run when ``stream`` has no event for ``max_gap_s``."""
        self._watchdog.watch_stream(stream, max_gap_s)

    def dataset(
        self,
        name: str,
        *,
        setpoints: Sequence[str | Column] = (),
        measured: Sequence[str | Column],
    ) -> RunDataset:
        """The qcodes dataset ``name`` of this run (reattached on resume, else created)."""
        existing = self.database.get(name)
        if existing is not None:
            wanted = {c if isinstance(c, str) else c.name for c in (*setpoints, *measured)}
            if set(existing.columns) != wanted:
                raise ValueError(
                    f"dataset {name!r} exists with columns {sorted(existing.columns)}, "
                    f"asked for {sorted(wanted)}"
                )
            return existing
        created = self.database.create(name, setpoints=setpoints, measured=measured)
        datasets = dict(self.folder.read_metadata().get("datasets", {}))
        datasets[name] = created.guid
        self.folder.update_metadata(datasets=datasets)
        return created

    async def sleep(self, duration_s: float) -> None:
        """Let ``duration_s`` of run-clock time pass."""
        await self.clock.sleep(duration_s)

    async def call(
        self,
        fn: Callable[..., Awaitable[T]],
        *args: Any,
        timeout_s: float | None = None,
        retries: int = 3,
        instrument: Instrument | None = None,
        **kwargs: Any,
    ) -> T:
        """Supervised instrument call: timeout, retries with backoff, reconnect."""
        return await supervised_call(
            fn,
            *args,
            timeout_s=self.call_timeout_s if timeout_s is None else timeout_s,
            policy=RetryPolicy(retries=retries),
            instrument=instrument,
            clock=self.clock,
            log=self.log,
            **kwargs,
        )

    async def checkpoint(self, state: Any = None) -> None:
        """Pause point; with ``state`` (JSON-able) also the point a resume continues from."""
        self._watchdog.kick()
        self.checkpoints += 1
        if state is not None and not self._in_remedy:
            self._persist(state)
        await self._honour_control()
        if self._in_remedy:
            return
        self._stop_at_deadline()
        for request in self.control.take_requests():
            remedy = self._hooks.remedies.get(request)
            if remedy is None:
                self.log.warning("request %r ignored: no such remedy", request)
                self._bus.emit("event", "runner", {"action": "request-ignored", "request": request})
                continue
            await self._run_remedy(request, remedy)
        for periodic in self._hooks.periodic:
            if periodic.due(self.clock.now_s()):
                await self._run_remedy(periodic.name, periodic.plan)
                periodic.last_run_s = self.clock.now_s()
        for suspender in self._hooks.suspenders:
            await self._check_suspender(suspender)

    def commit(self, state: Any, event: tuple[str, dict[str, Any]] | None = None) -> None:
        """Persist ``state`` (JSON-able) as the point a resume continues from, at once.

        Unlike :meth:`checkpoint` it neither pauses nor aborts, so a callback can record a
        commit the moment it happens (e.g. a key block stored at both ends): the checkpoint
        then names every document emitted so far, and a resume keeps them all. It persists
        inside a remedy too: the state is the plan's own, whoever runs when it commits.

        With ``event`` (stream, data) that event document is part of the commit: the
        checkpoint holds it before the event log does, and a resume writes it to the log if
        the process died in between, so a resume finds both the state and the event or
        neither.
        """
        if event is None:
            self._persist(state)
            return
        stream, data = event
        self._watchdog.saw_stream(stream)
        document = self._bus.number("event", stream, data)
        self._persist(state, pending=document.to_json_dict())
        self._bus.record(document)

    def _persist(self, state: Any, pending: dict[str, Any] | None = None) -> None:
        try:
            json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"run.checkpoint(state): state must be plain JSON ({exc})") from exc
        self._bus.event_log.sync()  # the checkpoint must never name an event not on disk
        checkpoint = {
            "run_id": self.run_id,
            "seq_next": self._bus.seq_next,
            "datasets": {
                name: {"guid": ds.guid, "last_row_id": ds.last_row_id()}
                for name, ds in self.database.datasets.items()
            },
            "state": state,
            "clock_s": self.clock.now_s(),
            "wall_ts": time.time(),
        }
        if pending is not None:  # numbered, not yet in the event log (see commit)
            checkpoint[PENDING_EVENT] = pending
        self.folder.write_checkpoint(checkpoint)

    def _stop_at_deadline(self, why: str = "") -> None:
        """StopPlan("timeout") once the run's duration is reached (``why``: what it was doing)."""
        if self.deadline_s is not None and self.clock.now_s() >= self.deadline_s:
            raise StopPlan(
                "timeout", f"run duration reached at clock {self.clock.now_s():.3f} s{why}"
            )

    async def _honour_control(self) -> None:
        control = self.control
        if control.abort_reason is not None:
            raise StopPlan(control.stop_status, control.abort_reason)
        if control.paused:
            previous = control.state
            control.set_state(RunState.PAUSED)
            self._bus.emit("event", "runner", {"action": "paused"})
            self.log.info("paused")
            await control.wait_resumed()
            self._watchdog.kick()
            if control.abort_reason is not None:
                raise StopPlan(control.stop_status, control.abort_reason)
            self._bus.emit("event", "runner", {"action": "resumed"})
            self.log.info("resumed")
            control.set_state(previous)

    async def _run_remedy(self, name: str, remedy: Plan) -> bool:
        """Run a remedy/periodic plan inside this run; False (logged) when it raised."""
        self._bus.emit("event", "runner", {"action": "remedy-start", "remedy": name})
        self._in_remedy = True
        try:
            await remedy(self)
        except Exception as exc:
            self.log.error("remedy %r failed: %s: %s", name, type(exc).__name__, exc)
            self._bus.emit(
                "event",
                "runner",
                {
                    "action": "remedy-failed",
                    "remedy": name,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            return False
        finally:
            self._in_remedy = False
            self._watchdog.kick()
        self._bus.emit("event", "runner", {"action": "remedy-done", "remedy": name})
        return True

    async def _back_off(
        self, suspender: Suspender, attempts: int, first_s: float, reason: str
    ) -> None:
        """Past the failure budget: abort, or (with a backoff) wait before the next remedy."""
        backoff = suspender.backoff
        lasted_s = self.clock.now_s() - first_s
        if backoff is None or (backoff.give_up_s is not None and lasted_s >= backoff.give_up_s):
            why = (
                f"suspender {suspender.name!r}: {attempts} remedies did not clear "
                f"the condition; last: {reason}"
            )
            self.log.error(why)
            raise StopPlan("aborted", why)
        delay_s = backoff.delay_s(attempts - suspender.max_failures)
        if backoff.give_up_s is not None:
            delay_s = min(delay_s, backoff.give_up_s - lasted_s)
        if self.deadline_s is not None:  # a suspended run still ends with its duration
            delay_s = max(min(delay_s, self.deadline_s - self.clock.now_s()), 0.0)
        self._bus.emit(
            "event",
            "runner",
            {"action": "remedy-backoff", "suspender": suspender.name, "delay_s": delay_s},
        )
        await self.clock.sleep(delay_s)
        await self._honour_control()
        self._watchdog.kick()

    async def _check_suspender(self, suspender: Suspender) -> None:
        if not suspender.due(self.clock.now_s()):
            return
        suspender.last_check_s = self.clock.now_s()
        reason = await suspender.condition()
        if reason is None:
            return
        previous = self.control.state
        self.control.set_state(RunState.SUSPENDED)
        attempts = 0
        first_s = self.clock.now_s()
        while reason is not None:
            self._stop_at_deadline(f" while suspended by {suspender.name!r}: {reason}")
            if attempts >= suspender.max_failures:
                await self._back_off(suspender, attempts, first_s, reason)
                self._stop_at_deadline(f" while suspended by {suspender.name!r}: {reason}")
            attempts += 1
            self.log.warning("suspended by %r: %s (remedy %d)", suspender.name, reason, attempts)
            self._bus.emit(
                "event",
                "runner",
                {
                    "action": "suspended",
                    "suspender": suspender.name,
                    "reason": reason,
                    "attempt": attempts,
                },
            )
            if suspender.remedy is not None:
                await self._run_remedy(suspender.name, suspender.remedy)
            await self.clock.sleep(suspender.settle_s)
            await self._honour_control()
            self._watchdog.kick()
            reason = await suspender.condition()
        suspender.last_check_s = self.clock.now_s()
        self._bus.emit(
            "event",
            "runner",
            {"action": "unsuspended", "suspender": suspender.name, "attempts": attempts},
        )
        self.log.info("suspender %r cleared after %d remedy run(s)", suspender.name, attempts)
        self.control.set_state(previous)

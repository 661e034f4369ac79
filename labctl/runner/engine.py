"""The RunEngine: runs one plan as one run, from start document to safe state and stop.

Every exit path — the plan returns (ok), raises (failed), is aborted at a checkpoint
(aborted), halted (halted), runs past its duration (timeout) or is stopped by the
watchdog (failed) — ends the same way: every instrument gets ``safe_state()`` (all of
them, errors collected), then the stop document is written with status, reason and
duration. An instrument that keeps failing after its driver's own retries does not end
the run: the run is suspended at that call while the instrument is remedied
(``link_guard``) and aborts only after ``instrument_give_up_s``. The engine runs on the
caller's event loop (no nested ``asyncio.run``), so a notebook can ``await
engine.run(plan)`` directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.documents import DocumentSink
from labctl.progress import RunProgress
from labctl.runner.bus import DocumentBus
from labctl.runner.context import RunContext, RunHooks, StationLike
from labctl.runner.control import RunControl
from labctl.runner.event_model import FILE_NAME as EVENT_MODEL_FILE
from labctl.runner.event_model import EventModelFile
from labctl.runner.link_guard import LinkRecoveryPolicy
from labctl.runner.metadata import code_version, redact, redact_station_text
from labctl.runner.plans import Plan, load_plan
from labctl.runner.status import FINISHED, FinalStatus, RunState, StopPlan
from labctl.runner.suspenders import PeriodicPlan, Suspender
from labctl.runner.watchdog import Watchdog
from labctl.store.datasets import RunDatabase
from labctl.store.events import EventLog, append_event, read_events, truncate_events
from labctl.store.lock import StoreLock
from labctl.store.run_folder import PENDING_EVENT, RunFolder, RunFolderError


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended."""

    run_id: str
    path: Path
    status: str
    reason: str
    result: Any = None
    duration_s: float = 0.0
    safe_state_errors: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Prepared:
    folder: RunFolder
    plan_name: str
    args: dict[str, Any]
    resume_state: Any = None
    seq_next: int = 0
    rollback: dict[str, tuple[str, int]] = field(default_factory=dict)
    resumed: bool = False
    void_seqs: list[int] | None = None  # [first, last] seq rolled back on resume, or None
    lock: StoreLock | None = None  # the run folder's lock, released when the run ends
    plan: Any = None  # the plan to run (resume loads it from the metadata)


class RunEngine:
    """Runs plans against a connected station, writing run folders under ``runs_dir``."""

    def __init__(
        self,
        station: StationLike,
        *,
        runs_dir: Path,
        sinks: Sequence[DocumentSink] = (),
        suspenders: Sequence[Suspender] = (),
        periodic: Sequence[PeriodicPlan] = (),
        remedies: Mapping[str, Plan] | None = None,
        config: dict[str, Any] | None = None,
        config_text: str | None = None,
        config_file: str | None = None,
        watchdog_s: float | None = None,
        call_timeout_s: float = 10.0,
        safe_state_timeout_s: float = 10.0,
        halt_grace_s: float = 10.0,
        progress: RunProgress | None = None,
        fsync_interval_s: float = 0.0,
        instrument_give_up_s: float | None = 300.0,
        link_recovery: LinkRecoveryPolicy | None = None,
    ) -> None:
        self.station = station
        self.runs_dir = Path(runs_dir)
        self.sinks = list(sinks)
        self.hooks = RunHooks(list(suspenders), list(periodic), dict(remedies or {}))
        self.config = config or {}
        self.config_text = config_text
        self.config_file = config_file
        self.watchdog_s = watchdog_s
        self.call_timeout_s = call_timeout_s
        self.safe_state_timeout_s = safe_state_timeout_s
        self.halt_grace_s = halt_grace_s
        self.progress = progress
        self.fsync_interval_s = fsync_interval_s
        # An instrument failing after its driver's own retries suspends the run; after this
        # long (run clock) it aborts it. None: no suspension, the error goes to the plan.
        # ``link_recovery`` (the whole policy: backoff too) wins over the give-up time alone.
        self.link_recovery = link_recovery or (
            None
            if instrument_give_up_s is None
            else LinkRecoveryPolicy(give_up_s=instrument_give_up_s)
        )

    async def run(
        self,
        plan: Plan,
        *,
        name: str | None = None,
        plan_name: str | None = None,
        args: dict[str, Any] | None = None,
        duration_s: float | None = None,
        control: RunControl | None = None,
        timeout_s: float | None = None,
    ) -> RunResult:
        """Run ``plan`` as a new run; ``duration_s`` limits it on the run's clock.

        ``timeout_s`` limits it in wall-clock seconds whatever the clock (a simulated run
        on a virtual clock included): the run ends ``timeout`` like at its duration.
        """
        plan_name = plan_name or f"{plan.__module__}:{plan.__qualname__}"
        folder = RunFolder.create(
            self.runs_dir,
            name or plan_name.rpartition(":")[2],
            config_text=None if self.config_text is None else redact_station_text(self.config_text),
        )
        args = dict(args or {})
        lock = StoreLock(folder.path, "run folder").acquire()
        folder.write_metadata(
            {
                "run_id": folder.run_id,
                "plan": plan_name,
                "args": args,
                "status": "running",
                "created_wall_ts": time.time(),
                "datasets": {},
                "resumes": [],
                "config_file": self.config_file,
            }
        )
        prepared = _Prepared(folder, plan_name, args, lock=lock)
        try:
            return await self._execute(plan, prepared, duration_s, control, timeout_s)
        finally:
            lock.release()  # idempotent: _execute releases it before the DONE state

    async def resume(
        self,
        run_dir: Path,
        plan: Plan | None = None,
        *,
        duration_s: float | None = None,
        control: RunControl | None = None,
        timeout_s: float | None = None,
    ) -> RunResult:
        """Continue a crashed/stopped run from its last checkpoint (rolling back later data)."""
        folder = RunFolder.open(run_dir)
        # Before anything is read or rolled back: a run still going in another process
        # (or a second resume) must find the folder untouched.
        lock = StoreLock(folder.path, "run folder").acquire()
        try:
            prepared = self._prepare_resume(folder, plan)
        except BaseException:
            lock.release()
            raise
        prepared.lock = lock
        try:
            return await self._execute(prepared.plan, prepared, duration_s, control, timeout_s)
        finally:
            lock.release()

    def _prepare_resume(self, folder: RunFolder, plan: Plan | None) -> _Prepared:
        metadata = folder.read_metadata()
        if metadata.get("status") in FINISHED:
            raise ValueError(
                f"{folder.path}: run finished {metadata.get('status')}; nothing to resume"
            )
        plan_name = metadata.get("plan")
        if not isinstance(plan_name, str) or not plan_name:
            raise RunFolderError(folder.metadata_path, "missing (the plan to resume)", "plan")
        plan = plan or load_plan(plan_name)
        checkpoint = folder.read_checkpoint() or {}
        checkpoint_seq = int(checkpoint.get("seq_next", 1))
        void_seqs: list[int] | None = None
        if folder.events_path.exists():
            written = [int(e["seq"]) for e in read_events(folder.events_path)]
            # Events after the checkpoint are rolled back: their work is redone. They may
            # already have reached MQTT, so their seq numbers are never reused (a subscriber
            # that keeps the first copy per seq would otherwise keep stale content); the
            # "resumed" event names them void.
            truncate_events(folder.events_path, checkpoint_seq)  # also drops a torn line
            pending = checkpoint.get(PENDING_EVENT)
            if pending is not None and int(pending["seq"]) not in written:
                # The process died between the checkpoint and the event log: the event is
                # part of that commit, so it is recorded now, in its place (the last one).
                append_event(folder.events_path, pending)
                written.append(int(pending["seq"]))
            seq_next = max(written, default=-1) + 1
            if seq_next > checkpoint_seq:
                void_seqs = [checkpoint_seq, seq_next - 1]
        else:
            seq_next = 0
        saved = checkpoint.get("datasets", {})
        rollback = {
            name: (guid, int(saved.get(name, {}).get("last_row_id", 0)))
            for name, guid in metadata.get("datasets", {}).items()
        }
        resumes = [*metadata.get("resumes", []), {"wall_ts": time.time(), "seq_next": seq_next}]
        folder.update_metadata(status="running", resumes=resumes)
        return _Prepared(
            folder,
            plan_name,
            dict(metadata.get("args", {})),
            resume_state=checkpoint.get("state"),
            seq_next=seq_next,
            rollback=rollback,
            resumed=True,
            void_seqs=void_seqs,
            plan=plan,
        )

    async def _execute(
        self,
        plan: Plan,
        prep: _Prepared,
        duration_s: float | None,
        control: RunControl | None,
        timeout_s: float | None = None,
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        control = control or RunControl()
        control.bind_loop(loop)
        folder = prep.folder
        clock = self.station.clock
        log, handler = _run_logger(folder)
        event_log = EventLog(folder.events_path, fsync_interval_s=self.fsync_interval_s)
        # The run's documents in bluesky's event model too (databroker, tiled, suitcases).
        event_model_file = EventModelFile(folder.path / EVENT_MODEL_FILE)
        bus = DocumentBus(
            folder.run_id,
            clock,
            event_log,
            [*self.sinks, event_model_file],
            seq_next=prep.seq_next,
            log=log,
        )
        database = RunDatabase(folder.database_path, folder.run_id)
        for ds_name, (guid, last_row_id) in prep.rollback.items():
            dropped = database.reopen(ds_name, guid).rollback_to(last_row_id)
            log.info("dataset %r: rolled back %d row(s) after the checkpoint", ds_name, dropped)
        watchdog = Watchdog(
            plan_timeout_s=self.watchdog_s, on_stall=lambda r: control.halt(r, status="failed")
        )
        bus.on_emit = lambda _doc: watchdog.kick()
        progress = self.progress or RunProgress()
        progress.on_activity = watchdog.kick
        start_clock_s, start_wall = clock.now_s(), time.monotonic()
        ctx = RunContext(
            station=self.station,
            folder=folder,
            database=database,
            bus=bus,
            control=control,
            progress=progress,
            log=log,
            watchdog=watchdog,
            hooks=self.hooks.copy(),
            args=prep.args,
            resume_state=prep.resume_state,
            deadline_s=None if duration_s is None else start_clock_s + duration_s,
            call_timeout_s=self.call_timeout_s,
            link_recovery=self.link_recovery,
        )
        status, reason, result = "failed", "", None
        watchers: list[asyncio.Task[None]] = []
        try:
            if bus.seq_next == 0:
                start = await self._start_data(folder, prep)
                database.describe(start)  # every dataset carries the run and the snapshot
                bus.emit("start", "primary", start)
            else:
                bus.emit(
                    "event",
                    "runner",
                    {"action": "resumed", "seq_next": prep.seq_next, "void_seqs": prep.void_seqs},
                )
            log.info(
                "run %s: plan %s %s",
                folder.run_id,
                prep.plan_name,
                "resumed" if prep.resumed else "started",
            )
            control.set_state(RunState.RUNNING)

            async def run_plan() -> Any:
                return await plan(ctx)

            plan_task = asyncio.create_task(run_plan(), name=f"plan-{folder.run_id}")

            def cancel_plan(_reason: str) -> None:
                plan_task.cancel()

            control.on_halt(cancel_plan)
            if self.watchdog_s is not None:
                watchers.append(asyncio.create_task(watchdog.run()))
            if duration_s is not None and not clock.is_virtual:
                watchers.append(asyncio.create_task(self._deadline(control, duration_s)))
            if timeout_s is not None:
                watchers.append(
                    asyncio.create_task(self._deadline(control, timeout_s, "run timeout"))
                )
            try:
                result = await plan_task
                status, reason = "ok", "plan finished"
                degraded = ctx.degraded_reason or _summary_degraded(folder)
                if degraded is not None:
                    status, reason = FinalStatus.DEGRADED.value, degraded
                    log.warning("run %s degraded: %s", folder.run_id, degraded)
            except StopPlan as stopped:
                status, reason = stopped.status, stopped.reason
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if control.halt_reason is None or (current is not None and current.cancelling()):
                    status, reason = "halted", "runner task cancelled"
                    raise
                status, reason = control.halt_status, control.halt_reason
            except Exception as exc:
                status, reason = "failed", f"{type(exc).__name__}: {exc}"
                log.error("plan failed: %s", reason, exc_info=exc)
        except Exception as exc:  # failures before the plan started (snapshots, start doc)
            status, reason = "failed", f"{type(exc).__name__}: {exc}"
            log.error("run setup failed: %s", reason, exc_info=exc)
        finally:
            for watcher in watchers:
                watcher.cancel()
            control.set_state(RunState.STOPPING)
            safe_errors = await self._safe_state_all(log)
            duration = clock.now_s() - start_clock_s
            stop = {
                "exit_status": status,
                "reason": reason,
                "duration_s": duration,
                "wall_duration_s": time.monotonic() - start_wall,
                "safe_state": "ok" if not safe_errors else "errors",
                "safe_state_errors": safe_errors,
                "checkpoints": ctx.checkpoints,
            }
            bus.emit("stop", "primary", stop)
            log.info("run %s stopped: %s (%s)", folder.run_id, status, reason)
            folder.update_metadata(status=status, reason=reason, duration_s=duration)
            database.close(complete=status == "ok")
            event_log.close()
            await event_model_file.aclose()
            if self.progress is None:
                progress.close()
            log.removeHandler(handler)
            handler.close()
            if prep.lock is not None:
                prep.lock.release()
            control.set_state(RunState.DONE)
        return RunResult(folder.run_id, folder.path, status, reason, result, duration, safe_errors)

    async def _deadline(
        self, control: RunControl, limit_s: float, what: str = "run duration"
    ) -> None:
        """Wall-clock limit: abort at the deadline, halt if no checkpoint comes in the grace."""
        await asyncio.sleep(limit_s)
        control.abort(f"{what} {limit_s:g} s reached", status="timeout")
        await asyncio.sleep(self.halt_grace_s)
        control.halt(
            f"{what} {limit_s:g} s reached; no checkpoint within {self.halt_grace_s} s",
            status="timeout",
        )

    async def _start_data(self, folder: RunFolder, prep: _Prepared) -> dict[str, Any]:
        return {
            "run_id": folder.run_id,
            "plan": prep.plan_name,
            "args": prep.args,
            "config": redact(self.config),
            "code_version": await asyncio.to_thread(code_version),
            "snapshots": await self._snapshots(),
            "clock": {
                "virtual": self.station.clock.is_virtual,
                "start_s": self.station.clock.now_s(),
            },
        }

    async def _snapshots(self) -> dict[str, Any]:
        names = list(self.station.instruments)

        async def one(name: str) -> Any:
            try:
                return await asyncio.wait_for(
                    self.station.instruments[name].snapshot(), self.call_timeout_s
                )
            except Exception as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}

        values = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, values, strict=True))

    async def _safe_state_all(self, log: logging.Logger) -> dict[str, str]:
        """safe_state() on every instrument in parallel; errors collected, none skipped."""
        names = list(self.station.instruments)

        async def one(name: str) -> str | None:
            try:
                await asyncio.wait_for(
                    self.station.instruments[name].safe_state(), self.safe_state_timeout_s
                )
            except TimeoutError:
                return f"safe_state timed out after {self.safe_state_timeout_s} s"
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            return None

        # Shielded: a second cancel while cleaning up must not leave a laser on.
        results = await asyncio.shield(asyncio.gather(*(one(n) for n in names)))
        errors = {n: e for n, e in zip(names, results, strict=True) if e is not None}
        for name, error in errors.items():
            log.error("safe_state(%s) failed: %s", name, error)
        return errors


def _summary_degraded(folder: RunFolder) -> str | None:
    """The reason when the plan's summary.json says ``degraded``, else None."""
    try:
        summary = folder.read_summary()
    except ValueError as exc:
        logging.getLogger(__name__).warning("%s", exc)
        return None
    if summary is None or summary.get("status") != FinalStatus.DEGRADED.value:
        return None
    return str(summary.get("reason") or "the plan's summary says degraded")


def _run_logger(folder: RunFolder) -> tuple[logging.Logger, logging.Handler]:
    log = logging.getLogger(f"labctl.run.{folder.run_id}")
    log.setLevel(logging.INFO)
    handler = logging.FileHandler(folder.log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return log, handler

"""Running plans from notebooks and scripts.

In Jupyter, ``await engine.run(plan)`` works directly: the RunEngine runs on whatever loop
is running (IPython's), never calling ``asyncio.run`` itself. Scripts without a loop use
``SyncRunner``: it owns an event loop in a background thread and blocks on each call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from labctl.runner.control import RunControl
from labctl.runner.engine import RunEngine, RunResult
from labctl.runner.plans import Plan

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop running in a daemon thread; ``call(coro)`` blocks for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="labctl-loop", daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the background loop and wait (TimeoutError after ``timeout_s``)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and join the thread; idempotent."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout_s)
        self.loop.close()


class SyncRunner:
    """Blocking facade: ``with SyncRunner(make_station, runs_dir=...) as r: r.run(plan)``.

    ``make_station`` is called on the background loop (instruments bind to the loop that
    connects them); the station is entered with ``async with`` when it supports it.
    """

    def __init__(
        self, make_station: Callable[[], Any], *, runs_dir: Path, **engine_options: Any
    ) -> None:
        self._loop = BackgroundLoop()
        self.control: RunControl | None = None
        try:
            self.station = self._loop.call(self._open(make_station))
            self.engine = RunEngine(self.station, runs_dir=runs_dir, **engine_options)
        except BaseException:
            self._loop.close()
            raise

    async def _open(self, make_station: Callable[[], Any]) -> Any:
        station = make_station()
        if isinstance(station, Awaitable):
            station = await station
        enter = getattr(station, "__aenter__", None)
        if enter is not None:
            await enter()
        return station

    def run(self, plan: Plan, *, timeout_s: float | None = None, **run_options: Any) -> RunResult:
        """Run ``plan`` to its end (see RunEngine.run for the options)."""
        self.control = RunControl()
        return self._loop.call(
            self.engine.run(plan, control=self.control, **run_options), timeout_s
        )

    def resume(self, run_dir: Path, plan: Plan | None = None, **options: Any) -> RunResult:
        """Resume a run folder (see RunEngine.resume)."""
        self.control = RunControl()
        return self._loop.call(self.engine.resume(run_dir, plan, control=self.control, **options))

    def abort(self, reason: str = "aborted from script") -> None:
        """Abort the current run at its next checkpoint (callable from any thread)."""
        if self.control is not None:
            self.control.threadsafe(self.control.abort, reason)

    def close(self) -> None:
        """Leave the station (closing instruments) and stop the loop."""
        exit_ = getattr(self.station, "__aexit__", None)
        try:
            if exit_ is not None:
                self._loop.call(exit_(None, None, None), 30.0)
        finally:
            self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

"""Running plans and instruments from notebooks and scripts.

``open_station(CONFIG)`` is the notebook entry point: it opens the station on an event loop
of its own, in a background thread owned by the returned ``NotebookStation``, and gives
every instrument as a qcodes Instrument with Parameters and units
(``lab["laser"].power_mw(1.0)``, ``lab.qcodes.snapshot()``). Parameter calls and
``lab.run(plan)`` work the same from a notebook cell (whose own loop is running), a script
or a thread: the work is done on the station's loop, never on the caller's.
``lab.close()`` (or leaving ``with open_station(...) as lab:``) puts every instrument in its
safe state, closes it and stops the loop.

For lower-level use, ``await engine.run(plan)`` also works directly in Jupyter (the
RunEngine never calls ``asyncio.run``), and ``SyncRunner`` blocks on each call in scripts.
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


class NotebookStation:
    """A station opened on its own background loop, with its instruments as qcodes ones.

    ``lab["laser"]`` is the qcodes instrument of labctl instrument ``laser`` (the names of
    the station file; ``lab.qcodes`` is the qcodes Station holding them all, for
    ``Measurement(station=lab.qcodes)`` and snapshots). ``lab.station`` is the labctl
    Station itself: its instruments live on ``lab.loop``; reach their async API with
    ``lab.call(instrument.get_output())``.
    """

    def __init__(
        self,
        config: Any,
        *,
        runs_dir: str | Path | None = None,
        timeout_s: float = 60.0,
        **engine_options: Any,
    ) -> None:
        from qcodes.station import Station as QcodesStation

        from labctl.station import Station, load_config
        from labctl.station.qcodes_bridge import LabctlQcodesInstrument, LoopCaller

        self.config = config if not isinstance(config, str | Path) else load_config(config)
        self.timeout_s = timeout_s
        self._background = BackgroundLoop()
        self.loop = self._background.loop
        self.qcodes = QcodesStation()
        self.instruments: dict[str, LabctlQcodesInstrument] = {}
        self.control: RunControl | None = None
        self._open = False
        try:

            async def open_() -> Any:
                station = Station.from_config(self.config, timeout_s=timeout_s)
                await station.__aenter__()
                return station

            self.station = self._background.call(open_(), timeout_s)
            self._open = True
            caller = LoopCaller(self.loop, timeout_s=timeout_s)
            for name, instrument in self.station.instruments.items():
                wrapped = LabctlQcodesInstrument(instrument, caller)
                self.instruments[name] = wrapped
                self.qcodes.add_component(wrapped)
            if not engine_options:
                from labctl.cli.runsetup import engine_options as from_config

                engine_options = from_config(self.config)
            self.engine = RunEngine(
                self.station,
                runs_dir=Path(runs_dir if runs_dir is not None else self.config.storage.runs_dir),
                config=self.config.model_dump(mode="json"),
                **engine_options,
            )
        except BaseException:
            self.close()
            raise

    def __getitem__(self, name: str) -> Any:
        """The qcodes instrument of labctl instrument ``name`` (KeyError lists the names)."""
        try:
            return self.instruments[name]
        except KeyError:
            known = sorted(self.instruments)
            raise KeyError(f"no instrument {name!r}; this station has {known}") from None

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run a coroutine of the labctl API on the station's loop and return its result."""
        return self._background.call(coro, self.timeout_s if timeout_s is None else timeout_s)

    def run(self, plan: Plan, *, timeout_s: float | None = None, **run_options: Any) -> RunResult:
        """Run ``plan`` to its end on the station's loop (options as ``RunEngine.run``).

        ``timeout_s`` is the run's wall-clock limit: it ends ``timeout`` after that long.
        """
        self.control = RunControl()
        future = asyncio.run_coroutine_threadsafe(
            self.engine.run(plan, control=self.control, timeout_s=timeout_s, **run_options),
            self.loop,
        )
        return future.result()

    async def run_async(
        self, plan: Plan, *, timeout_s: float | None = None, **run_options: Any
    ) -> RunResult:
        """``await lab.run_async(plan)``: as ``run``, leaving the notebook's loop free."""
        self.control = RunControl()
        future = asyncio.run_coroutine_threadsafe(
            self.engine.run(plan, control=self.control, timeout_s=timeout_s, **run_options),
            self.loop,
        )
        return await asyncio.wrap_future(future)

    def abort(self, reason: str = "aborted from notebook") -> None:
        """Abort the current run at its next checkpoint (callable from any thread)."""
        if self.control is not None:
            self.control.threadsafe(self.control.abort, reason)

    def close(self) -> None:
        """Close the qcodes instruments, leave the station (safe state, close), stop the loop.

        Idempotent; a second ``open_station`` of the same file can follow in the same kernel.
        """
        for wrapped in self.instruments.values():
            wrapped.close()
        self.instruments.clear()
        try:
            if self._open:
                self._open = False
                self._background.call(self.station.__aexit__(None, None, None), self.timeout_s)
        finally:
            self._background.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._open else "closed"
        where = f"{self.config.lab}/{self.config.node}"
        return f"<NotebookStation {where} {state}: {sorted(self.instruments)}>"


def open_station(
    config: str | Path | Any,
    *,
    runs_dir: str | Path | None = None,
    timeout_s: float = 60.0,
    **engine_options: Any,
) -> NotebookStation:
    """Open a station file (or a loaded StationConfig) for a notebook or a script.

    Connects every instrument on a background loop owned by the returned NotebookStation
    and bridges each one to qcodes; ``timeout_s`` bounds connecting, closing and every
    parameter call. Runs go to ``runs_dir`` (default: the file's ``storage.runs_dir``).
    """
    return NotebookStation(config, runs_dir=runs_dir, timeout_s=timeout_s, **engine_options)

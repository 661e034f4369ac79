"""Progress bars for long steps: rich in a terminal and in Jupyter, silent in CI logs.

``with progress.task("sweep", total=n) as p: p.advance()``. rich decides where it draws
(a live widget in notebooks, an updating line in terminals); when the console is neither
a terminal nor a notebook (CI, redirected output) nothing is drawn, but the counts are
still kept so the runner can report them and feed its watchdog.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from labctl.log import terminal_console


@dataclass(slots=True)
class ProgressTask:
    """One running task: ``advance()`` after each step."""

    name: str
    total: float | None
    completed: float = 0.0
    _on_change: Callable[[ProgressTask], None] | None = field(default=None, repr=False)

    def advance(self, steps: float = 1.0) -> None:
        """Count ``steps`` more steps done."""
        self.completed += steps
        if self._on_change is not None:
            self._on_change(self)

    def update(self, *, completed: float | None = None, total: float | None = None) -> None:
        """Set the absolute progress and/or the total."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if self._on_change is not None:
            self._on_change(self)


class RunProgress:
    """Progress bars of one run (or one notebook session)."""

    def __init__(
        self,
        *,
        file: IO[str] | None = None,
        enabled: bool | None = None,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        # On stderr, share the terminal log handler's Console: log lines then print above
        # the live bars instead of onto the bar's line.
        shared = terminal_console() if file is None else None
        self.console = shared or Console(file=file, stderr=file is None)
        # rich reports Jupyter separately from terminals; draw in either, never in CI logs.
        # LABCTL_PROGRESS=0 turns drawing off (headless notebook execution, where live
        # widgets only race with the executor).
        if enabled is None:
            enabled = os.environ.get("LABCTL_PROGRESS", "1") != "0" and (
                self.console.is_terminal or self.console.is_jupyter
            )
        self.enabled = enabled
        self.on_activity = on_activity
        self._progress: Progress | None = None
        self._ids: dict[int, TaskID] = {}
        self.tasks: list[ProgressTask] = []

    def _bar(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self._progress

    def _changed(self, task: ProgressTask) -> None:
        if self.on_activity is not None:
            self.on_activity()
        if self.enabled and id(task) in self._ids:
            # A step count that outgrows its estimate (a retried block, a longer run) grows
            # the total with it: the bar never shows "5/4".
            total = task.total
            if total is not None and task.completed > total:
                total = task.total = task.completed
            self._bar().update(self._ids[id(task)], completed=task.completed, total=total)

    @contextmanager
    def task(self, name: str, total: float | None = None) -> Iterator[ProgressTask]:
        """A progress bar for one step; removed from the live display when the block ends."""
        if total is not None and total < 0:
            raise ValueError(f"progress task {name!r}: total must be >= 0, got {total}")
        handle = ProgressTask(name, total, _on_change=self._changed)
        self.tasks.append(handle)
        if self.enabled:
            self._ids[id(handle)] = self._bar().add_task(name, total=total)
        try:
            yield handle
        finally:
            self.tasks.remove(handle)
            task_id = self._ids.pop(id(handle), None)
            if task_id is not None and self._progress is not None:
                self._progress.update(task_id, completed=handle.completed)
                self._progress.remove_task(task_id)
            if not self.tasks:
                self.close()

    def close(self) -> None:
        """Stop the live display; idempotent."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

"""What a plan may use of its run: the typed seam between plans and the runner.

A plan is ``async def plan(run: PlanContext) -> result``. The runner's RunContext is one
implementation; nothing here names a simulation: a plan reaches instruments through their
interfaces and Alice's side through the classical channel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from labctl.documents import Document
from labctl.interfaces.clock import Clock
from labctl.interfaces.instrument import Instrument
from labctl.progress import RunProgress
from labctl.runner.suspenders import Plan, Suspender
from labctl.store.datasets import Column, RunDataset
from labctl.store.run_folder import RunFolder

P = TypeVar("P")


class PlanStation(Protocol):
    """A station as plans see it: instruments, a clock and the config they came from."""

    @property
    def instruments(self) -> Mapping[str, Instrument]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def config(self) -> Any: ...  # StationConfig; Any keeps test stations light


class PlanContext(Protocol):
    """The run a plan is given (``labctl.runner.context.RunContext`` implements it)."""

    @property
    def station(self) -> PlanStation: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def run_id(self) -> str: ...

    @property
    def folder(self) -> RunFolder: ...

    @property
    def progress(self) -> RunProgress: ...

    @property
    def log(self) -> logging.Logger: ...

    @property
    def deadline_s(self) -> float | None: ...

    @property
    def resume_state(self) -> Any:
        """The state of the last checkpoint when this run is resumed, else None."""
        ...

    def instrument(self, name: str, kind: type[P] | None = None) -> P: ...

    def emit(self, stream: str, data: dict[str, Any]) -> Document: ...

    def dataset(
        self,
        name: str,
        *,
        setpoints: Sequence[str | Column] = (),
        measured: Sequence[str | Column],
    ) -> RunDataset: ...

    def add_suspender(self, suspender: Suspender) -> None: ...

    def add_remedy(self, name: str, remedy: Plan) -> None: ...

    async def sleep(self, duration_s: float) -> None: ...

    async def checkpoint(self, state: Any = None) -> None: ...

    def commit(self, state: Any, event: tuple[str, dict[str, Any]] | None = None) -> None:
        """Persist ``state`` as the point a resume continues from, now (no pause point);
        with ``event`` (stream, data), emit that event as part of the same commit."""
        ...

    def degrade(self, reason: str) -> None:
        """The plan finished short of its purpose: end the run ``degraded``, not ``ok``."""
        ...

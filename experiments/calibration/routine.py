"""Running one routine: verdict, calibration store entry, events; failures become reasons."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.calibration.common import CalibrationFailed, RoutineResult, Session
from labctl.interfaces.errors import ConfigError, InstrumentError
from labctl.runner.plan_context import PlanContext
from labctl.store.calibration import Calibration, CalibrationStore

RoutineFn = Callable[[Session], Awaitable[RoutineResult]]


@dataclass(frozen=True, slots=True)
class Routine:
    """A named calibration: what it calibrates and the coroutine that does it."""

    name: str
    role: str
    title: str
    fn: RoutineFn


def plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples as JSON-able Python values (NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def store_of(run: PlanContext) -> CalibrationStore | None:
    """The station's calibration store (None for a station built without a config)."""
    config = getattr(run.station, "config", None)
    storage = getattr(config, "storage", None)
    path = getattr(storage, "calibration_store", None)
    return None if path is None else CalibrationStore(Path(path))


async def run_routine(session: Session, routine: Routine) -> RoutineResult:
    """Run ``routine``; refusals and failures come back as a failed result with the reason."""
    run = session.run
    try:
        result = await routine.fn(session)
    except CalibrationFailed as exc:
        result = RoutineResult(routine.name, _instrument(session, routine), False, str(exc))
    except (InstrumentError, ConfigError) as exc:
        result = RoutineResult(routine.name, _instrument(session, routine), False, str(exc))
    result.values = plain(result.values)
    run.emit(
        "calibration",
        {"routine": result.name, "passed": result.passed, "reason": result.reason, **result.values},
    )
    store = store_of(run)
    if result.passed and store is not None:
        now = run.clock.now_s()
        valid_s = float(session.settings.section(routine.name).get("valid_s", 86400.0))
        store.save(
            Calibration(
                instrument=result.instrument,
                kind=routine.name,
                values=result.values,
                time_s=now,
                expires_s=now + valid_s,
                provenance={
                    "run_id": run.run_id,
                    "routine": routine.name,
                    "dataset": result.dataset,
                },
            )
        )
    return result


def _instrument(session: Session, routine: Routine) -> str:
    return session.name_of(routine.role)

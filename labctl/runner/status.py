"""Run states (ARTIQ-style small enum) and the exceptions that stop a plan."""

from __future__ import annotations

from enum import Enum, StrEnum


class RunState(Enum):
    """Where a run is in its life; published as the node's ``$state``."""

    PREPARING = "preparing"
    RUNNING = "running"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    DONE = "done"


class FinalStatus(StrEnum):
    """How a run ended: the stop document's ``exit_status`` and metadata.json's ``status``.

    ``degraded``: the plan finished, but its result falls short of what the run is for (key
    generation: too few blocks gave key); ``labctl run`` exits 3 for it.
    """

    OK = "ok"
    DEGRADED = "degraded"
    ABORTED = "aborted"
    HALTED = "halted"
    TIMEOUT = "timeout"
    FAILED = "failed"


FINISHED = frozenset({FinalStatus.OK.value, FinalStatus.DEGRADED.value})
"""Statuses of a run whose plan ran to its end (nothing to resume)."""


class StopPlan(BaseException):
    """Raised inside a plan at a checkpoint to stop it (abort or timeout).

    A BaseException, like ``asyncio.CancelledError``, so that a plan's ``except Exception``
    cannot swallow an operator's abort.
    """

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason

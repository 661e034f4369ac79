"""Run states (ARTIQ-style small enum) and the exceptions that stop a plan."""

from __future__ import annotations

from enum import Enum


class RunState(Enum):
    """Where a run is in its life; published as the node's ``$state``."""

    PREPARING = "preparing"
    RUNNING = "running"
    PAUSED = "paused"
    SUSPENDED = "suspended"
    STOPPING = "stopping"
    DONE = "done"


class StopPlan(BaseException):
    """Raised inside a plan at a checkpoint to stop it (abort or timeout).

    A BaseException, like ``asyncio.CancelledError``, so that a plan's ``except Exception``
    cannot swallow an operator's abort.
    """

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason

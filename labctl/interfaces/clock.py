"""One clock interface for the lab (wall time) and for the simulated world (virtual time).

Plans and the runner read time and sleep only through a Clock, so a 12-hour simulated run
can finish in minutes while the same plan on hardware follows the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Source of time for plans, runners and instruments."""

    @property
    def is_virtual(self) -> bool:
        """True for simulated time that runs as fast as the CPU allows."""
        ...

    def now_s(self) -> float:
        """Seconds since the clock's epoch (Unix epoch for wall time, sim start for virtual)."""
        ...

    async def sleep(self, duration_s: float) -> None:
        """Let ``duration_s`` seconds of this clock's time pass."""
        ...


class WallClock:
    """Real time: the clock every real-hardware station uses."""

    @property
    def is_virtual(self) -> bool:
        return False

    def now_s(self) -> float:
        return time.time()

    async def sleep(self, duration_s: float) -> None:
        await asyncio.sleep(max(0.0, duration_s))

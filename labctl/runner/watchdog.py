"""A watchdog that notices a stalled plan (no checkpoint, progress or event) or stream.

It measures wall time (monotonic): a hung instrument call stalls wall time on hardware and
in simulation alike, whereas a virtual clock stops advancing exactly when things hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Watchdog:
    """Calls ``on_stall(reason)`` once when the plan or a watched stream goes quiet."""

    def __init__(
        self,
        *,
        plan_timeout_s: float | None,
        on_stall: Callable[[str], None],
        poll_s: float = 0.5,
    ) -> None:
        if plan_timeout_s is not None and plan_timeout_s <= 0:
            raise ValueError(f"watchdog plan_timeout_s must be > 0, got {plan_timeout_s}")
        self.plan_timeout_s = plan_timeout_s
        self.on_stall = on_stall
        self.poll_s = poll_s
        self._last_activity = time.monotonic()
        self._streams: dict[str, tuple[float, float]] = {}  # name -> (max gap, last seen)
        self.fired: str | None = None

    def kick(self) -> None:
        """Record plan activity (checkpoint, progress, event)."""
        self._last_activity = time.monotonic()

    def watch_stream(self, stream: str, max_gap_s: float) -> None:
        """Require an event on ``stream`` at least every ``max_gap_s`` wall seconds."""
        if max_gap_s <= 0:
            raise ValueError(f"watch_stream({stream!r}): max_gap_s must be > 0")
        self._streams[stream] = (max_gap_s, time.monotonic())

    def saw_stream(self, stream: str) -> None:
        """Record an event on ``stream``."""
        watched = self._streams.get(stream)
        if watched is not None:
            self._streams[stream] = (watched[0], time.monotonic())

    def check(self) -> str | None:
        """Why the run looks stalled now, or None."""
        now = time.monotonic()
        if self.plan_timeout_s is not None and now - self._last_activity > self.plan_timeout_s:
            return (
                f"watchdog: plan stalled (no checkpoint, progress or event for "
                f"{now - self._last_activity:.1f} s > {self.plan_timeout_s} s)"
            )
        for stream, (max_gap_s, last) in self._streams.items():
            if now - last > max_gap_s:
                return (
                    f"watchdog: stream {stream!r} stalled "
                    f"(no event for {now - last:.1f} s > {max_gap_s} s)"
                )
        return None

    async def run(self) -> None:
        """Poll until a stall is found (then report it once and return) or cancelled."""
        while True:
            await asyncio.sleep(self.poll_s)
            reason = self.check()
            if reason is not None:
                self.fired = reason
                self.on_stall(reason)
                return

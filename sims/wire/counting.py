"""Counter readings of wire twins: every event of one whole window of sim time.

A device's counter reports the events of its last window (a gate, an integration time).
Counting a short sample of the window and scaling it up would turn a few dark counts into
0 or a multiple of the scale, so a reading counts one whole window of sim time. It is
counted when asked (nothing is counted while nobody reads), and the channels read one
after the other for one look share it, as a device's counters count side by side: a
reading serves each channel once, for a window of wall time at most, so a channel asked
again gets a new window that shows any change made since.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

CountRates = Callable[[float], Awaitable[Sequence[float] | None]]
"""The twin's count rates (Hz) of every channel over so many seconds of sim time (None:
the twin refused, nothing counted)."""


class WindowCounter:
    """Counts of every channel over one whole window of sim time, one reading a look."""

    def __init__(self) -> None:
        self._window_s = 0.0
        self._taken_s = -math.inf
        self._counts: list[int] = []
        self._served: set[int] = set()

    async def count(self, count_rates: CountRates, window_s: float, channel: int) -> int | None:
        """Events on ``channel`` in a whole window of ``window_s`` (None: the twin refused)."""
        now_s = asyncio.get_running_loop().time()
        shared = (
            window_s == self._window_s
            and channel not in self._served
            and now_s - self._taken_s < window_s
        )
        if not shared:
            rates = await count_rates(window_s)
            if rates is None:
                return None
            self._counts = [round(float(rate) * window_s) for rate in rates]
            self._window_s, self._served = window_s, set()
            self._taken_s = asyncio.get_running_loop().time()
        self._served.add(channel)
        return self._counts[channel]

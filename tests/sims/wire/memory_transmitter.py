"""A plain in-memory Transmitter for wire tests: it stores what it is told and plays nothing.

The Pulse Streamer wire twin only adapts the Transmitter protocol, so this real (if
minimal) implementation is enough to check what reaches the twin through the wire.
"""

from __future__ import annotations

from typing import Any

from labctl.interfaces.errors import InstrumentFault
from labctl.interfaces.instrument import Health, LifecycleMixin
from labctl.interfaces.pattern import PatternMode, PulsePattern


class MemoryTransmitter(LifecycleMixin):
    """Keeps the loaded pattern, the appended chunks and a log of calls (no secrets logged)."""

    memory_pulses = 2_000_000
    upload_pulses = 2_000_000
    pattern_mode = PatternMode.STREAMED

    def __init__(self, name: str = "transmitter") -> None:
        self.name = name
        self.period_ps = 10_000
        self.divider = 1000
        self.pattern: PulsePattern | None = None
        self.repeat = False
        self.chunks: list[PulsePattern] = []
        self.running = False
        self.calls: list[str] = []
        self.faults: dict[str, Exception] = {}  # method name -> error raised once

    def _fault(self, method: str) -> None:
        error = self.faults.pop(method, None)
        if error is not None:
            raise error

    async def connect(self) -> None:
        self.calls.append("connect")

    async def close(self) -> None:
        self.calls.append("close")

    async def snapshot(self) -> dict[str, Any]:
        return {"period_ps": self.period_ps, "marker_divider": self.divider}

    async def safe_state(self) -> None:
        await self.stop()

    async def health(self) -> Health:
        return Health(ok=True)

    async def set_period_ps(self, period_ps: int) -> None:
        self.calls.append("set_period_ps")
        if period_ps <= 0:
            raise InstrumentFault("period must be > 0", instrument=self.name, command="period")
        self.period_ps = period_ps

    async def get_period_ps(self) -> int:
        return self.period_ps

    async def set_marker_divider(self, divider: int) -> None:
        self.calls.append("set_marker_divider")
        self.divider = divider

    async def get_marker_divider(self) -> int:
        return self.divider

    async def load_pattern(self, pattern: PulsePattern, *, repeat: bool) -> None:
        self.calls.append("load_pattern")
        self._fault("load_pattern")
        self.running = False
        self.pattern = pattern
        self.repeat = repeat
        self.chunks = []

    async def append_pattern(self, pattern: PulsePattern) -> None:
        self.calls.append("append_pattern")
        self._fault("append_pattern")
        self.chunks.append(pattern)

    async def start(self) -> None:
        self.calls.append("start")
        if self.pattern is None:
            raise InstrumentFault("no pattern loaded", instrument=self.name, command="start")
        self.running = True

    async def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    async def is_running(self) -> bool:
        self._fault("is_running")
        return self.running

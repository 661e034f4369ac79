"""The block clock relocks between close blocks and resynchronizes after a long gap."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from experiments.keygen import steps
from experiments.sync import SyncError
from sims.clock import VirtualClock


class Run:
    """What BlockClock uses of a plan's run context: its clock, log and events."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.log = logging.getLogger("test.block_clock")
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, stream: str, data: dict[str, Any]) -> None:
        self.events.append((stream, data))


class Sync:
    """Stand-ins for relock and synchronize that record their calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock_lost = False

    async def relock(self, tracker: object, tagger: object) -> str:
        self.calls.append("relock")
        if self.lock_lost:
            raise SyncError("synchronization lost")
        return "relocked"

    async def synchronize(self, run: Run) -> str:
        self.calls.append("synchronize")
        return "synchronized"


@pytest.fixture
def sync(monkeypatch: pytest.MonkeyPatch) -> Sync:
    fake = Sync()
    monkeypatch.setattr(steps, "relock", fake.relock)
    monkeypatch.setattr(steps, "synchronize", fake.synchronize)
    monkeypatch.setattr(steps, "SyncTracker", lambda result: f"tracker of {result}")
    return fake


async def test_close_blocks_relock_and_a_long_gap_resynchronizes(sync: Sync) -> None:
    run = Run()
    clock = steps.BlockClock("initial map")
    clock.tracker = "tracker"  # type: ignore[assignment]  # a tracked SyncResult stands here
    assert await clock.for_block(run, None) == "relocked"  # type: ignore[arg-type]
    run.clock.advance_to(10.0)  # a block later
    assert await clock.for_block(run, None) == "relocked"  # type: ignore[arg-type]
    assert sync.calls == ["relock", "relock"] and run.events == []
    # A suspension of an hour: the drift may have slipped whole pulses, which a relock
    # (phase only) cannot see.
    run.clock.advance_to(10.0 + 3600.0)
    assert await clock.for_block(run, None) == "synchronized"  # type: ignore[arg-type]
    assert sync.calls[2:] == ["synchronize"] and clock.resyncs == 1
    ((stream, data),) = run.events
    assert stream == "sync" and data["action"] == "resynchronize"
    assert "last lock 3600 s ago" in data["reason"]
    # Tracking goes on from the new synchronization.
    run.clock.advance_to(3620.0)
    assert await clock.for_block(run, None) == "relocked"  # type: ignore[arg-type]


async def test_a_lost_lock_resynchronizes(sync: Sync) -> None:
    run = Run()
    clock = steps.BlockClock("initial map")
    clock.tracker = "tracker"  # type: ignore[assignment]
    sync.lock_lost = True
    assert await clock.for_block(run, None) == "synchronized"  # type: ignore[arg-type]
    assert sync.calls == ["relock", "synchronize"]
    assert run.events == [("sync", {"action": "resynchronize", "reason": "synchronization lost"})]

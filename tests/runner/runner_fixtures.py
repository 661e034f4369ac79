"""A real (file-backed) test instrument and small plans for the runner's subprocess tests.

MarkerInstrument appends every lifecycle call to a JSON-lines file named in its settings,
so a test can see from outside the process that ``safe_state()`` really ran.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.interfaces import (
    BuildContext,
    Clock,
    Health,
    InstrumentSpec,
    LifecycleMixin,
    WallClock,
)


@dataclass
class MiniStation:
    """The part of labctl.station.Station the runner uses: instruments and a clock."""

    instruments: Mapping[str, Any] = field(default_factory=dict)
    clock: Clock = field(default_factory=WallClock)


class MarkerInstrument(LifecycleMixin):
    """An instrument whose only state is an output flag, journaled to a file."""

    def __init__(self, name: str, marker_file: Path, clock: Clock) -> None:
        self.name = name
        self.marker_file = Path(marker_file)
        self.clock = clock
        self.output = False
        self.connected = False
        self.safe_states = 0

    @classmethod
    def from_config(cls, spec: InstrumentSpec, context: BuildContext) -> MarkerInstrument:
        """Build from ``settings.marker_file``."""
        return cls(spec.name, Path(spec.settings["marker_file"]), context.clock)

    def _mark(self, action: str) -> None:
        with open(self.marker_file, "a", encoding="utf-8") as handle:
            handle.write(
                json.dumps({"instrument": self.name, "action": action, "pid": os.getpid()}) + "\n"
            )
            handle.flush()
            os.fsync(handle.fileno())

    async def connect(self) -> None:
        """Mark the connection."""
        self.connected = True
        self._mark("connect")

    async def close(self) -> None:
        """Mark the close."""
        self.connected = False
        self._mark("close")

    async def snapshot(self) -> dict[str, Any]:
        """The output flag."""
        return {"output": self.output, "marker_file": str(self.marker_file)}

    async def safe_state(self) -> None:
        """Output off, journaled."""
        self.output = False
        self.safe_states += 1
        self._mark("safe_state")

    async def health(self) -> Health:
        """Always healthy while connected."""
        return Health(self.connected, "" if self.connected else "not connected")

    async def set_output(self, enabled: bool) -> None:
        """Switch the (pretend) output."""
        self.output = enabled
        self._mark(f"output={enabled}")


def read_marks(path: Path) -> list[dict[str, Any]]:
    """Every journaled call, in order."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


async def counting_plan(run: Any) -> dict[str, int]:
    """Record measurements 0..n-1 (primary stream + dataset), checkpointing after each.

    ``args``: n (default 20), step_s (run-clock sleep per step, default 0.05), fail_at
    (raise RuntimeError at that index).
    """
    n = int(run.args.get("n", 20))
    step_s = float(run.args.get("step_s", 0.05))
    fail_at = run.args.get("fail_at")
    laser = run.instrument("laser")
    await laser.set_output(True)
    dataset = run.dataset("counts", setpoints=["idx"], measured=["value_hz"])
    start = int((run.resume_state or {}).get("next", 0))
    with run.progress.task("counting", total=n) as bar:
        bar.update(completed=start)
        for i in range(start, n):
            if fail_at is not None and i == int(fail_at):
                raise RuntimeError(f"simulated plan failure at index {i}")
            await run.sleep(step_s)
            dataset.add(idx=i, value_hz=1000.0 + i)
            run.emit("primary", {"index": i, "value_hz": 1000.0 + i})
            bar.advance()
            await run.checkpoint({"next": i + 1})
    return {"recorded": n - start}


async def stuck_plan(run: Any) -> None:
    """Switch the output on, then wait forever without a checkpoint (only halt stops it)."""
    await run.instrument("laser").set_output(True)
    run.emit("primary", {"index": 0})
    await asyncio.sleep(3600)


async def degraded_plan(run: Any) -> dict[str, int]:
    """Finishes, but marks the run degraded (``args.via``: ``call`` or ``summary``).

    It runs half a second first, so that an observer of ``$state`` sees ``running`` (the
    publisher sends the latest state, not every one it passed through)."""
    await asyncio.sleep(0.5)
    if run.args.get("via", "call") == "summary":
        (run.folder.path / "summary.json").write_text(
            '{"status": "degraded", "reason": "only 1 of 10 blocks gave key"}'
        )
    else:
        run.degrade("only 1 of 10 blocks gave key")
    return {"blocks": 10}


async def chatty_plan(run: Any) -> int:
    """Logs a line per step under two progress bars; the first undercounts its steps.

    ``args``: n (default 6), step_s (wall seconds per step, default 0.1).
    """
    n = int(run.args.get("n", 6))
    step_s = float(run.args.get("step_s", 0.1))
    with run.progress.task("setup", total=2) as setup:
        for _ in range(2):
            await asyncio.sleep(step_s)
            setup.advance()
    with run.progress.task("blocks", total=n - 2) as bar:  # an estimate that falls short
        for i in range(n):
            await asyncio.sleep(step_s)
            run.log.info("chatty step %d of %d", i + 1, n)
            bar.advance()
            await run.checkpoint()
    return n


async def settings_plan(run: Any) -> dict[str, Any]:
    """Emits the ``qkd`` section as the plan sees it (what ``--set qkd.KEY=V`` changed)."""
    section = dict(run.station.config.raw_section("qkd") or {})
    run.emit("primary", {"qkd": section, "args": dict(run.args)})
    return section

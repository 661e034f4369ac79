"""Suspender on the virtual clock: a drift jump raises QBER -> suspend -> remedy -> resume.

The link is a clearly-named test instrument (DriftingLinkTestInstrument) whose QBER follows
the closed form e_det + (1 - 2 e_det) sin^2(theta) of the residual polarization rotation
theta; a drift jump at a scheduled sim time adds to theta, and the remedy (standing in for
the polarization calibration plan) turns the compensator back. The twins-based version
needs the qkd side's live QBER estimate and the calibration plan (see the runner report).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from labctl.interfaces import Health, LifecycleMixin
from labctl.runner.engine import RunEngine
from labctl.runner.suspenders import Backoff, Suspender
from labctl.store.events import read_events
from sims.clock import VirtualClock
from tests.runner.runner_fixtures import MiniStation

E_DET = 0.01
QBER_LIMIT = 0.05
JUMP_AT_S = 30.0


class DriftingLinkTestInstrument(LifecycleMixin):
    """A QKD link stand-in: residual rotation theta = drift - compensation."""

    def __init__(self, clock: VirtualClock) -> None:
        self.name = "link"
        self.clock = clock
        self.drift_rad = 0.0
        self.compensation_rad = 0.0
        self.safe_states = 0

    async def connect(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    async def snapshot(self) -> dict[str, Any]:
        """Current angles."""
        return {"drift_rad": self.drift_rad, "compensation_rad": self.compensation_rad}

    async def safe_state(self) -> None:
        """Count calls (the stand-in has no light to switch off)."""
        self.safe_states += 1

    async def health(self) -> Health:
        """Always healthy."""
        return Health(True)

    async def qber(self) -> float:
        """Closed-form QBER of the residual rotation."""
        theta = self.drift_rad - self.compensation_rad
        return E_DET + (1 - 2 * E_DET) * math.sin(theta) ** 2


async def measuring_plan(run: Any) -> int:
    """Measure QBER once per simulated second for 120 s, checkpointing each time."""
    link = run.instrument("link")
    for i in range(120):
        await run.sleep(1.0)
        run.emit("primary", {"index": i, "qber": await link.qber(), "t_s": run.clock.now_s()})
        await run.checkpoint({"next": i + 1})
    return 120


async def test_drift_jump_suspends_recalibrates_and_resumes(tmp_path: Path) -> None:
    clock = VirtualClock()
    link = DriftingLinkTestInstrument(clock)
    clock.call_at(JUMP_AT_S + 0.5, lambda: setattr(link, "drift_rad", 0.6))
    remedies: list[float] = []

    async def recalibrate(run: Any) -> None:
        remedies.append(run.clock.now_s())
        await run.sleep(5.0)  # the scan takes sim time
        link.compensation_rad = link.drift_rad

    suspender = Suspender.above(
        "qber", link.qber, QBER_LIMIT, quantity="QBER", remedy=recalibrate, settle_s=10.0
    )
    station = MiniStation({"link": link}, clock)
    result = await RunEngine(station, runs_dir=tmp_path, suspenders=[suspender]).run(measuring_plan)
    assert result.status == "ok"
    events = read_events(result.path / "events.jsonl")
    runner = [e for e in events if e["stream"] == "runner"]
    actions = [e["data"]["action"] for e in runner]
    assert actions == ["suspended", "remedy-start", "remedy-done", "unsuspended"]
    suspended = runner[0]
    assert suspended["data"]["reason"].startswith("QBER 0.3")  # 0.01 + 0.98 sin^2(0.6)
    assert math.isclose(suspended["ts"], JUMP_AT_S + 1.0)
    # plan resumes only after the remedy (5 s) and the settle delay (10 s) on the run clock
    resumed_at = runner[-1]["ts"]
    assert math.isclose(resumed_at - suspended["ts"], 15.0)
    primary = [e["data"] for e in events if e["stream"] == "primary" and e["kind"] == "event"]
    assert [p["index"] for p in primary] == list(range(120))
    high = [p for p in primary if p["qber"] > QBER_LIMIT]
    assert len(high) == 1 and math.isclose(high[0]["t_s"], JUMP_AT_S + 1.0)
    assert all(math.isclose(p["qber"], E_DET) for p in primary if p is not high[0])
    assert link.safe_states == 1


async def test_remedy_that_fails_n_times_aborts_with_reason(tmp_path: Path) -> None:
    clock = VirtualClock()
    link = DriftingLinkTestInstrument(clock)
    link.drift_rad = 0.6

    async def broken_recalibration(run: Any) -> None:
        raise RuntimeError("polarization scan found no minimum")

    suspender = Suspender.above(
        "qber",
        link.qber,
        QBER_LIMIT,
        quantity="QBER",
        remedy=broken_recalibration,
        settle_s=2.0,
        max_failures=2,
    )
    station = MiniStation({"link": link}, clock)
    result = await RunEngine(station, runs_dir=tmp_path, suspenders=[suspender]).run(measuring_plan)
    assert result.status == "aborted"
    assert result.reason.startswith("suspender 'qber': 2 remedies did not clear the condition")
    failed = [
        e["data"]["error"]
        for e in read_events(result.path / "events.jsonl")
        if e["data"].get("action") == "remedy-failed"
    ]
    assert failed == ["RuntimeError: polarization scan found no minimum"] * 2
    assert link.safe_states == 1


async def test_backoff_keeps_remedying_a_lasting_condition_until_it_clears(tmp_path: Path) -> None:
    # An hour-long outage of the remedy's precondition (e.g. intercept-resend: calibration
    # cannot pass): past the failure budget the remedy runs again after 10, 20, 40, 80, 80 s
    # (bounded), and the run resumes once a remedy succeeds.
    clock = VirtualClock()
    link = DriftingLinkTestInstrument(clock)
    clock.call_at(JUMP_AT_S + 0.5, lambda: setattr(link, "drift_rad", 0.6))
    clears_at_s = JUMP_AT_S + 200.0
    remedies: list[float] = []

    async def recalibrate(run: Any) -> None:
        remedies.append(run.clock.now_s())
        if run.clock.now_s() < clears_at_s:
            raise RuntimeError("calibration QBER above its limit")
        link.compensation_rad = link.drift_rad

    suspender = Suspender.above(
        "qber",
        link.qber,
        QBER_LIMIT,
        quantity="QBER",
        remedy=recalibrate,
        settle_s=1.0,
        max_failures=2,
        backoff=Backoff(first_s=10.0, max_s=80.0),
    )
    station = MiniStation({"link": link}, clock)
    result = await RunEngine(station, runs_dir=tmp_path, suspenders=[suspender]).run(measuring_plan)
    assert result.status == "ok", result.reason
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(remedies)]
    assert gaps == [1.0, 11.0, 21.0, 41.0, 81.0, 81.0], gaps
    events = read_events(result.path / "events.jsonl")
    delays = [e["data"]["delay_s"] for e in events if e["data"].get("action") == "remedy-backoff"]
    assert delays == [10.0, 20.0, 40.0, 80.0, 80.0]
    assert [e["data"]["action"] for e in events if e["stream"] == "runner"][-1] == "unsuspended"


def never_clearing(tmp_path: Path, backoff: Backoff) -> tuple[RunEngine, VirtualClock, list[float]]:
    """An engine whose QBER suspender trips at once and whose remedy always fails, with
    the run-clock times of its remedies."""
    clock = VirtualClock()
    link = DriftingLinkTestInstrument(clock)
    link.drift_rad = 0.6
    remedies: list[float] = []

    async def broken(run: Any) -> None:
        remedies.append(run.clock.now_s())
        raise RuntimeError("no minimum")

    suspender = Suspender.above(
        "qber", link.qber, QBER_LIMIT, quantity="QBER", remedy=broken, max_failures=1,
        backoff=backoff,
    )  # fmt: skip
    station = MiniStation({"link": link}, clock)
    return RunEngine(station, runs_dir=tmp_path, suspenders=[suspender]), clock, remedies


async def test_a_suspended_run_still_ends_with_its_duration(tmp_path: Path) -> None:
    # The condition never clears and the backoff would wait for hours: the run's duration
    # (60 s of run clock) ends the suspension, within the backoff wait that crosses it.
    backoff = Backoff(first_s=10.0, max_s=3600.0, give_up_s=6 * 3600.0)
    engine, clock, remedies = never_clearing(tmp_path, backoff)
    result = await engine.run(measuring_plan, duration_s=60.0)
    assert result.status == "timeout", result.reason
    assert "while suspended by 'qber'" in result.reason
    assert 60.0 <= clock.now_s() < 61.0
    # trip at 1 s; remedies at 1, 11, 31 (each wait doubles), then the wait is cut at 60 s
    assert [round(t) for t in remedies] == [1, 11, 31]


async def test_backoff_gives_up_after_its_time(tmp_path: Path) -> None:
    engine, clock, remedies = never_clearing(tmp_path, Backoff(10.0, 20.0, give_up_s=50.0))
    result = await engine.run(measuring_plan)
    assert result.status == "aborted"
    assert "remedies did not clear the condition" in result.reason
    # trip at 1 s; remedies at 1, 11, 31, 51 (the last wait cut to the give-up time)
    assert [round(t) for t in remedies] == [1, 11, 31, 51]
    assert clock.now_s() - 1.0 >= 50.0

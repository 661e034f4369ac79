"""Scheduler on the virtual clock: runs at wall-clock times of day, repeated, and
recalibration driven by the calibration store's expiry."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.runner.engine import RunEngine
from labctl.runner.scheduler import Scheduler, TaskStatus
from labctl.runner.triggers import Trigger
from labctl.store.calibration import Calibration, CalibrationStore
from sims.clock import VirtualClock


@dataclass
class MiniStation:
    """What the runner needs of a station: instruments and a clock."""

    instruments: dict[str, Any] = field(default_factory=dict)
    clock: Any = None


T0 = dt.datetime(2026, 12, 6, 20, 0, tzinfo=dt.UTC).timestamp()  # the virtual clock's start
HOUR = 3600.0


def _recorder(starts: list[tuple[str, float]], name: str, work_s: float) -> Any:
    async def plan(run: Any) -> None:
        starts.append((name, run.clock.now_s()))
        await run.sleep(work_s)

    return plan


async def test_runs_start_at_times_of_day_and_repeat(tmp_path: Path) -> None:
    clock = VirtualClock(start_s=T0)
    starts: list[tuple[str, float]] = []
    scheduler = Scheduler(RunEngine(MiniStation({}, clock), runs_dir=tmp_path / "runs"))
    night = Trigger(at=dt.time(22, 0), every_s=12 * HOUR, count=3)
    first = scheduler.at("night", _recorder(starts, "night", HOUR), night, duration_s=2 * HOUR)
    queued = scheduler.submit("queued", _recorder(starts, "queued", 60.0))
    history = await scheduler.run_until()  # until nothing is left
    assert first == T0 + 2 * HOUR
    assert starts[0] == ("queued", T0)  # a queued run goes at once
    nights = [t for name, t in starts if name == "night"]
    assert [dt.datetime.fromtimestamp(t, dt.UTC).strftime("%d %H:%M") for t in nights] == [
        "06 22:00",
        "07 10:00",
        "07 22:00",
    ]
    assert queued.status is TaskStatus.DONE
    assert [t.status for t in history] == [TaskStatus.DONE] * 4
    assert len(list((tmp_path / "runs").iterdir())) == 4


async def test_recalibration_follows_the_store_expiry(tmp_path: Path) -> None:
    clock = VirtualClock(start_s=T0)
    store = CalibrationStore(tmp_path / "calibration.json")
    store.save(Calibration("pc", "polarization", {}, T0 - HOUR, T0 + HOUR))
    store.save(Calibration("det", "detectors", {}, T0 - HOUR, T0 + 10 * HOUR))
    calibrated: list[float] = []
    lead_s: list[float] = []

    async def calibrate(run: Any) -> None:
        now = run.clock.now_s()
        calibrated.append(now)
        lead_s.append(min(c.expires_s for c in store.all()) - now)
        await run.sleep(60.0)
        # Polarization stays valid 2 h; detectors are renewed too once they are due.
        store.save(Calibration("pc", "polarization", {}, now, now + 2 * HOUR))
        if now >= T0 + 10 * HOUR - 300:
            store.save(Calibration("det", "detectors", {}, now, now + 10 * HOUR))

    scheduler = Scheduler(RunEngine(MiniStation({}, clock), runs_dir=tmp_path / "runs"))
    scheduler.recalibrate_on_expiry("recal", calibrate, store, margin_s=300.0)
    await scheduler.run_until(T0 + 12 * HOUR)
    # Every calibration ran exactly 5 min before the earliest expiry of the store: first
    # the 1 h polarization, then each renewed 2 h one, and the detectors' 10 h one between.
    assert calibrated[0] == T0 + HOUR - 300
    assert lead_s == [300.0] * len(calibrated)
    assert len(calibrated) == 7  # 5 polarization renewals, the detectors, one more
    assert T0 + 10 * HOUR - 300 in calibrated
    assert all(c.is_valid(T0 + 12 * HOUR) for c in store.all())


async def test_failed_recalibration_is_retried_not_looped(tmp_path: Path) -> None:
    clock = VirtualClock(start_s=T0)
    store = CalibrationStore(tmp_path / "calibration.json")
    store.save(Calibration("pc", "polarization", {}, T0 - HOUR, T0 + 60.0))
    tries: list[float] = []

    async def broken(run: Any) -> None:
        tries.append(run.clock.now_s())
        raise RuntimeError("laser off")

    scheduler = Scheduler(RunEngine(MiniStation({}, clock), runs_dir=tmp_path / "runs"))
    scheduler.recalibrate_on_expiry("recal", broken, store, retry_s=600.0)
    history = await scheduler.run_until(T0 + 3000.0)
    assert [round(t - T0) for t in tries] == [60, 660, 1260, 1860, 2460]
    assert {t.status for t in history} == {TaskStatus.FAILED}


async def test_stop_ends_an_idle_schedule(tmp_path: Path) -> None:
    clock = VirtualClock(start_s=T0)
    scheduler = Scheduler(RunEngine(MiniStation({}, clock), runs_dir=tmp_path / "runs"))
    starts: list[tuple[str, float]] = []
    scheduler.at("late", _recorder(starts, "late", 1.0), Trigger(at=dt.time(23, 0)))
    scheduler.stop()
    assert await scheduler.run_until() == [] and starts == []

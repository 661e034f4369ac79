"""Run time and calibration age carried over resumes (each process's clock starts anew)."""

from __future__ import annotations

import asyncio

from experiments.keygen.checkpoint import KeygenState
from experiments.keygen.resume import RunAges, calibration_age_s
from sims.clock import VirtualClock


def test_ages_continue_from_the_checkpoint_on_a_fresh_clock() -> None:
    clock = VirtualClock()
    ages = RunAges.start(clock, None)
    assert ages.calibration_age_s() is None
    asyncio.run(clock.sleep(10.0))
    ages.calibrated()
    asyncio.run(clock.sleep(5.0))
    assert ages.run_time_s() == 15.0 and ages.calibration_age_s() == 5.0
    state = KeygenState(run_time_s=15.0, calibrated_age_s=5.0, wall_ts=1000.0)
    # Resumed 30 s of wall time later: the calibration aged by the downtime too.
    assert calibration_age_s(state, now_wall_ts=1030.0) == 35.0
    assert calibration_age_s(state, now_wall_ts=900.0) == 5.0  # a clock set back ages nothing
    resumed_clock = VirtualClock()
    resumed = RunAges.start(resumed_clock, state)
    resumed.calibrated(35.0)
    asyncio.run(resumed_clock.sleep(2.0))
    assert resumed.run_time_s() == 17.0 and resumed.calibration_age_s() == 37.0
    assert calibration_age_s(KeygenState()) is None

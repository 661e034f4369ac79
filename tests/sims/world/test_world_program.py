"""The world plays what a transmitter gives it: segments, dark pulses, frame markers."""

from __future__ import annotations

import numpy as np

from labctl.interfaces.pattern import PulsePattern, state_codes
from sims.world.program import PatternProgram


def _pattern(n: int, intensity: int = 0) -> PulsePattern:
    return PulsePattern(
        np.full(n, intensity, np.uint8), np.zeros(n, np.uint8), np.arange(n, dtype=np.uint8) & 1
    )


def test_one_shot_and_cycling_segments_place_states_and_dark() -> None:
    program = PatternProgram(n_classes=3, period_ps=1000)
    program.load(_pattern(4, intensity=1), repeat=False, now_pulse=0)
    assert program.start(now_pulse=10) == 10
    codes = program.codes(np.arange(8, 16, dtype=np.int64))
    dark = program.dark_code
    one = state_codes(_pattern(4, intensity=1))
    assert list(codes) == [dark, dark, *one.tolist(), dark, dark]
    assert program.covered(0, 100) == [(10, 14)]
    program.load(_pattern(3), repeat=True, now_pulse=20)
    program.start(now_pulse=20)
    assert list(program.frame_starts(15, 30)) == [20, 23, 26, 29]
    assert program.covered(15, 30) == [(20, 30)]
    program.stop(now_pulse=25)
    assert program.covered(15, 30) == [(20, 25)] and not program.is_running(25)


def test_chunks_follow_back_to_back_and_after_an_underrun() -> None:
    program = PatternProgram(n_classes=3, period_ps=1000)
    program.load(_pattern(5), repeat=False, now_pulse=0)
    program.start(now_pulse=100)
    program.append(_pattern(5), now_pulse=101)  # in time: no gap
    assert program.covered(0, 200) == [(100, 110)]
    program.forget_before(500)  # everything ended and was forgotten
    program.append(_pattern(5), now_pulse=600)  # an underrun: starts at once, a new frame
    assert program.covered(0, 1000) == [(600, 605)]
    assert list(program.frame_starts(0, 1000)) == [600]

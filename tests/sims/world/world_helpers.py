"""Shared helpers for the world physics tests: quiet settings and tag collection."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import numpy.typing as npt

from sims.world import World


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``changes`` into a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


QUIET: dict[str, Any] = {
    "seed": 7,
    "source": {
        "rate_hz": 1.0e8,
        "intensities": {"signal": {"mu": 0.2, "probability": 1.0}},
    },
    "fiber": {"length_km": 0.0, "loss_db_per_km": 0.0},
    "switch": {"insertion_loss_db": 0.0},
    "receiver": {"misalignment": 0.0, "optical_loss_db": 0.0},
    "detectors": {
        "efficiency": 0.5,
        "dark_count_rate_hz": 0.0,
        "dead_time_ns": 0.0,
        "afterpulse_probability": 0.0,
        "jitter_fwhm_ps": 0.0,
    },
}
"""A lossless, noiseless link at 100 MHz: each test switches on only what it checks."""


def quiet_world(**changes: Any) -> World:
    """A world built from QUIET with nested ``changes`` merged in."""
    return World.from_settings(merged(QUIET, changes))


def collect(
    world: World, side: str, duration_s: float
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64], int, int]:
    """Stream ``side`` for ``duration_s`` of sim time: channels, times, first start, last stop."""
    if not world.is_streaming(side):
        world.start_stream(side)
    channels, times = [], []
    start = stop = None
    end_s = world.clock.now_s() + duration_s
    while world.clock.now_s() < end_s:
        batch = world.read_batch(side)
        if start is None:
            start = batch.start_ps
        stop = batch.stop_ps
        channels.append(batch.channel)
        times.append(batch.time_ps)
    assert start is not None and stop is not None
    return np.concatenate(channels), np.concatenate(times), start, stop


def sifted_errors(
    world: World, channel: npt.NDArray[np.uint8], time_ps: npt.NDArray[np.int64], stop_ps: int
) -> tuple[int, int]:
    """(errors, sifted) over pulses with exactly one click, tags on the ideal pulse grid."""
    period = world.period_ps
    pulse = time_ps // period
    complete = pulse < stop_ps // period - 1
    pulse, channel = pulse[complete], channel[complete]
    values, counts = np.unique(pulse, return_counts=True)
    single = np.isin(pulse, values[counts == 1])
    pulse, channel = pulse[single], channel[single]
    pattern = world.alice_pattern(pulse)
    bob_basis, bob_bit = channel >> 1, channel & 1
    sift = bob_basis == pattern.basis
    return int(np.count_nonzero(bob_bit[sift] != pattern.bit[sift])), int(np.count_nonzero(sift))

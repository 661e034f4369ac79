"""Compiled (numba) and numpy paths of the world: identical tags for one seed, exact dead time."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from world_helpers import merged

from sims.world import World, kernels

jit = pytest.importorskip("sims.world.jit", reason="numba not installed: numpy path only")

HIGH_RATE: dict[str, Any] = {
    "seed": 3,
    "fiber": {"length_km": 50.0},
    "detectors": {
        "dead_time_ns": 40.0,
        "dark_count_rate_hz": 2.0e5,
        "afterpulse_probability": 0.05,
        "overrides": {
            "Z1": {"dead_time_ns": 10.0, "delay_ps": 180, "jitter_fwhm_ps": 50.0},
            "X1": {"dead_time_ns": 100.0, "afterpulse_probability": 0.3},
        },
    },
    "taggers": {
        "bob": {
            "offset_ps": 1_234_567,
            "frequency_offset_ppm": -3.5,
            "wander_amplitude_ps": 50.0,
            "wander_period_s": 10.0,
            "resolution_ps": 4,
            "channel_delays_ps": [0, 300, 0, 0],
            "max_rate_hz": 1.2e7,
        },
    },
}
"""Every detector and tagger feature at once, tags overflowing the rate limit now and then."""


def _tags(settings: dict[str, Any], compiled: bool, n_batches: int) -> list[tuple[Any, ...]]:
    world = World.from_settings(merged(settings, {"compiled_kernels": compiled}))
    assert world.compiled is compiled
    world.start_stream("alice")
    world.start_stream("bob")
    out = []
    for i in range(n_batches):
        if i == n_batches // 4:
            world.set_eve_fraction(0.5)
        if i == n_batches // 2:
            world.set_eve_fraction(0.0)
            world.set_blinding(True)
        if i == 3 * n_batches // 4:
            world.set_blinding(False)
            world.set_detector_enabled(2, False)
        for side in ("bob", "alice"):
            batch = world.read_batch(side)
            head = (side, batch.time_ps.tolist(), batch.channel.tolist())
            out.append((*head, batch.start_ps, batch.stop_ps, batch.overflow, batch.missed_events))
    return out


@pytest.mark.parametrize(
    "settings",
    [
        HIGH_RATE,
        # A fast sine wander: the tagger clock takes the sine branch, not the chord.
        merged(HIGH_RATE, {"taggers": {"bob": {"wander_amplitude_ps": 5.0e4}}}),
        {"seed": 9, "slice_target_events": 5_000},  # default world, small slices
    ],
    ids=["high-rate", "sine-wander", "default"],
)
def test_compiled_and_numpy_paths_give_identical_tags(settings: dict[str, Any]) -> None:
    compiled = _tags(settings, True, 16)
    assert sum(len(t[1]) for t in compiled) > 20_000
    if settings is HIGH_RATE:
        assert any(t[5] for t in compiled)  # the rate limit did bite somewhere
    assert compiled == _tags(settings, False, 16)


def test_merge_walk_matches_the_sequential_definition() -> None:
    rng = np.random.default_rng(4)
    n = 30_000
    time_ps = np.cumsum(rng.exponential(5_000.0, n)).astype(np.int64)
    detector = rng.integers(0, 4, n).astype(np.uint8)
    extra = rng.random(n) < 0.1  # merged back in by the walk, as darks and afterpulses are
    dead = np.array([40_000, 10_000, 0, 100_000], dtype=np.int64)
    start = [-(10**15), 2_000, 0, 50_000]
    last = np.array(start, dtype=np.int64)
    out_t, out_d, kept = jit.merge_walk(
        time_ps[~extra], detector[~extra], time_ps[extra], detector[extra], dead, last
    )
    for d in range(4):
        expected, last_ps = [], start[d]
        for t in time_ps[detector == d].tolist():
            if t - last_ps >= dead[d]:
                expected.append(t)
                last_ps = t
        assert out_t[out_d == d].tolist() == expected
        assert kept[d] == len(expected) and last[d] == last_ps


def test_environment_forces_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_SIM_KERNELS", "numpy")
    assert kernels.load() is None
    assert not World.from_settings({}).compiled
    monkeypatch.delenv("LABCTL_SIM_KERNELS")
    assert World.from_settings({}).compiled

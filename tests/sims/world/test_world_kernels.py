"""Compiled (numba) and numpy paths of the world: the same physics, each reproducible.

The compiled path draws its randomness from a counter hash inside the loops, so the paths
agree statistically (counts per channel, QBER, dead-time gaps), not tag for tag.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sims.world import World, jit, kernels
from sims.world.events import candidate_probability, gap_table
from tests.sims.world.world_helpers import collect, merged, quiet_world, sifted_errors

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


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_same_seed_gives_identical_tags_on_each_path(compiled: bool) -> None:
    first = _tags(HIGH_RATE, compiled, 12)
    assert sum(len(t[1]) for t in first) > 20_000
    assert any(t[5] for t in first)  # the rate limit did bite somewhere
    assert first == _tags(HIGH_RATE, compiled, 12)
    assert first != _tags(merged(HIGH_RATE, {"seed": 4}), compiled, 12)


def _channel_stats(settings: dict[str, Any], compiled: bool, duration_s: float) -> dict[str, Any]:
    world = World.from_settings(merged(settings, {"compiled_kernels": compiled}))
    channel, time_ps, _, stop_ps = collect(world, "bob", duration_s)
    errors, sifted = sifted_errors(world, channel, time_ps, stop_ps)
    gaps = [np.diff(time_ps[channel == ch]) for ch in range(4)]
    return {
        "counts": np.bincount(channel, minlength=4),
        "qber": (errors, sifted),
        "gaps": gaps,
    }


def _same_count(a: int, b: int) -> None:
    # Two independent counts of one process: the difference has variance ~ a + b (dead time
    # makes counts more regular than Poisson, so this bound is safe).
    assert abs(a - b) <= 5.0 * math.sqrt(a + b) + 1, (a, b)


def test_paths_agree_on_counts_qber_and_dead_time() -> None:
    # Bright link, darks, different dead times and afterpulsing per detector, a rotation.
    settings = merged(
        HIGH_RATE,
        {
            "source": {"rate_hz": 1.0e8},
            "fiber": {"length_km": 0.0, "initial_rotation_rad": [0.0, 0.0, 0.4]},
            "detectors": {"jitter_fwhm_ps": 0.0},
            "taggers": {"bob": {"frequency_offset_ppm": 0.0, "wander_amplitude_ps": 0.0}},
        },
    )
    settings["taggers"]["bob"].update(
        offset_ps=0, resolution_ps=1, channel_delays_ps=[0, 0, 0, 0], max_rate_hz=1.0e9
    )
    settings["detectors"]["overrides"]["Z1"].update(delay_ps=0, jitter_fwhm_ps=0.0)
    compiled = _channel_stats(settings, True, 0.01)
    numpy_path = _channel_stats(settings, False, 0.01)
    for ch in range(4):
        _same_count(int(compiled["counts"][ch]), int(numpy_path["counts"][ch]))
        assert compiled["counts"][ch] > 20_000
    (e1, n1), (e2, n2) = compiled["qber"], numpy_path["qber"]
    q1, q2 = e1 / n1, e2 / n2
    assert q1 > 0.05  # the rotation makes errors
    assert abs(q1 - q2) <= 5.0 * math.sqrt(q1 * (1 - q1) / n1 + q2 * (1 - q2) / n2)
    dead_ps = [40_000, 10_000, 40_000, 100_000]
    for ch in range(4):
        a, b = compiled["gaps"][ch], numpy_path["gaps"][ch]
        assert a.min() >= dead_ps[ch] and b.min() >= dead_ps[ch]
        # Dead-time distribution: the share of gaps within one more dead time of the limit
        # (dominated by afterpulses and the bright light) agrees between the paths.
        pa = float(np.mean(a < 2 * dead_ps[ch]))
        pb = float(np.mean(b < 2 * dead_ps[ch]))
        assert abs(pa - pb) <= 5.0 * math.sqrt(pa * (1 - pa) / a.size + pb * (1 - pb) / b.size)
        assert abs(a.mean() - b.mean()) <= 5.0 * math.sqrt(a.var() / a.size + b.var() / b.size)


def test_paths_agree_on_the_afterpulse_fraction() -> None:
    counts = []
    for compiled in (True, False):
        world = quiet_world(
            compiled_kernels=compiled,
            detectors={"dead_time_ns": 5.0, "afterpulse_probability": 0.2},
        )
        world.set_laser_enabled(False)
        world.set_dark_count_rate_hz(1, 1.0e5)
        counts.append(world.detector_count_rates_hz(1.0)[1])
    primaries = 1.0e5
    for rate in counts:
        # Each kept primary adds an afterpulse with probability 0.2; dead time trims R tau.
        expected = primaries * 1.2 / (1.0 + primaries * 5e-9)
        assert abs(rate - expected) <= 5.0 * math.sqrt(primaries * 1.6)
    _same_count(round(counts[0]), round(counts[1]))


@pytest.mark.parametrize("p", [1.0, 0.5, 0.0267, 2.0e-3, 3.0e-5])
def test_gap_table_gives_the_geometric_law(p: float) -> None:
    threshold, alias, shift = gap_table(p)
    size = threshold.size
    assert size & (size - 1) == 0 and shift == 64 - (size.bit_length() - 1)
    # Probability of each outcome implied by the Walker table: each column is picked with
    # 1/size, keeps itself with threshold / 2^shift, else gives its alias.
    keep = threshold.astype(np.float64) / 2.0**shift
    implied = np.bincount(np.arange(size), keep / size, minlength=size)
    implied += np.bincount(alias, (1.0 - keep) / size, minlength=size)
    gap = np.arange(size - 1)
    expected = p * (1.0 - p) ** gap
    np.testing.assert_allclose(implied[:-1], expected, rtol=1e-9, atol=1e-15)
    assert abs(implied[-1] - (1.0 - p) ** (size - 1)) < 1e-12


def test_candidate_probability_is_an_upper_bound_on_a_coarse_grid() -> None:
    values = np.geomspace(1e-7, 1.0, 2000)
    grid = {candidate_probability(float(v)) for v in values}
    assert len(grid) < 32 * 24 + 2
    for v in values:
        c = candidate_probability(float(v))
        assert v <= c <= min(1.0, v * 2.0 ** (1 / 32) * (1 + 1e-12))
    assert candidate_probability(0.0) == 0.0


def test_detector_walk_matches_the_sequential_dead_time() -> None:
    rng = np.random.default_rng(4)
    n = 30_000
    time_ps = np.cumsum(rng.exponential(5_000.0, n)).astype(np.int64)
    detector = rng.integers(0, 4, n).astype(np.uint8)
    extra = rng.random(n) < 0.1  # merged in by the walk, as darks are
    pending = (rng.random(n) < 0.02) & ~extra  # afterpulses left from an earlier slice
    signal = ~extra & ~pending
    dead = np.array([40_000, 10_000, 0, 100_000], dtype=np.int64)
    start = [-(10**15), 2_000, 0, 50_000]
    last = np.array(start, dtype=np.int64)
    t1_ps = int(time_ps[-1]) + 1
    no_afterpulses = np.zeros(4)
    out_t, out_d, kept, later_t, _ = jit.detector_walk(
        time_ps[signal], detector[signal], time_ps[extra], detector[extra],
        time_ps[pending], detector[pending], dead, last, no_afterpulses, np.ones(4),
        np.uint64(1), t1_ps,
    )  # fmt: skip
    assert later_t.size == 0
    assert np.all(np.diff(out_t) >= 0)
    for d in range(4):
        expected, last_ps = [], start[d]
        for t in time_ps[detector == d].tolist():
            if t - last_ps >= dead[d]:
                expected.append(t)
                last_ps = t
        assert out_t[out_d == d].tolist() == expected
        assert kept[d] == len(expected) and last[d] == last_ps


def test_detector_walk_carries_late_afterpulses_to_the_next_slice() -> None:
    time_ps = np.arange(1, 2001, dtype=np.int64) * 10_000_000  # one click per 10 us
    detector = np.zeros(time_ps.size, dtype=np.uint8)
    none = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    dead = np.full(4, 50_000, dtype=np.int64)
    last = np.full(4, -(10**15), dtype=np.int64)
    every = np.ones(4)  # p = 1
    decay = np.full(4, 100_000.0)
    t1_ps = int(time_ps[-1]) + 10_000
    out_t, _, kept, later_t, later_d = jit.detector_walk(
        time_ps, detector, *none, *none, dead, last, every, decay, np.uint64(7), t1_ps
    )
    # Each primary adds one afterpulse (at + dead + Exp(100 ns), well before the next
    # primary): all kept, except those past the slice end, which wait.
    assert kept[0] + later_t.size == 2 * time_ps.size
    assert np.all(later_t >= t1_ps) and np.all(later_d == 0)
    after = np.setdiff1d(out_t, time_ps)
    delay = after - time_ps[np.searchsorted(time_ps, after) - 1] - 50_000
    assert delay.min() >= 0
    assert abs(delay.mean() - 100_000.0) <= 5.0 * 100_000.0 / math.sqrt(delay.size)


def test_dark_clicks_are_uniform_and_split_by_rate() -> None:
    n, t0, t1 = 200_000, 5_000, 10_000_005_000
    rates = np.array([1.0, 2.0, 0.0, 5.0])
    time_ps, detector = jit.dark_clicks(n, t0, t1, np.cumsum(rates) / rates.sum(), np.uint64(3))
    assert time_ps.size == n and np.all(np.diff(time_ps) >= 0)
    assert time_ps[0] >= t0 and time_ps[-1] < t1
    span = t1 - t0
    mean = float(time_ps.mean()) - t0
    assert abs(mean - span / 2) <= 5.0 * span / math.sqrt(12 * n)
    counts = np.bincount(detector, minlength=4)
    for d, rate in enumerate(rates):
        p = rate / rates.sum()
        assert abs(counts[d] - n * p) <= 5.0 * math.sqrt(n * p * (1 - p)) + 1


def test_a_world_setting_chooses_the_numpy_path() -> None:
    assert kernels.load() is not None  # numba is a project dependency
    assert World.from_settings({}).compiled
    assert not World.from_settings({"compiled_kernels": False}).compiled

"""Detector model: non-paralyzable dead time, afterpulsing, jitter, latching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sims.world import World
from sims.world.detectors import bernoulli_positions, nonparalyzable_keep
from tests.sims.world.world_helpers import collect, quiet_world


def _reference_keep(times: list[int], dead_ps: int, last_ps: int) -> list[bool]:
    """The textbook loop: keep a click when the previous kept one is a dead time away."""
    keep = []
    for t in times:
        ok = t - last_ps >= dead_ps
        keep.append(ok)
        if ok:
            last_ps = t
    return keep


@pytest.mark.parametrize("rate_times_dead", [0.01, 0.5, 3.0])
def test_dead_time_mask_matches_the_sequential_definition(rate_times_dead: float) -> None:
    rng = np.random.default_rng(11)
    dead_ps = 50_000
    gaps = rng.exponential(dead_ps / rate_times_dead, size=20_000).astype(np.int64)
    times = np.cumsum(gaps)
    for last in (-(10**12), int(times[0]) - 10_000):
        fast = nonparalyzable_keep(times, dead_ps, last)
        assert fast.tolist() == _reference_keep(times.tolist(), dead_ps, last)


def test_bernoulli_positions_are_distinct_and_have_the_right_count() -> None:
    rng = np.random.default_rng(3)
    n, p = 10_000_000, 0.003
    positions = bernoulli_positions(rng, n, p)
    assert np.all(np.diff(positions) > 0) and positions[0] >= 0 and positions[-1] < n
    assert abs(positions.size - n * p) <= 5.0 * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("true_rate_hz", [5.0e6, 2.0e7, 6.0e7])
def test_dead_time_saturates_as_nonparalyzable(true_rate_hz: float) -> None:
    dead_s = 50e-9
    world = quiet_world(detectors={"dead_time_ns": 50.0, "dark_count_rate_hz": 0.0})
    world.set_laser_enabled(False)
    world.set_dark_count_rate_hz(0, true_rate_hz)  # an exact Poisson process of arrivals
    duration_s = 0.01
    measured = world.detector_count_rates_hz(duration_s)[0]
    expected = true_rate_hz / (1.0 + true_rate_hz * dead_s)
    n = expected * duration_s
    # Dead time makes counts more regular than Poisson, so sqrt(n) is a safe bound.
    assert abs(measured * duration_s - n) <= 5.0 * math.sqrt(n), (measured, expected)


def test_clicks_of_one_detector_are_never_closer_than_the_dead_time() -> None:
    world = quiet_world(
        detectors={"dead_time_ns": 20.0, "dark_count_rate_hz": 3.0e7, "jitter_fwhm_ps": 0.0}
    )
    channel, time_ps, _, _ = collect(world, "bob", 0.001)
    for ch in range(4):
        gaps = np.diff(time_ps[channel == ch])
        assert gaps.min() >= 20_000


def _afterpulsing_world(dark_hz: float, dead_ns: float, p_after: float, decay_ns: float) -> World:
    world = quiet_world(
        detectors={
            "dead_time_ns": dead_ns,
            "afterpulse_probability": p_after,
            "afterpulse_decay_ns": decay_ns,
        }
    )
    world.set_laser_enabled(False)
    world.set_dark_count_rate_hz(0, dark_hz)
    return world


def test_afterpulse_fraction() -> None:
    p_after, dark_hz, dead_ns = 0.08, 2.0e5, 5.0
    world = _afterpulsing_world(dark_hz, dead_ns, p_after, decay_ns=100.0)
    duration_s = 2.0
    clicks = world.detector_count_rates_hz(duration_s)[0] * duration_s
    primaries = dark_hz * duration_s
    # Each kept primary adds an afterpulse with probability p; dead time trims R * tau.
    expected = primaries * (1.0 + p_after) / (1.0 + dark_hz * dead_ns * 1e-9)
    sigma = math.sqrt(primaries * (1.0 + 3.0 * p_after))
    assert abs(clicks - expected) <= 5.0 * sigma, (clicks, expected)
    assert abs((clicks - primaries) / primaries - p_after) < 0.015


def test_afterpulses_follow_the_dead_time_plus_exponential_decay() -> None:
    p_after, dark_hz, dead_ns, decay_ns = 0.08, 1.0e3, 50.0, 200.0
    world = _afterpulsing_world(dark_hz, dead_ns, p_after, decay_ns)
    channel, time_ps, start_ps, stop_ps = collect(world, "bob", 40.0)
    clicks = time_ps[channel == 0]
    primaries = dark_hz * (stop_ps - start_ps) * 1e-12
    window_ns = 5.0 * decay_ns
    gaps_ns = (np.diff(clicks) - dead_ns * 1000) / 1000.0
    assert gaps_ns.min() >= 0.0  # an afterpulse never falls inside its parent's dead time
    short = gaps_ns[gaps_ns < window_ns]
    # Afterpulses: Exp(decay) truncated at the window; background: flat Poisson gaps.
    n_after = p_after * primaries * (1.0 - math.exp(-window_ns / decay_ns))
    n_background = primaries * (1.0 - math.exp(-dark_hz * window_ns * 1e-9))
    mean_after = decay_ns - window_ns * math.exp(-window_ns / decay_ns) / (
        1.0 - math.exp(-window_ns / decay_ns)
    )
    expected = (n_after * mean_after + n_background * window_ns / 2) / (n_after + n_background)
    assert short.size > 2000
    assert abs(short.mean() - expected) <= 5.0 * decay_ns / math.sqrt(short.size)


def test_jitter_is_gaussian_with_the_configured_fwhm() -> None:
    fwhm_ps = 120.0
    world = quiet_world(detectors={"jitter_fwhm_ps": fwhm_ps})
    _, time_ps, _, _ = collect(world, "bob", 0.003)
    period = world.period_ps
    offsets = time_ps - np.rint(time_ps / period).astype(np.int64) * period
    sigma = fwhm_ps / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    n = offsets.size
    assert n > 50_000
    assert abs(offsets.mean()) <= 5.0 * sigma / math.sqrt(n) + 0.5  # +0.5: rounding to 1 ps
    # Rounding to whole ps adds 1/12 ps^2 of variance.
    assert abs(offsets.std() - math.sqrt(sigma**2 + 1 / 12)) <= 5.0 * sigma / math.sqrt(2 * n)
    # Gaussian shape: 76.1 % within +-FWHM/2 ... check the central fraction within +-1 sigma.
    inside = np.mean(np.abs(offsets) <= sigma)
    assert abs(inside - 0.6827) <= 5.0 * math.sqrt(0.6827 * 0.3173 / n) + 0.01


def test_latched_detector_is_silent_until_reset() -> None:
    world = quiet_world()
    world.latch_detector(2)
    assert world.is_latched(2)
    rates = world.detector_count_rates_hz(0.001)
    assert rates[2] == 0.0 and min(rates[0], rates[1], rates[3]) > 0.0
    world.reset_latch(2)
    assert not world.is_latched(2)
    assert world.detector_count_rates_hz(0.001)[2] > 0.0


def test_disabled_detector_is_silent() -> None:
    world = quiet_world(detectors={"dark_count_rate_hz": 1.0e5})
    world.set_detector_enabled(1, False)
    rates = world.detector_count_rates_hz(0.001)
    assert rates[1] == 0.0 and rates[0] > 0.0


def test_efficiency_per_detector_sets_its_share_of_clicks() -> None:
    world = quiet_world(detectors={"overrides": {"Z1": {"efficiency": 0.25}}})
    rates = world.detector_count_rates_hz(0.004)
    # Equal light on Z0 and Z1 on average; Z1 has half the efficiency.
    ratio = rates[1] / rates[0]
    expected = (1 - math.exp(-0.2 * 0.25 * 0.5)) / (1 - math.exp(-0.2 * 0.5 * 0.5))
    assert abs(ratio - expected) <= 0.03


@pytest.mark.parametrize("rate_hz", [2.0e5, 2.0e7])
def test_detector_bank_dead_time_matches_the_sequential_definition(rate_hz: float) -> None:
    # Four detectors with different dead times, clicks interleaved, state carried over.
    world = quiet_world(
        detectors={
            "dead_time_ns": 40.0,
            "overrides": {"Z1": {"dead_time_ns": 10.0}, "X1": {"dead_time_ns": 100.0}},
        }
    )
    bank = world.detectors
    rng = np.random.default_rng(5)
    n = 50_000
    time_ps = np.cumsum(rng.exponential(1e12 / rate_hz, n)).astype(np.int64) + 10**9
    detector = rng.integers(0, 4, n).astype(np.uint8)
    last = [10**9 - 30_000, -(10**15), 10**9 - 5_000, -(10**15)]
    keep = bank._dead_time(time_ps, detector, last)
    for d, state in enumerate(bank.states):
        mine = detector == d
        expected = _reference_keep(time_ps[mine].tolist(), state.dead_ps, last[d])
        assert keep[mine].tolist() == expected
        assert state.last_kept_ps == int(time_ps[mine][keep[mine]][-1])


def test_afterpulses_reopen_dead_time_exactly_like_a_fresh_pass() -> None:
    world = quiet_world(detectors={"dead_time_ns": 50.0})
    bank = world.detectors
    rng = np.random.default_rng(8)
    n = 40_000
    raw = np.cumsum(rng.exponential(20_000.0, n)).astype(np.int64)
    raw_det = rng.integers(0, 4, n).astype(np.uint8)
    last = [-(10**15)] * 4
    kept = bank._dead_time(raw, raw_det, last)
    time_ps, detector = raw[kept], raw_det[kept]
    parents = np.sort(rng.choice(time_ps.size, 400, replace=False))
    after_t = time_ps[parents] + 50_000 + rng.integers(0, 200_000, parents.size)
    after_d = detector[parents]
    order = np.argsort(after_t, kind="stable")
    out_t, out_d = bank._insert_afterpulses(time_ps, detector, after_t[order], after_d[order], last)
    merged_t = np.concatenate([time_ps, after_t])
    merged_d = np.concatenate([detector, after_d])
    order = np.argsort(merged_t, kind="stable")
    merged_t, merged_d = merged_t[order], merged_d[order]
    for d in range(4):
        mine = merged_t[merged_d == d]
        expected = mine[_reference_keep(mine.tolist(), 50_000, last[d])]
        np.testing.assert_array_equal(out_t[out_d == d], expected)

"""Decoy bounds: valid (Y1_L <= Y1, e1_U >= e1) and tight for weak decoys, on model gains."""

import numpy as np
import pytest

from labctl.qkd.estimation.decoy import intensity_stats, two_decoy_bounds, vacuum_weak_decoy_bounds
from labctl.qkd.estimation.model import GYS


@pytest.mark.parametrize("distance", [0.0, 25.0, 50.0, 100.0])
def test_vacuum_weak_bounds_bracket_true_single_photon_values(distance: float) -> None:
    mu, nu = 0.48, 0.01
    b = vacuum_weak_decoy_bounds(
        mu,
        nu,
        GYS.gain(mu, distance),
        GYS.qber(mu, distance),
        GYS.gain(nu, distance),
        GYS.qber(nu, distance),
        GYS.gain(0.0, distance),
    )
    y1, e1 = GYS.yield_n(1, distance), GYS.error_n(1, distance)
    assert b.y1_lower <= y1 * (1 + 1e-12)
    assert b.y1_lower == pytest.approx(y1, rel=0.02)
    assert b.e1_upper >= e1 * (1 - 1e-12)
    assert b.e1_upper == pytest.approx(e1, rel=0.05)


def test_two_decoy_bounds_reduce_to_vacuum_weak_when_nu2_is_zero() -> None:
    mu, nu = 0.5, 0.1
    args = (GYS.gain(mu, 30), GYS.gain(nu, 30), GYS.qber(nu, 30))
    three = two_decoy_bounds(mu, nu, 0.0, args[0], args[1], args[2], GYS.gain(0, 30), 0.5)
    two = vacuum_weak_decoy_bounds(
        mu, nu, args[0], GYS.qber(mu, 30), args[1], args[2], GYS.gain(0, 30)
    )
    assert three.y1_lower == pytest.approx(two.y1_lower, rel=1e-9)
    assert three.e1_upper == pytest.approx(two.e1_upper, rel=1e-9)
    assert three.y1_lower <= GYS.yield_n(1, 30)


def test_bad_intensities_are_rejected_with_names() -> None:
    with pytest.raises(ValueError, match="nu1 \\+ nu2 < mu"):
        two_decoy_bounds(0.3, 0.2, 0.15, 1e-3, 1e-3, 0.03, 1e-3, 0.03)
    with pytest.raises(ValueError, match="mu > nu > 0"):
        vacuum_weak_decoy_bounds(0.1, 0.2, 1e-3, 0.03, 1e-3, 0.03, 1e-6)


def test_intensity_stats_counts_gains_and_errors() -> None:
    rng = np.random.default_rng(3)
    cls = rng.integers(0, 3, 10_000)
    err = rng.random(10_000) < 0.05
    stats = intensity_stats(cls, err, [100_000, 100_000, 100_000], [0.5, 0.1, 0.0])
    for k, s in enumerate(stats):
        assert s.detections == int(np.sum(cls == k))
        assert s.errors == int(np.sum(err[cls == k]))
        assert s.gain == pytest.approx(s.detections / 100_000)
    with pytest.raises(ValueError, match="class index"):
        intensity_stats([3], [False], [1, 1, 1], [0.5, 0.1, 0.0])

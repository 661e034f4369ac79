"""GLLP/decoy key rate against Lo-Ma-Chen 2005 (GYS parameters) and closed forms."""

import math

import numpy as np
import pytest

from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.estimation.keyrate import (
    DecoySettings,
    gllp_rate,
    max_distance_km,
    model_key_rate,
    optimal_mu,
    plob_bound,
)
from labctl.qkd.estimation.model import GYS


def test_gys_optimal_mu_and_maximum_distance_match_lo_ma_chen() -> None:
    """Lo-Ma-Chen (2005): mu_opt ~ 0.48 at 50 km, infinite-decoy reach ~142.2 km."""
    mu, rate = optimal_mu(GYS, 50.0)
    assert mu == pytest.approx(0.48, abs=0.02)
    assert rate > 0
    assert max_distance_km(GYS) == pytest.approx(142.2, abs=0.1)


def test_maximum_distance_agrees_with_a_brute_force_scan_over_mu() -> None:
    """A dense mu grid (independent of the optimiser) brackets the reach to 0.02 km."""
    reach = max_distance_km(GYS)
    mus = np.linspace(0.005, 1.5, 6000)

    def best_rate(distance: float) -> float:
        return max(model_key_rate(GYS, distance, float(m)) for m in mus)

    assert best_rate(reach - 0.02) > 0.0
    assert best_rate(reach + 0.02) == 0.0


def test_optimiser_finds_the_narrow_positive_window_near_the_reach() -> None:
    """At 142.1 km the rate is zero for mu outside ~[0.38, 0.47]: the optimum is still found."""
    mu, rate = optimal_mu(GYS, 142.1)
    assert rate > 0.0
    assert 0.38 < mu < 0.47
    assert model_key_rate(GYS, 142.1, 0.01) == 0.0
    assert model_key_rate(GYS, 142.1, 1.0) == 0.0


def test_gllp_rate_is_the_formula() -> None:
    q_mu, e_mu, q1, e1 = 1e-3, 0.03, 4e-4, 0.02
    expected = 0.5 * (-q_mu * 1.22 * binary_entropy(e_mu) + q1 * (1 - binary_entropy(e1)))
    assert gllp_rate(q_mu, e_mu, q1, e1, 1.22) == pytest.approx(expected, rel=1e-12)
    assert gllp_rate(1e-3, 0.2, 1e-4, 0.2, 1.22) == 0.0


def test_practical_decoys_approach_infinite_decoy_rate_and_never_exceed_it() -> None:
    for distance in (0.0, 25.0, 50.0, 100.0):
        ideal = model_key_rate(GYS, distance, 0.48)
        weak = model_key_rate(GYS, distance, 0.48, "vacuum+weak", DecoySettings(0.48, 0.01))
        three = model_key_rate(GYS, distance, 0.48, "two-decoy", DecoySettings(0.48, 0.02, 0.001))
        assert weak <= ideal and three <= ideal
        assert weak == pytest.approx(ideal, rel=0.05)
        assert three == pytest.approx(ideal, rel=0.08)


def test_plob_bound_closed_form_and_dominates_decoy_rate() -> None:
    eta = GYS.eta(25.0)
    assert plob_bound(eta) == pytest.approx(-math.log2(1 - eta))
    assert model_key_rate(GYS, 25.0, 0.48) < plob_bound(eta)
    with pytest.raises(ValueError, match="transmittance"):
        plob_bound(1.0)

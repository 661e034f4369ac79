"""Lim et al. 2014 finite-key length: each bound as the paper states it, and its validity.

The closed forms are written out again here, independently of the module, from
PRA 89, 022307 Eqs. (1)-(5): n^±_k = e^k/p_k (n_k ± sqrt(n/2 ln(21/eps_sec))).
"""

import itertools
import math

import numpy as np
import pytest

from labctl.qkd.estimation.decoy import two_decoy_bounds
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.estimation.finite_key import (
    BasisCounts,
    DecoyProtocol,
    expected_counts,
    hoeffding_bracket,
    sampling_gamma,
    secret_key_length,
    vacuum_and_single,
)
from labctl.qkd.estimation.model import GYS

PROTOCOL = DecoyProtocol((0.5, 0.1, 0.0), (0.8, 0.1, 0.1))
EPS_SEC, EPS_COR = 1e-10, 1e-15


def _counts(pulses: float, distance: float = 25.0) -> tuple[BasisCounts, BasisCounts]:
    gains = [GYS.gain(m, distance) for m in PROTOCOL.intensities]
    errors = [GYS.qber(m, distance) for m in PROTOCOL.intensities]
    return expected_counts(pulses, 0.5, PROTOCOL, gains, errors)


def _length(pulses: float, asymptotic: bool = False, distance: float = 25.0) -> float:
    key, test = _counts(pulses, distance)
    leak = 1.22 * key.total * binary_entropy(key.total_errors / key.total)
    r = secret_key_length(
        key,
        test,
        PROTOCOL,
        eps_sec=EPS_SEC,
        eps_cor=EPS_COR,
        leak_ec_bits=leak,
        asymptotic=asymptotic,
    )
    return r.secret_bits if not asymptotic else r.raw_length


def test_tiny_blocks_give_no_key() -> None:
    assert _length(1e5) == 0


def test_finite_key_rate_grows_towards_asymptotic_rate() -> None:
    asym = _length(1.0, asymptotic=True)
    rates = [_length(n) / n for n in (1e9, 1e11, 1e13, 1e15)]
    assert all(a <= b for a, b in itertools.pairwise(rates))
    assert all(r <= asym for r in rates)
    assert rates[-1] == pytest.approx(asym, rel=0.03)


def test_every_bound_is_the_papers_closed_form() -> None:
    """Eqs. (1)-(5) evaluated by hand on one set of counts, against the module."""
    protocol = DecoyProtocol((0.6, 0.2, 0.01), (0.7, 0.2, 0.1))
    gains = [GYS.gain(m, 30.0) for m in protocol.intensities]
    errors = [GYS.qber(m, 30.0) for m in protocol.intensities]
    key, test = expected_counts(1e10, 0.8, protocol, gains, errors)
    (mu1, mu2, mu3), (p1, p2, p3) = protocol.intensities, protocol.probabilities
    tau0 = sum(p * math.exp(-k) for k, p in zip((mu1, mu2, mu3), (p1, p2, p3), strict=True))
    tau1 = sum(p * math.exp(-k) * k for k, p in zip((mu1, mu2, mu3), (p1, p2, p3), strict=True))
    log_term = math.log(21 / EPS_SEC)

    def pm(values: tuple[float, float, float]) -> tuple[list[float], list[float]]:
        d = math.sqrt(sum(values) / 2 * log_term)
        scale = [math.exp(k) / p for k, p in zip((mu1, mu2, mu3), (p1, p2, p3), strict=True)]
        return [s * (n + d) for s, n in zip(scale, values, strict=True)], [
            s * max(n - d, 0.0) for s, n in zip(scale, values, strict=True)
        ]

    def s0_s1(c: BasisCounts) -> tuple[float, float]:
        up, lo = pm(c.detections)
        s0 = max(tau0 * (mu2 * lo[2] - mu3 * up[1]) / (mu2 - mu3), 0.0)
        s1 = (tau1 * mu1 * (lo[1] - up[2] - (mu2**2 - mu3**2) / mu1**2 * (up[0] - s0 / tau0))) / (
            mu1 * (mu2 - mu3) - mu2**2 + mu3**2
        )
        return s0, s1

    sx0, sx1 = s0_s1(key)
    sz0, sz1 = s0_s1(test)
    m_up, m_lo = pm(test.errors)
    vz1 = tau1 * (m_up[1] - m_lo[2]) / (mu2 - mu3)
    b = vz1 / sz1
    gamma = math.sqrt(
        (sz1 + sx1)
        * (1 - b)
        * b
        / (sz1 * sx1 * math.log(2))
        * math.log2((sz1 + sx1) / (sz1 * sx1 * (1 - b) * b) * 21**2 / EPS_SEC**2)
    )
    phi = b + gamma
    leak = 1.1 * key.total * binary_entropy(key.total_errors / key.total)
    length = (
        sx0
        + sx1 * (1 - binary_entropy(phi))
        - leak
        - 6 * math.log2(21 / EPS_SEC)
        - math.log2(2 / EPS_COR)
    )
    r = secret_key_length(key, test, protocol, eps_sec=EPS_SEC, eps_cor=EPS_COR, leak_ec_bits=leak)
    got = (r.s_x0, r.s_x1, r.s_z0, r.s_z1, r.v_z1, r.phi_x, r.raw_length)
    want = (sx0, sx1, sz0, sz1, vz1, phi, length)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0 < phi < 0.5 and length > 0
    assert r.secret_bits == math.floor(length)
    assert r.penalty_bits == pytest.approx(6 * math.log2(21 / EPS_SEC) + math.log2(2 / EPS_COR))


def test_hoeffding_bracket_is_not_clipped_at_the_observed_total() -> None:
    """With few counts n_k + delta exceeds n_X (kept); n_k - delta < 0 floors at 0."""
    counts = (40.0, 3.0, 0.0)
    eps = EPS_SEC / 21
    plus, minus = hoeffding_bracket(counts, PROTOCOL, eps)
    delta = math.sqrt(sum(counts) / 2 * math.log(1 / eps))
    for k, (mu, p) in enumerate(zip(PROTOCOL.intensities, PROTOCOL.probabilities, strict=True)):
        assert plus[k] == pytest.approx(math.exp(mu) / p * (counts[k] + delta), rel=1e-12)
        assert minus[k] == pytest.approx(math.exp(mu) / p * max(counts[k] - delta, 0), rel=1e-12)
    assert counts[0] + delta > sum(counts)
    assert plus[0] > math.exp(PROTOCOL.intensities[0]) / PROTOCOL.probabilities[0] * sum(counts)
    assert minus[2] == 0.0


def test_uncertifiable_data_give_negative_bounds_and_no_key() -> None:
    key = BasisCounts((40.0, 3.0, 1.0), (2.0, 1.0, 1.0))
    r = secret_key_length(key, key, PROTOCOL, eps_sec=EPS_SEC, eps_cor=EPS_COR, leak_ec_bits=0)
    assert r.s_x1 < 0  # reported as computed, not clamped
    assert r.s_x0 == 0.0  # Eq. (2) is negative here: the trivial bound s_0 >= 0 is kept
    assert r.secret_bits == 0 and r.raw_length <= 0
    assert r.phi_x == 0.5


def test_asymptotic_bounds_are_ma_et_al_in_counts() -> None:
    """delta = 0: Eq. (3) is Ma et al.'s two-decoy Y1 bound times N q^2 tau_1, Eq. (4) e1 Y1."""
    pulses, q, distance = 1e12, 0.5, 40.0
    key, test = _counts(pulses, distance)
    mu1, mu2, mu3 = PROTOCOL.intensities
    gains = [GYS.gain(m, distance) for m in PROTOCOL.intensities]
    errs = [GYS.qber(m, distance) for m in PROTOCOL.intensities]
    ma = two_decoy_bounds(mu1, mu2, mu3, gains[0], gains[1], errs[1], gains[2], errs[2])
    r = secret_key_length(
        key, test, PROTOCOL, eps_sec=EPS_SEC, eps_cor=EPS_COR, leak_ec_bits=0, asymptotic=True
    )
    sifted = pulses * q * q
    assert r.s_x1 == pytest.approx(sifted * PROTOCOL.tau(1) * ma.y1_lower, rel=1e-9)
    assert r.s_x0 == pytest.approx(sifted * PROTOCOL.tau(0) * ma.y0_lower, rel=1e-9)
    assert r.v_z1 == pytest.approx(sifted * PROTOCOL.tau(1) * ma.e1_upper * ma.y1_lower, rel=1e-9)


def test_finite_bounds_shift_from_asymptotic_by_the_hoeffding_terms_exactly() -> None:
    """Eq. (2) is linear in n^±, so the finite and asymptotic s_0 differ by exactly

    tau0 delta (mu2 e^mu3/p3 + mu3 e^mu2/p2) / (mu2 - mu3).
    """
    key, _ = _counts(1e14)  # large enough that Eq. (2) is positive at finite size
    eps = EPS_SEC / 21
    delta = math.sqrt(key.total / 2 * math.log(1 / eps))
    (_, mu2, mu3), (_, p2, p3) = PROTOCOL.intensities, PROTOCOL.probabilities
    s0_fin, _ = vacuum_and_single(key, PROTOCOL, eps)
    s0_asym, _ = vacuum_and_single(key, PROTOCOL, None)
    assert s0_fin > 0
    expected = PROTOCOL.tau(0) * delta * (mu2 * math.exp(mu3) / p3 + mu3 * math.exp(mu2) / p2)
    assert s0_asym - s0_fin == pytest.approx(expected / (mu2 - mu3), rel=1e-9)


def test_bounds_hold_on_sampled_counts() -> None:
    """Poisson-sampled blocks: s_X,1 and s_X,0 never exceed, v_Z,1 never undercuts the truth.

    Each Hoeffding bracket fails with probability <= eps_sec/21 ~ 5e-12, so across 300
    blocks the chance of a single legitimate violation is < 1e-8: any violation is a bug.
    """
    rng = np.random.default_rng(7)
    pulses, q, distance = 2e9, 0.5, 50.0
    key_mean, test_mean = _counts(pulses, distance)
    y0, y1, e1 = GYS.y0, GYS.yield_n(1, distance), GYS.error_n(1, distance)
    true_s0 = pulses * q * q * PROTOCOL.tau(0) * y0
    true_s1 = pulses * q * q * PROTOCOL.tau(1) * y1
    true_v1 = pulses * (1 - q) ** 2 * PROTOCOL.tau(1) * y1 * e1
    for _ in range(300):
        kd = rng.poisson(key_mean.detections).astype(float)
        td = rng.poisson(test_mean.detections).astype(float)
        te = np.minimum(rng.poisson(test_mean.errors).astype(float), td)
        key = BasisCounts((kd[0], kd[1], kd[2]))
        test = BasisCounts((td[0], td[1], td[2]), (te[0], te[1], te[2]))
        r = secret_key_length(key, test, PROTOCOL, eps_sec=EPS_SEC, eps_cor=EPS_COR, leak_ec_bits=0)
        assert r.s_x1 <= true_s1 and r.s_x0 <= true_s0
        assert r.v_z1 >= true_v1


def test_sampling_gamma_formula_and_domain() -> None:
    a, b, c, d = 1e-10, 0.03, 1e5, 2e5
    want = math.sqrt(
        (c + d)
        * (1 - b)
        * b
        / (c * d * math.log(2))
        * math.log2((c + d) / (c * d * (1 - b) * b) * 21**2 / a**2)
    )
    assert sampling_gamma(a, b, c, d) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="sampling_gamma"):
        sampling_gamma(a, 0.0, c, d)


def test_finite_key_rejects_bad_security_parameters() -> None:
    key, test = expected_counts(1e9, 0.5, PROTOCOL, [1e-3] * 3, [0.02] * 3)
    with pytest.raises(ValueError, match="eps_sec"):
        secret_key_length(key, test, PROTOCOL, eps_sec=0.0, eps_cor=1e-15, leak_ec_bits=0)
    with pytest.raises(ValueError, match="mu1 > mu2 \\+ mu3"):
        DecoyProtocol((0.2, 0.15, 0.1), (0.8, 0.1, 0.1))

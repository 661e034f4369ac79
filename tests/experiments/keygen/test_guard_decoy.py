"""The decoy-statistics monitor: detections per intensity class against a lossy channel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments.keygen.guard import decoy_gain_problem

MU = (0.5, 0.1, 0.0)
PROBABILITY = (0.8, 0.15, 0.05)
PULSES = 100_000_000
MARGIN, ALPHA = 0.05, 1e-6


def _counts(q: list[float], seed: int) -> list[int]:
    """Detections per class: binomial draws from the pulses sent with each class."""
    rng = np.random.default_rng(seed)
    sent = rng.multinomial(PULSES, PROBABILITY)
    return [int(rng.binomial(n, p)) for n, p in zip(sent, q, strict=True)]


def _passive(eta: float, y0: float, mu: tuple[float, ...] = MU) -> list[float]:
    return [1.0 - (1.0 - y0) * math.exp(-eta * m) for m in mu]


@pytest.mark.parametrize("eta", [1e-3, 0.02, 0.09, 0.6])
def test_a_passive_lossy_channel_raises_nothing(eta: float) -> None:
    # 200 blocks per transmittance at alpha 1e-6: a false alarm would be a bound violation.
    for seed in range(200):
        counts = _counts(_passive(eta, 2e-6), seed)
        assert decoy_gain_problem(counts, PULSES, MU, PROBABILITY, MARGIN, ALPHA) is None


def test_a_weak_decoy_instead_of_vacuum_is_fitted_too() -> None:
    mu = (0.6, 0.2, 0.02)
    counts = _counts(_passive(0.05, 1e-5, mu), 7)
    assert decoy_gain_problem(counts, PULSES, mu, PROBABILITY, MARGIN, ALPHA) is None


def test_eve_resending_after_her_own_detection_bends_the_curve() -> None:
    # Blinding: Bob clicks when Eve (efficiency 1) detects, Q = 1 - exp(-mu) times a share.
    q = [0.1 * (1.0 - math.exp(-m)) for m in MU]
    message = decoy_gain_problem(_counts(q, 1), PULSES, MU, PROBABILITY, MARGIN, ALPHA)
    assert message is not None and "class 1 (mu 0.1)" in message and "more than" in message


def test_a_photon_number_splitting_attack_is_caught() -> None:
    # Eve blocks single photons and forwards multi-photon pulses losslessly to Bob's
    # detector (efficiency 0.1): Q(mu) = 0.1 P(n >= 2), matched to the honest signal gain.
    q = [0.1 * (1.0 - math.exp(-m) * (1.0 + m)) for m in MU]
    message = decoy_gain_problem(_counts(q, 2), PULSES, MU, PROBABILITY, MARGIN, ALPHA)
    assert message is not None and "fewer than" in message


def test_too_few_classes_or_no_detections_give_no_verdict() -> None:
    assert decoy_gain_problem([10, 2], PULSES, MU[:2], PROBABILITY[:2], MARGIN, ALPHA) is None
    assert decoy_gain_problem([0, 0, 0], PULSES, MU, PROBABILITY, MARGIN, ALPHA) is None
    assert decoy_gain_problem([], 0, MU, PROBABILITY, MARGIN, ALPHA) is None
    # Classes with no detection at the end (a short bincount) count as zero detections.
    counts = _counts(_passive(0.09, 0.0), 3)[:2]
    assert decoy_gain_problem(counts, PULSES, MU, PROBABILITY, MARGIN, ALPHA) is None

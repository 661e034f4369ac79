"""Lim et al. 2014 finite-key length: zero for tiny blocks, approaches asymptotic for large N."""

import itertools

import pytest

from labctl.qkd.entropy import binary_entropy
from labctl.qkd.finite_key import DecoyProtocol, expected_counts, secret_key_length
from labctl.qkd.model import GYS

PROTOCOL = DecoyProtocol((0.5, 0.1, 0.0), (0.8, 0.1, 0.1))


def _length(pulses: float, asymptotic: bool = False, distance: float = 25.0) -> float:
    gains = [GYS.gain(m, distance) for m in PROTOCOL.intensities]
    errors = [GYS.qber(m, distance) for m in PROTOCOL.intensities]
    key, test = expected_counts(pulses, 0.5, PROTOCOL, gains, errors)
    leak = 1.22 * key.total * binary_entropy(key.total_errors / key.total)
    r = secret_key_length(
        key, test, PROTOCOL, eps_sec=1e-10, eps_cor=1e-15, leak_ec_bits=leak, asymptotic=asymptotic
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


def test_finite_key_rejects_bad_security_parameters() -> None:
    key, test = expected_counts(1e9, 0.5, PROTOCOL, [1e-3] * 3, [0.02] * 3)
    with pytest.raises(ValueError, match="eps_sec"):
        secret_key_length(key, test, PROTOCOL, eps_sec=0.0, eps_cor=1e-15, leak_ec_bits=0)
    with pytest.raises(ValueError, match="mu1 > mu2 \\+ mu3"):
        DecoyProtocol((0.2, 0.15, 0.1), (0.8, 0.1, 0.1))

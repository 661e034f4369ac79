"""Finite-key secret length for three-intensity decoy BB84.

Lim, Curty, Walenta, Xu, Zbinden, "Concise security bounds for practical decoy-state
quantum key distribution", PRA 89, 022307 (2014). Intensities mu1 > mu2 + mu3, mu2 > mu3
>= 0 chosen with probabilities p_k; the key basis ("X" in the paper) gives n_X,k
detections, the test basis ("Z") n_Z,k detections with m_Z,k errors. With
eps = eps_sec / 21 and the Hoeffding deviation delta(n, eps) = sqrt(n/2 ln(1/eps)):

- n^±_k = e^k / p_k (n_k ± delta(n_total, eps))                   (below Eq. 2)
- s_0 >= tau_0 (mu2 n^-_mu3 - mu3 n^+_mu2) / (mu2 - mu3)           (Eq. 2)
- s_1 >= tau_1 mu1 [n^-_mu2 - n^+_mu3 - (mu2^2 - mu3^2)/mu1^2 (n^+_mu1 - s_0/tau_0)]
         / (mu1 (mu2 - mu3) - mu2^2 + mu3^2)                      (Eq. 3)
- v_Z1 <= tau_1 (m^+_Z,mu2 - m^-_Z,mu3) / (mu2 - mu3)              (Eq. 4)
- phi_X <= v_Z1/s_Z1 + gamma(eps_sec, v_Z1/s_Z1, s_Z1, s_X1)       (Eq. 5)
- l = s_X0 + s_X1 (1 - h(phi_X)) - lambda_EC - 6 log2(21/eps_sec) - log2(2/eps_cor)  (Eq. 1)

with tau_n = sum_k p_k e^-k k^n / n!. ``asymptotic=True`` drops both statistical terms
(delta = gamma = 0), which is the limit the finite-key length approaches as N grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.qkd.entropy import binary_entropy

EPS_DIVISOR = 21.0
"""eps_sec = 21 eps in Lim et al.'s composition of the failure probabilities."""


@dataclass(frozen=True)
class DecoyProtocol:
    """Intensities (mu1 > mu2 > mu3 >= 0) and their probabilities."""

    intensities: tuple[float, float, float]
    probabilities: tuple[float, float, float]

    def __post_init__(self) -> None:
        mu1, mu2, mu3 = self.intensities
        if not (mu2 > mu3 >= 0.0 and mu1 > mu2 + mu3):
            raise ValueError(
                f"DecoyProtocol.intensities: need mu1 > mu2 + mu3 and mu2 > mu3 >= 0, "
                f"got {self.intensities}"
            )
        if any(not 0.0 < p <= 1.0 for p in self.probabilities):
            raise ValueError(f"DecoyProtocol.probabilities must be in (0, 1]: {self.probabilities}")
        if abs(sum(self.probabilities) - 1.0) > 1e-9:
            raise ValueError(f"DecoyProtocol.probabilities must sum to 1: {self.probabilities}")

    def tau(self, n_photons: int) -> float:
        """Probability tau_n that Alice sends n photons, averaged over intensities."""
        return sum(
            p * math.exp(-k) * k**n_photons
            for k, p in zip(self.intensities, self.probabilities, strict=True)
        ) / math.factorial(n_photons)


@dataclass(frozen=True)
class BasisCounts:
    """Per-intensity detections (and errors) in one basis, in intensity order mu1, mu2, mu3."""

    detections: tuple[float, float, float]
    errors: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for name, values in (("detections", self.detections), ("errors", self.errors)):
            if len(values) != 3 or any(not (math.isfinite(v) and v >= 0) for v in values):
                raise ValueError(f"BasisCounts.{name}: need three finite counts >= 0: {values}")
        if any(e > d for e, d in zip(self.errors, self.detections, strict=True)):
            raise ValueError("BasisCounts: more errors than detections for some intensity")

    @property
    def total(self) -> float:
        """Detections over all intensities."""
        return float(sum(self.detections))

    @property
    def total_errors(self) -> float:
        """Errors over all intensities."""
        return float(sum(self.errors))


@dataclass(frozen=True)
class FiniteKeyResult:
    """Every intermediate bound and the secret length l (bits, >= 0)."""

    secret_bits: int
    raw_length: float
    s_x0: float
    s_x1: float
    s_z0: float
    s_z1: float
    v_z1: float
    phi_x: float
    leak_ec_bits: float
    penalty_bits: float


def hoeffding_delta(n: float, eps: float) -> float:
    """delta(n, eps) = sqrt(n/2 ln(1/eps)) (natural log)."""
    if n < 0 or not 0.0 < eps < 1.0:
        raise ValueError(f"hoeffding_delta: need n >= 0 and 0 < eps < 1, got n={n}, eps={eps}")
    return math.sqrt(0.5 * n * math.log(1.0 / eps))


def sampling_gamma(a: float, b: float, c: float, d: float) -> float:
    """gamma(a,b,c,d) = sqrt((c+d)(1-b)b/(c d ln2) log2((c+d)/(c d (1-b) b) 21^2/a^2))."""
    if c <= 0 or d <= 0 or not 0.0 < b < 1.0:
        return 0.0 if b == 0.0 and c > 0 and d > 0 else 0.5
    arg = (c + d) / (c * d * (1.0 - b) * b) * (EPS_DIVISOR / a) ** 2
    if arg <= 1.0:
        return 0.0
    return math.sqrt((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * math.log2(arg))


def _bracket(
    counts: Sequence[float], protocol: DecoyProtocol, eps: float | None
) -> tuple[list[float], list[float]]:
    """(n^+_k, n^-_k) per intensity; eps None means no fluctuation."""
    total = float(sum(counts))
    dev = 0.0 if eps is None else hoeffding_delta(total, eps)
    plus, minus = [], []
    for n_k, k, p in zip(counts, protocol.intensities, protocol.probabilities, strict=True):
        scale = math.exp(k) / p
        plus.append(scale * min(n_k + dev, total))
        minus.append(scale * max(n_k - dev, 0.0))
    return plus, minus


def _vacuum_and_single(
    counts: BasisCounts, protocol: DecoyProtocol, eps: float | None
) -> tuple[float, float]:
    """Lower bounds (s_0, s_1) on vacuum and single-photon events in one basis (Eqs. 2, 3)."""
    mu1, mu2, mu3 = protocol.intensities
    tau0, tau1 = protocol.tau(0), protocol.tau(1)
    plus, minus = _bracket(counts.detections, protocol, eps)
    s0 = tau0 * (mu2 * minus[2] - mu3 * plus[1]) / (mu2 - mu3)
    s0 = min(max(s0, 0.0), counts.total)
    denom = mu1 * (mu2 - mu3) - mu2**2 + mu3**2
    s1 = (
        tau1
        * mu1
        * (minus[1] - plus[2] - (mu2**2 - mu3**2) / mu1**2 * (plus[0] - s0 / tau0))
        / denom
    )
    return s0, min(max(s1, 0.0), counts.total)


def secret_key_length(
    key_basis: BasisCounts,
    test_basis: BasisCounts,
    protocol: DecoyProtocol,
    *,
    eps_sec: float,
    eps_cor: float,
    leak_ec_bits: float,
    asymptotic: bool = False,
) -> FiniteKeyResult:
    """Secret key length l of Lim et al. Eq. (1) from observed counts (see module docstring)."""
    for name, eps_value in (("eps_sec", eps_sec), ("eps_cor", eps_cor)):
        if not 0.0 < eps_value < 1.0:
            raise ValueError(f"secret_key_length: {name} must be in (0, 1), got {eps_value}")
    if leak_ec_bits < 0:
        raise ValueError(f"secret_key_length: leak_ec_bits must be >= 0, got {leak_ec_bits}")
    eps = None if asymptotic else eps_sec / EPS_DIVISOR
    s_x0, s_x1 = _vacuum_and_single(key_basis, protocol, eps)
    s_z0, s_z1 = _vacuum_and_single(test_basis, protocol, eps)
    mu2, mu3 = protocol.intensities[1], protocol.intensities[2]
    plus, minus = _bracket(test_basis.errors, protocol, eps)
    v_z1 = max(protocol.tau(1) * (plus[1] - minus[2]) / (mu2 - mu3), 0.0)
    v_z1 = min(v_z1, s_z1)
    if s_z1 <= 0.0 or s_x1 <= 0.0:
        phi_x = 0.5
    else:
        ratio = v_z1 / s_z1
        extra = 0.0 if asymptotic else sampling_gamma(eps_sec, ratio, s_z1, s_x1)
        phi_x = min(ratio + extra, 0.5)
    penalty = 0.0
    if not asymptotic:
        penalty = 6.0 * math.log2(EPS_DIVISOR / eps_sec) + math.log2(2.0 / eps_cor)
    raw = s_x0 + s_x1 * (1.0 - binary_entropy(phi_x)) - leak_ec_bits - penalty
    return FiniteKeyResult(
        secret_bits=max(math.floor(raw), 0),
        raw_length=raw,
        s_x0=s_x0,
        s_x1=s_x1,
        s_z0=s_z0,
        s_z1=s_z1,
        v_z1=v_z1,
        phi_x=phi_x,
        leak_ec_bits=leak_ec_bits,
        penalty_bits=penalty,
    )


def expected_counts(
    pulses: float,
    key_basis_probability: float,
    protocol: DecoyProtocol,
    gains: Sequence[float],
    error_rates: Sequence[float],
) -> tuple[BasisCounts, BasisCounts]:
    """Expected (key, test) counts for N pulses when both parties pick the key basis w.p. q."""
    q = key_basis_probability
    if len(gains) != 3 or len(error_rates) != 3:
        raise ValueError("expected_counts: need one gain and one error rate per intensity (3)")
    if not 0.0 < q < 1.0:
        raise ValueError(f"expected_counts: key_basis_probability must be in (0, 1), got {q}")
    key_det = [pulses * q * q * p * g for p, g in zip(protocol.probabilities, gains, strict=True)]
    test_det = [
        pulses * (1 - q) ** 2 * p * g for p, g in zip(protocol.probabilities, gains, strict=True)
    ]
    key_err = [n * e for n, e in zip(key_det, error_rates, strict=True)]
    test_err = [n * e for n, e in zip(test_det, error_rates, strict=True)]
    return (
        BasisCounts((key_det[0], key_det[1], key_det[2]), (key_err[0], key_err[1], key_err[2])),
        BasisCounts(
            (test_det[0], test_det[1], test_det[2]), (test_err[0], test_err[1], test_err[2])
        ),
    )

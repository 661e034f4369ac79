"""Finite-key secret length for three-intensity decoy BB84.

Lim, Curty, Walenta, Xu, Zbinden, "Concise security bounds for practical decoy-state
quantum key distribution", PRA 89, 022307 (2014), arXiv:1311.7129. Intensities
mu1 > mu2 + mu3, mu2 > mu3 >= 0 chosen with probabilities p_k; the key basis ("X" in the
paper) gives n_X,k detections, the test basis ("Z") n_Z,k detections with m_Z,k errors.
With eps = eps_sec / 21 and the Hoeffding deviation delta(n, eps) = sqrt(n/2 ln(1/eps)):

- n^±_X,k = e^k / p_k (n_X,k ± delta(n_X, eps)), n_X = sum_k n_X,k  (below Eq. 2;
  m^±_Z,k likewise with m_Z = sum_k m_Z,k)
- s_X,0 >= tau_0 (mu2 n^-_X,mu3 - mu3 n^+_X,mu2) / (mu2 - mu3)      (Eq. 2)
- s_X,1 >= tau_1 mu1 [n^-_X,mu2 - n^+_X,mu3 - (mu2^2 - mu3^2)/mu1^2 (n^+_X,mu1 - s_X,0/tau_0)]
           / (mu1 (mu2 - mu3) - mu2^2 + mu3^2)                      (Eq. 3)
- s_Z,0, s_Z,1 by Eqs. (2), (3) on the test-basis counts
- v_Z,1 <= tau_1 (m^+_Z,mu2 - m^-_Z,mu3) / (mu2 - mu3)              (Eq. 4)
- phi_X <= v_Z,1/s_Z,1 + gamma(eps_sec, v_Z,1/s_Z,1, s_Z,1, s_X,1)  (Eq. 5)
- l = floor(s_X,0 + s_X,1 (1 - h(phi_X)) - lambda_EC - 6 log2(21/eps_sec) - log2(2/eps_cor))
                                                                     (Eq. 1)

with tau_n = sum_k p_k e^-k k^n / n! and gamma(a, b, c, d) = sqrt((c+d)(1-b)b/(c d ln 2)
log2((c+d)/(c d (1-b) b) 21^2/a^2)). The 21 (and the 6 in front of its logarithm) is this
paper's split of eps_sec over its estimation steps; the 19 found elsewhere belongs to the
one-decoy analysis of Rusca et al. (2018) and does not carry over.

The bounds are used as stated: the upper ends n^+ are not clipped at the observed total
(n^+ may exceed e^k/p_k n_X), s_1 and v_Z,1 are not clamped, and v_Z,1 is not capped at
s_Z,1 (that cap mixed an upper bound with a lower bound and was not a bound at all). What
remains are facts that hold with certainty, so they cost no failure probability and do not
loosen the eps_sec guarantee:

- n^-_k = e^k/p_k max(n_k - delta, 0): Hoeffding brackets the *expected* count
  n*_k = sum_n p_{k|n} s_n, which is never negative. Without the floor a rare class (the
  vacuum decoy, p_k = 0.05) turns a handful of errors into about -20 delta and inflates
  v_Z,1 2-3 fold, which leaves no key at the block sizes the shipped configs use;
- s_0 = max(Eq. 2, 0), the larger of two valid lower bounds on a count (Eq. 3 holds for
  any valid lower bound on s_0);
- no key where the formulas have no meaning: s_Z,1 <= 0 or s_X,1 <= 0 (phi_X undefined),
  and phi_X taken as 1/2 when the bound reaches 1/2 (h is largest there; h on [1/2, 1]
  would *grow* the key).

``asymptotic=True`` drops both statistical terms (delta = gamma = 0 and no eps penalty),
the limit approached as N grows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from labctl.qkd.estimation.entropy import binary_entropy

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
    """gamma(a,b,c,d) = sqrt((c+d)(1-b)b/(c d ln2) log2((c+d)/(c d (1-b) b) 21^2/a^2)).

    Defined for c, d > 0 and 0 < b < 1 (the callers check this). Where the logarithm's
    argument is <= 1 (only for eps_sec close to 1) the square root has no real value and
    the deviation is taken as 0, its limit there.
    """
    if c <= 0 or d <= 0 or not 0.0 < b < 1.0 or not 0.0 < a < 1.0:
        raise ValueError(
            f"sampling_gamma: need 0 < a < 1, 0 < b < 1, c > 0, d > 0, got a={a}, b={b}, "
            f"c={c}, d={d}"
        )
    arg = (c + d) / (c * d * (1.0 - b) * b) * (EPS_DIVISOR / a) ** 2
    if arg <= 1.0:
        return 0.0
    return math.sqrt((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * math.log2(arg))


def hoeffding_bracket(
    counts: Sequence[float], protocol: DecoyProtocol, eps: float | None
) -> tuple[list[float], list[float]]:
    """(n^+_k, n^-_k) = e^k/p_k (n_k ± delta(sum_k n_k, eps)) per intensity.

    n^+ is not clipped (it may exceed e^k/p_k n_total); n^- is floored at 0 (see the module
    docstring: the bracketed expectation is a count's, never negative). ``eps`` None means
    no fluctuation (delta = 0).
    """
    total = float(sum(counts))
    dev = 0.0 if eps is None else hoeffding_delta(total, eps)
    plus, minus = [], []
    for n_k, k, p in zip(counts, protocol.intensities, protocol.probabilities, strict=True):
        scale = math.exp(k) / p
        plus.append(scale * (n_k + dev))
        minus.append(scale * max(n_k - dev, 0.0))
    return plus, minus


def vacuum_and_single(
    counts: BasisCounts, protocol: DecoyProtocol, eps: float | None
) -> tuple[float, float]:
    """Lower bounds (s_0, s_1) on vacuum and single-photon events in one basis (Eqs. 2, 3).

    s_0 is max(Eq. 2, 0) (see the module docstring); s_1 is Eq. (3) as stated, negative
    when the data cannot certify any single-photon event.
    """
    mu1, mu2, mu3 = protocol.intensities
    tau0, tau1 = protocol.tau(0), protocol.tau(1)
    plus, minus = hoeffding_bracket(counts.detections, protocol, eps)
    # Eq. (2), combined with the trivial bound s_0 >= 0 (a count): where the statistics
    # certify nothing (few or no vacuum-decoy detections) Eq. (2) is negative, and a
    # negative lower bound would subtract bits the proof never charges. This is not a clip
    # of the Hoeffding bracket, which stays as stated.
    s0 = max(tau0 * (mu2 * minus[2] - mu3 * plus[1]) / (mu2 - mu3), 0.0)
    denom = mu1 * (mu2 - mu3) - mu2**2 + mu3**2
    s1 = (
        tau1
        * mu1
        * (minus[1] - plus[2] - (mu2**2 - mu3**2) / mu1**2 * (plus[0] - s0 / tau0))
        / denom
    )
    return s0, s1


def single_photon_errors(
    test_basis: BasisCounts, protocol: DecoyProtocol, eps: float | None
) -> float:
    """Upper bound v_Z,1 on single-photon errors in the test basis (Eq. 4), unclamped."""
    mu2, mu3 = protocol.intensities[1], protocol.intensities[2]
    plus, minus = hoeffding_bracket(test_basis.errors, protocol, eps)
    return protocol.tau(1) * (plus[1] - minus[2]) / (mu2 - mu3)


def phase_error_bound(
    v_z1: float, s_z1: float, s_x1: float, eps_sec: float, asymptotic: bool
) -> float:
    """phi_X of Eq. (5), or 1/2 where it is undefined (s <= 0) or reaches 1/2."""
    if s_z1 <= 0.0 or s_x1 <= 0.0:
        return 0.5
    ratio = v_z1 / s_z1
    if ratio >= 0.5:
        return 0.5
    if ratio <= 0.0:
        # v_Z,1 <= 0 certifies no single-photon error; gamma -> 0 as b -> 0+.
        return 0.0
    extra = 0.0 if asymptotic else sampling_gamma(eps_sec, ratio, s_z1, s_x1)
    return min(ratio + extra, 0.5)


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
    s_x0, s_x1 = vacuum_and_single(key_basis, protocol, eps)
    s_z0, s_z1 = vacuum_and_single(test_basis, protocol, eps)
    v_z1 = single_photon_errors(test_basis, protocol, eps)
    phi_x = phase_error_bound(v_z1, s_z1, s_x1, eps_sec, asymptotic)
    penalty = 0.0
    if not asymptotic:
        penalty = 6.0 * math.log2(EPS_DIVISOR / eps_sec) + math.log2(2.0 / eps_cor)
    if s_z1 <= 0.0 or s_x1 <= 0.0:
        # Eq. (5) is undefined: nothing certifies single-photon secrecy, no key.
        raw = min(s_x0 - leak_ec_bits - penalty, 0.0)
    else:
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

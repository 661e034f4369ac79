"""Parameter estimation: per-intensity gains and error rates, and decoy-state bounds.

Decoy bounds follow Ma, Qi, Zhao and Lo, "Practical decoy state for quantum key
distribution", PRA 72, 012326 (2005): the vacuum + weak decoy bounds (their Eqs. 34 and
37) and the general two-decoy ("three intensities": signal mu, decoys nu1 > nu2 >= 0)
bounds (their Eqs. 19, 21 and 23). Every bound is an asymptotic one (no statistical
fluctuation); the finite-key counterpart is :mod:`labctl.qkd.estimation.finite_key`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.qkd.estimation.model import E0_DARK


@dataclass(frozen=True)
class IntensityStats:
    """Observed gain and error rate of one intensity class."""

    mean_photon_number: float
    pulses_sent: int
    detections: int
    errors: int

    @property
    def gain(self) -> float:
        """Q = detections / pulses sent."""
        return self.detections / self.pulses_sent if self.pulses_sent else 0.0

    @property
    def error_rate(self) -> float:
        """E = errors / detections (0 when nothing was detected)."""
        return self.errors / self.detections if self.detections else 0.0


def intensity_stats(
    intensity: npt.ArrayLike,
    error: npt.ArrayLike,
    pulses_sent: npt.ArrayLike,
    mean_photon_numbers: npt.ArrayLike,
) -> list[IntensityStats]:
    """Per-class gains and error rates from sifted detections (class index, error flag)."""
    cls = np.asarray(intensity, dtype=np.int64)
    err = np.asarray(error).astype(bool)
    sent = np.asarray(pulses_sent, dtype=np.int64)
    mus = np.asarray(mean_photon_numbers, dtype=np.float64)
    if cls.shape != err.shape:
        raise ValueError(f"intensity_stats: intensity {cls.shape} and error {err.shape} differ")
    if sent.shape != mus.shape:
        raise ValueError("intensity_stats: pulses_sent and mean_photon_numbers differ in length")
    if cls.size and (cls.min() < 0 or cls.max() >= mus.size):
        raise ValueError(f"intensity_stats: class index outside [0, {mus.size})")
    det = np.bincount(cls, minlength=mus.size)
    errs = np.bincount(cls[err], minlength=mus.size)
    if np.any(det > sent):
        raise ValueError("intensity_stats: more detections than pulses sent in some class")
    return [
        IntensityStats(float(mus[k]), int(sent[k]), int(det[k]), int(errs[k]))
        for k in range(mus.size)
    ]


@dataclass(frozen=True)
class DecoyBounds:
    """Lower bound on the single-photon yield and upper bound on its error rate."""

    y0_lower: float
    y1_lower: float
    e1_upper: float
    q1_lower: float
    """Single-photon gain of the signal: mu exp(-mu) Y1_lower."""


def _check_intensity(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"decoy bounds: {name} must be finite and >= 0, got {value}")


def vacuum_weak_decoy_bounds(
    mu: float,
    nu: float,
    q_mu: float,
    e_mu: float,
    q_nu: float,
    e_nu: float,
    y0: float,
) -> DecoyBounds:
    """Vacuum + weak decoy bounds (Ma et al. 2005, Eqs. 34 and 37); needs mu > nu > 0.

    ``y0`` is the measured vacuum gain Q_0. Y1 >= mu/(mu nu - nu^2) (Q_nu e^nu -
    Q_mu e^mu nu^2/mu^2 - (mu^2 - nu^2)/mu^2 Y0); e1 <= (E_nu Q_nu e^nu - e0 Y0)/(Y1 nu).
    """
    for name, value in (("mu", mu), ("nu", nu), ("y0", y0), ("q_mu", q_mu), ("q_nu", q_nu)):
        _check_intensity(name, value)
    if not mu > nu > 0.0:
        raise ValueError(f"vacuum_weak_decoy_bounds: need mu > nu > 0, got mu={mu}, nu={nu}")
    y1 = (
        mu
        / (mu * nu - nu * nu)
        * (
            q_nu * math.exp(nu)
            - q_mu * math.exp(mu) * nu * nu / (mu * mu)
            - (mu * mu - nu * nu) / (mu * mu) * y0
        )
    )
    y1 = max(y1, 0.0)
    e1 = (e_nu * q_nu * math.exp(nu) - E0_DARK * y0) / (y1 * nu) if y1 > 0 else 0.5
    e1 = min(max(e1, 0.0), 0.5)
    return DecoyBounds(y0, y1, e1, mu * math.exp(-mu) * y1)


def two_decoy_bounds(
    mu: float,
    nu1: float,
    nu2: float,
    q_mu: float,
    q_nu1: float,
    e_nu1: float,
    q_nu2: float,
    e_nu2: float,
) -> DecoyBounds:
    """Three-intensity bounds (Ma et al. 2005, Eqs. 19, 21, 23); needs nu1 > nu2 >= 0, nu1+nu2 < mu.

    Y0 >= max((nu1 Q_nu2 e^nu2 - nu2 Q_nu1 e^nu1)/(nu1 - nu2), 0);
    Y1 >= mu/(mu nu1 - mu nu2 - nu1^2 + nu2^2) (Q_nu1 e^nu1 - Q_nu2 e^nu2
          - (nu1^2 - nu2^2)/mu^2 (Q_mu e^mu - Y0_lower));
    e1 <= (E_nu1 Q_nu1 e^nu1 - E_nu2 Q_nu2 e^nu2) / ((nu1 - nu2) Y1_lower).
    """
    for name, value in (("mu", mu), ("nu1", nu1), ("nu2", nu2)):
        _check_intensity(name, value)
    if not (nu1 > nu2 >= 0.0 and nu1 + nu2 < mu):
        raise ValueError(
            f"two_decoy_bounds: need nu1 > nu2 >= 0 and nu1 + nu2 < mu, got "
            f"mu={mu}, nu1={nu1}, nu2={nu2}"
        )
    a1 = q_nu1 * math.exp(nu1)
    a2 = q_nu2 * math.exp(nu2)
    y0 = max((nu1 * a2 - nu2 * a1) / (nu1 - nu2), 0.0)
    denom = mu * nu1 - mu * nu2 - nu1 * nu1 + nu2 * nu2
    y1 = mu / denom * (a1 - a2 - (nu1 * nu1 - nu2 * nu2) / (mu * mu) * (q_mu * math.exp(mu) - y0))
    y1 = max(y1, 0.0)
    e1 = (e_nu1 * a1 - e_nu2 * a2) / ((nu1 - nu2) * y1) if y1 > 0 else 0.5
    e1 = min(max(e1, 0.0), 0.5)
    return DecoyBounds(y0, y1, e1, mu * math.exp(-mu) * y1)

"""Expected gains and error rates of weak-coherent-pulse BB84 over a lossy channel.

The standard model of Lo, Ma and Chen, PRL 94, 230504 (2005), Eqs. (4)-(8): an n-photon
pulse is detected with yield Y_n = Y0 + eta_n, eta_n = 1 - (1 - eta)^n, and errs with
e_n Y_n = e0 Y0 + e_det eta_n. Summing over the Poisson photon number gives the gain
Q_mu = Y0 + 1 - exp(-eta mu) and E_mu Q_mu = e0 Y0 + e_det (1 - exp(-eta mu)). These are
used to design experiments, to test the decoy bounds and as the reference curve that a
simulated run must reproduce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

E0_DARK = 0.5
"""Error rate of a background (dark) count: a random bit."""


@dataclass(frozen=True)
class ChannelModel:
    """Fiber + receiver parameters of the Lo-Ma-Chen model (GYS values in ``GYS``)."""

    alpha_db_per_km: float
    eta_bob: float
    y0: float
    e_det: float
    f_ec: float = 1.22

    def __post_init__(self) -> None:
        if self.alpha_db_per_km < 0:
            raise ValueError(f"ChannelModel.alpha_db_per_km must be >= 0: {self.alpha_db_per_km}")
        if not 0.0 < self.eta_bob <= 1.0:
            raise ValueError(f"ChannelModel.eta_bob must be in (0, 1]: {self.eta_bob}")
        if not 0.0 <= self.y0 < 1.0:
            raise ValueError(f"ChannelModel.y0 must be in [0, 1): {self.y0}")
        if not 0.0 <= self.e_det <= 0.5:
            raise ValueError(f"ChannelModel.e_det must be in [0, 0.5]: {self.e_det}")
        if self.f_ec < 1.0:
            raise ValueError(f"ChannelModel.f_ec must be >= 1: {self.f_ec}")

    def eta(self, distance_km: float) -> float:
        """Overall transmittance eta = eta_Bob 10^(-alpha L / 10)."""
        if distance_km < 0:
            raise ValueError(f"distance_km must be >= 0: {distance_km}")
        return float(self.eta_bob * 10.0 ** (-self.alpha_db_per_km * distance_km / 10.0))

    def yield_n(self, n_photons: int, distance_km: float) -> float:
        """Yield Y_n of an n-photon pulse (LMC Eq. 5)."""
        eta_n = 1.0 - (1.0 - self.eta(distance_km)) ** n_photons
        return self.y0 + eta_n

    def error_n(self, n_photons: int, distance_km: float) -> float:
        """Error rate e_n of an n-photon pulse (LMC Eq. 6)."""
        eta_n = 1.0 - (1.0 - self.eta(distance_km)) ** n_photons
        return (E0_DARK * self.y0 + self.e_det * eta_n) / (self.y0 + eta_n)

    def gain(self, mu: float, distance_km: float) -> float:
        """Gain Q_mu: probability that a pulse of mean photon number mu is detected."""
        return self.y0 + 1.0 - math.exp(-self.eta(distance_km) * mu)

    def qber(self, mu: float, distance_km: float) -> float:
        """Quantum bit error rate E_mu of pulses with mean photon number mu."""
        q = self.gain(mu, distance_km)
        return (E0_DARK * self.y0 + self.e_det * (1.0 - math.exp(-self.eta(distance_km) * mu))) / q


GYS = ChannelModel(alpha_db_per_km=0.21, eta_bob=0.045, y0=1.7e-6, e_det=0.033, f_ec=1.22)
"""Gobby, Yuan, Shields, APL 84, 3762 (2004), as used by Lo, Ma and Chen (2005)."""

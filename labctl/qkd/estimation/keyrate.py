"""Asymptotic key rates: GLLP with decoy states, and the PLOB repeaterless bound.

GLLP (Gottesman, Lo, Lütkenhaus, Preskill 2004) with decoy states (Lo, Ma, Chen, PRL 94,
230504 (2005), Eq. 1): R = q {-Q_mu f h(E_mu) + Q_1 [1 - h(e_1)]} secret bits per pulse,
q = 1/2 for standard BB84. With "infinite decoys" Q_1 and e_1 are the exact model values;
with a practical decoy scheme they are the bounds of :mod:`labctl.qkd.estimation.decoy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from labctl.qkd.estimation.decoy import two_decoy_bounds, vacuum_weak_decoy_bounds
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.estimation.model import ChannelModel

DecoyScheme = Literal["infinite", "vacuum+weak", "two-decoy"]


def gllp_rate(
    q_mu: float,
    e_mu: float,
    q1: float,
    e1: float,
    f_ec: float,
    q: float = 0.5,
    *,
    floor: bool = True,
) -> float:
    """GLLP secret bits per pulse R = q{-Q_mu f h(E_mu) + Q1[1 - h(e1)]}, floored at 0.

    ``floor=False`` returns the signed value (negative where no key is possible), which
    stays smooth in mu and distance and is what the optimisers below work on.
    """
    if not 0.0 <= e_mu <= 1.0 or not 0.0 <= e1 <= 1.0:
        raise ValueError(f"gllp_rate: error rates must be in [0, 1], got E={e_mu}, e1={e1}")
    if q_mu < 0 or q1 < 0 or f_ec < 1.0 or not 0.0 < q <= 1.0:
        raise ValueError(f"gllp_rate: bad gains/efficiency (Q={q_mu}, Q1={q1}, f={f_ec}, q={q})")
    e_mu_c = min(e_mu, 0.5)
    e1_c = min(e1, 0.5)
    rate = q * (-q_mu * f_ec * binary_entropy(e_mu_c) + q1 * (1.0 - binary_entropy(e1_c)))
    return max(rate, 0.0) if floor else rate


def plob_bound(eta: float) -> float:
    """Pirandola-Laurenza-Ottaviani-Banchi bound -log2(1 - eta) bits per channel use."""
    if not 0.0 <= eta < 1.0:
        raise ValueError(f"plob_bound: transmittance must be in [0, 1), got {eta}")
    return -math.log2(1.0 - eta)


@dataclass(frozen=True)
class DecoySettings:
    """Intensities of a practical decoy scheme (nu2 = 0 means a vacuum decoy)."""

    mu: float
    nu1: float
    nu2: float = 0.0


def model_key_rate(
    model: ChannelModel,
    distance_km: float,
    mu: float,
    scheme: DecoyScheme = "infinite",
    decoys: DecoySettings | None = None,
    q: float = 0.5,
    *,
    floor: bool = True,
) -> float:
    """Asymptotic GLLP rate per pulse expected from the channel model for a decoy scheme.

    ``floor=False``: the signed rate (see :func:`gllp_rate`).
    """
    q_mu = model.gain(mu, distance_km)
    e_mu = model.qber(mu, distance_km)
    if scheme == "infinite":
        y1 = model.yield_n(1, distance_km)
        q1 = mu * math.exp(-mu) * y1
        e1 = model.error_n(1, distance_km)
    else:
        if decoys is None:
            raise ValueError(f"model_key_rate: scheme {scheme!r} needs decoy intensities")
        nu1, nu2 = decoys.nu1, decoys.nu2
        if scheme == "vacuum+weak":
            b = vacuum_weak_decoy_bounds(
                mu,
                nu1,
                q_mu,
                e_mu,
                model.gain(nu1, distance_km),
                model.qber(nu1, distance_km),
                model.gain(0.0, distance_km),
            )
        else:
            b = two_decoy_bounds(
                mu,
                nu1,
                nu2,
                q_mu,
                model.gain(nu1, distance_km),
                model.qber(nu1, distance_km),
                model.gain(nu2, distance_km),
                model.qber(nu2, distance_km),
            )
        q1, e1 = b.q1_lower, b.e1_upper
    return gllp_rate(q_mu, e_mu, q1, e1, model.f_ec, q, floor=floor)


MU_GRID_POINTS = 64
"""Coarse grid over the search range before the golden-section refinement."""


def optimal_mu(
    model: ChannelModel, distance_km: float, lo: float = 0.01, hi: float = 1.5, tol: float = 1e-4
) -> tuple[float, float]:
    """Signal intensity maximising the infinite-decoy rate: (mu, R), R floored at 0.

    The objective is the *signed* rate (``floor=False``): the floored rate is flat (zero)
    over most of the range near the maximum distance, where a search on it has no slope
    to follow and stops wherever its first probes land. A coarse grid picks the best cell,
    and golden-section search refines within the two cells around it (the signed rate is
    unimodal in mu for the Lo-Ma-Chen model).
    """
    if not 0.0 < lo < hi:
        raise ValueError(f"optimal_mu: need 0 < lo < hi, got lo={lo}, hi={hi}")

    def objective(mu: float) -> float:
        return model_key_rate(model, distance_km, mu, floor=False)

    step = (hi - lo) / (MU_GRID_POINTS - 1)
    grid = [lo + i * step for i in range(MU_GRID_POINTS)]
    values = [objective(m) for m in grid]
    best = max(range(MU_GRID_POINTS), key=values.__getitem__)
    a = grid[max(best - 1, 0)]
    b = grid[min(best + 1, MU_GRID_POINTS - 1)]
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    c = b - inv_phi * (b - a)
    d = a + inv_phi * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > tol:
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = objective(d)
    mu = (a + b) / 2.0
    if objective(mu) < values[best]:
        mu = grid[best]
    return mu, model_key_rate(model, distance_km, mu)


def max_distance_km(model: ChannelModel, mu: float | None = None, tol_km: float = 0.01) -> float:
    """Largest distance with a positive infinite-decoy rate (mu optimised when None)."""

    def positive(distance: float) -> bool:
        if mu is None:
            best_mu = optimal_mu(model, distance)[0]
            return model_key_rate(model, distance, best_mu, floor=False) > 0.0
        return model_key_rate(model, distance, mu, floor=False) > 0.0

    lo, hi = 0.0, 50.0
    if not positive(lo):
        return 0.0
    while positive(hi):
        lo, hi = hi, hi * 2.0
        if hi > 1e5:
            raise ValueError("max_distance_km: key rate never vanishes (lossless channel?)")
    while hi - lo > tol_km:
        mid = (lo + hi) / 2.0
        if positive(mid):
            lo = mid
        else:
            hi = mid
    return lo

"""A simulated GYS link at 25 km against the decoy-state formula (benchmarks/qkd_endtoend.py).

The rate estimated from measured gains and QBERs (vacuum + weak decoy bounds, asymptotic
GLLP) must match ``model_key_rate`` within its counting error. One systematic is known and
bounded: the Lo-Ma-Chen model ignores double clicks, which the receiver squashes into random
bits; ``squashed_gain_qber`` predicts that excess QBER in closed form, and the formula with
it must agree with the measurement within the counting error alone.
"""

from __future__ import annotations

import math
from pathlib import Path

from experiments.keygen.endtoend_benchmark import (
    ClassCounts,
    asymptotic_estimate,
    channel_model,
    measure_link,
    squashed_gain_qber,
)
from labctl.qkd.estimation.model import GYS
from sims.scenarios import scenario_world
from tests.experiments.keygen.keygen_helpers import ROOT

SCENARIO = ROOT / "configs" / "scenarios" / "gys.yaml"
DISTANCE_KM = 25.0
PULSES = 300_000_000  # ~1.6 M detections: rate error ~2 % (dominated by the vacuum class)
Z_MAX = 3.0


async def test_gys_25km_rate_matches_decoy_formula(tmp_path: Path) -> None:
    m = await measure_link(SCENARIO, DISTANCE_KM, PULSES, finite_key=False, folder=tmp_path)
    model = channel_model(scenario_world(SCENARIO, distance_km=DISTANCE_KM).settings)
    # The scenario file is the published link (Y0 = 1 - (1 - 4.25e-7)^4, not exactly 4 x).
    assert (model.alpha_db_per_km, model.eta_bob, model.e_det) == (0.21, 0.045, 0.033)
    assert math.isclose(model.y0, GYS.y0, rel_tol=1e-5)
    assert m.scheme == "vacuum+weak"
    # Per-class gains and QBERs: the squashed receiver model, within counting error.
    for c in m.classes:
        gain, qber = squashed_gain_qber(model, c.mu, DISTANCE_KM)
        assert abs(c.gain - gain) < 4 * math.sqrt(c.gain_var), (c.mu, c.gain, gain)
        assert abs(c.error_rate - qber) < 4 * math.sqrt(c.error_rate_var), (c.mu, c.error_rate)
    est = m.estimate
    assert 0.005 < est.stderr / est.rate < 0.05  # an honest, non-trivial error bar
    # Against the squashing-corrected formula: counting error only.
    assert abs(est.rate - m.squashed_rate) < Z_MAX * est.stderr
    # Against the plain decoy-state formula: counting error plus the bounded double-click term
    # (about -3 % of the rate at 25 km, shrinking with distance).
    systematic = abs(m.squashed_rate - m.formula_rate)
    assert systematic < 0.05 * m.formula_rate
    assert abs(est.rate - m.formula_rate) < Z_MAX * est.stderr + systematic
    assert m.formula_rate > 0 and abs(est.rate / m.formula_rate - 1.0) < 0.1


def test_delta_method_error_matches_binomial_spread() -> None:
    # The delta-method error of the estimate against the spread of estimates computed from
    # independently resampled counts (binomial draws around the GYS expectations).
    import numpy as np

    rng = np.random.default_rng(5)
    pulses = 3e8
    classes = [(0.48, 0.8), (0.1, 0.15), (0.0, 0.05)]

    def draw() -> list[ClassCounts]:
        out = []
        for mu, p in classes:
            n = pulses * p
            det = int(rng.binomial(int(n), GYS.gain(mu, DISTANCE_KM)))
            sifted = int(rng.binomial(det, 0.5))
            err = int(rng.binomial(sifted, GYS.qber(mu, DISTANCE_KM) if mu else 0.5))
            out.append(ClassCounts(mu, p, n, det, sifted, err))
        return out

    rates = [asymptotic_estimate(draw()).rate for _ in range(400)]
    spread = float(np.std(rates, ddof=1))
    predicted = asymptotic_estimate(draw()).stderr
    # 400 draws: the sample std is known to ~4 %; allow 15 %.
    assert abs(predicted / spread - 1.0) < 0.15, (predicted, spread)

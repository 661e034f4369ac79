"""End-to-end simulated GYS link at 0, 25, 50 and 100 km against the decoy-state formula.

For each distance: Bob's tagger twin on configs/scenarios/gys.yaml is read for N pulses
(N grows with distance so every point has ~2-3 million detections); per-intensity gains and
QBERs are measured against Alice's pattern; the asymptotic GLLP rate with vacuum + weak decoy
bounds computed *from those measured values* is compared with ``model_key_rate`` for the
same scheme and the scenario's parameters (z = difference / delta-method standard error).
The same block then goes through the live nodes (Cascade, verification, Lim et al.
finite-key length with eps_sec = 1e-10, PA): that finite-key rate is reported separately
and is lower than the asymptotic one by construction.

    .venv/bin/python benchmarks/qkd_endtoend.py [--quick]

Prints JSON. ``--quick`` uses 10x fewer pulses. Baseline in the same process: the formula.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.keygen.endtoend_benchmark import (  # noqa: E402
    LinkMeasurement,
    channel_model,
    measure_link,
    squashed_gain_qber,
)
from labctl.link.settings import KeygenSettings  # noqa: E402
from labctl.qkd.estimation.entropy import binary_entropy  # noqa: E402
from labctl.qkd.estimation.finite_key import DecoyProtocol, expected_counts, secret_key_length  # noqa: E402

SCENARIO = ROOT / "configs" / "scenarios" / "gys.yaml"
# 0 km is the only distance where a block that fits in memory (~4 GB) clears the finite-key
# bound; the others show the asymptotic check and a projection to larger blocks.
PULSES = {0.0: 1.2e9, 25.0: 1.2e9, 50.0: 4e9, 100.0: 4e10}
PROJECTED_PULSES = (1e10, 1e11, 1e12)


def projected_finite_key(m: LinkMeasurement, f_ec: float) -> dict[str, float]:
    """Expected Lim et al. rate per pulse at larger blocks (squashed-receiver gains, f_ec)."""
    from sims.scenarios import scenario_world

    world = scenario_world(SCENARIO, distance_km=m.distance_km)
    model = channel_model(world.settings)
    ordered = sorted(m.classes, key=lambda c: -c.mu)
    protocol = DecoyProtocol(
        (ordered[0].mu, ordered[1].mu, ordered[2].mu),
        (ordered[0].probability, ordered[1].probability, ordered[2].probability),
    )
    gq = [squashed_gain_qber(model, c.mu, m.distance_km) for c in ordered]
    settings = KeygenSettings()
    out = {}
    for n in (m.pulses, *PROJECTED_PULSES):
        key, test = expected_counts(n, 0.5, protocol, [g for g, _ in gq], [e for _, e in gq])
        leak = f_ec * key.total * binary_entropy(key.total_errors / key.total)
        result = secret_key_length(
            key,
            test,
            protocol,
            eps_sec=settings.eps_sec,
            eps_cor=settings.eps_cor,
            leak_ec_bits=leak,
        )
        out[f"{n:.3g}"] = result.secret_bits / n
    return out


async def run(quick: bool) -> dict[str, object]:
    """Measure every distance; the JSON report."""
    points = []
    t_start = time.perf_counter()
    for distance, pulses in PULSES.items():
        n = int(pulses / 10 if quick else pulses)
        t0 = time.perf_counter()
        m = await measure_link(SCENARIO, distance, n)
        point = m.report()
        fk = m.finite_key
        f_ec = fk.ec_efficiency if fk is not None and fk.ec_efficiency else 1.1
        point["finite_key_projection_per_pulse"] = projected_finite_key(m, f_ec)
        point["seconds"] = round(time.perf_counter() - t0, 2)
        points.append(point)
        print(
            f"{distance:5.0f} km: estimate {m.estimate.rate:.4e} +- {m.estimate.stderr:.1e}, "
            f"formula {m.formula_rate:.4e}, z {m.z_score:+.2f}, finite-key "
            f"{0 if fk is None else fk.secret_bits / fk.pulses:.3e}/pulse",
            file=sys.stderr,
        )
    worst = max(abs(float(p["z_score"])) for p in points)  # type: ignore[arg-type]
    worst_squashed = max(
        abs(float(p["z_score_vs_squashing_model"]))
        for p in points  # type: ignore[arg-type]
    )
    return {
        "benchmark": "qkd_endtoend",
        "scenario": "configs/scenarios/gys.yaml (GYS: 0.21 dB/km, eta_Bob 0.045, Y0 1.7e-6, "
        "e_det 3.3 %, f 1.22; mu 0.48 / 0.1 / 0 with p 0.8 / 0.15 / 0.05)",
        "units": "asymptotic rates per signal pulse (the formula's unit); finite-key rates "
        "per pulse sent (all classes)",
        "quick": quick,
        "points": points,
        "max_abs_z": worst,
        "all_within_3_sigma": worst < 3.0,
        "max_abs_z_vs_squashing_model": worst_squashed,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def main() -> None:
    """Parse arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer pulses per distance")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.quick)), indent=2))


if __name__ == "__main__":
    main()

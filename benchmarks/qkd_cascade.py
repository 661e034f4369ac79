"""Cascade efficiency, frame error rate, channel use and throughput.

For n in {1e4, 1e6} and Q in {1, 2, 5, 10} %: efficiency f = disclosed / (n h(Q_actual))
of the optimized schedule (Martinez-Mateo et al. 2015 "opt. (7)" + sub-block reuse) and of
the original Brassard-Salvail schedule measured on the same frames in the same process
(ratio), the frame error rate after verification (a frame fails when the keys still
differ; the eps_cor hash is what detects it), round trips, and Mbit/s of Bob's single
thread including Alice's answers, in CPU time (time.process_time; the machine is shared):
"mbit_per_s" with the public shuffles of the frame's seed already cached (as in a run that
reuses a schedule seed), "mbit_per_s_fresh_seed" including generating them (a fresh seed
per frame, as experiments/keygen does), and "mbit_per_s_numpy_path" for the same frames on
the pure-numpy path (compiled=False on both sides) with "ratio_compiled_vs_numpy"; the two
paths exchange the same queries (tests/qkd/test_cascade.py). Targets: f <= 1.10, >= 5 Mbit/s.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from labctl.qkd.cascade import reconcile
from labctl.qkd.cascade_schedule import CascadeSchedule
from labctl.qkd.secret import SecretBits
from labctl.qkd.verification import make_tag, tags_match


def _run(n: int, q: float, frames: int, rng: np.random.Generator) -> dict[str, object]:
    effs, effs_orig, rts, rts_orig, times, cold, failures = [], [], [], [], [], [], 0
    numpy_times: list[float] = []
    for _ in range(frames):
        a = rng.integers(0, 2, n, dtype=np.uint8)
        err = (rng.random(n) < q).astype(np.uint8)
        alice, bob = SecretBits(a), SecretBits(a ^ err)
        actual = float(err.mean())
        sched = CascadeSchedule.create(n, q, seed=int(rng.integers(2**62)))
        t0 = time.process_time()
        reconcile(alice, bob, sched)  # generates (and caches) this seed's public shuffles
        cold.append(time.process_time() - t0)
        t0 = time.process_time()
        out = reconcile(alice, bob, sched)
        times.append(time.process_time() - t0)
        t0 = time.process_time()
        slow = reconcile(alice, bob, sched, compiled=False)
        numpy_times.append(time.process_time() - t0)
        if slow.key != out.key or slow.stats.disclosed_bits != out.stats.disclosed_bits:
            raise SystemExit("compiled and numpy paths disagree")
        tag = make_tag(alice, 1e-12, rng)
        failures += int(not tags_match(out.key, tag))
        effs.append(out.stats.efficiency(actual))
        rts.append(out.stats.round_trips)
        orig = reconcile(alice, bob, CascadeSchedule.create(n, q, seed=7, name="original"))
        effs_orig.append(orig.stats.efficiency(actual))
        rts_orig.append(orig.stats.round_trips)
    f_opt, f_orig = float(np.mean(effs)), float(np.mean(effs_orig))
    return {
        "n_bits": n,
        "qber": q,
        "frames": frames,
        "efficiency_f": round(f_opt, 4),
        "efficiency_f_std": round(float(np.std(effs)), 4),
        "efficiency_original_cascade": round(f_orig, 4),
        "ratio_opt_vs_original": round(f_opt / f_orig, 4),
        "frame_error_rate_after_verification": failures / frames,
        "round_trips_mean": round(float(np.mean(rts)), 1),
        "round_trips_original_cascade": round(float(np.mean(rts_orig)), 1),
        "mbit_per_s": round(n / float(np.median(times)) / 1e6, 3),
        "mbit_per_s_fresh_seed": round(n / float(np.median(cold)) / 1e6, 3),
        "mbit_per_s_numpy_path": round(n / float(np.median(numpy_times)) / 1e6, 3),
        "ratio_compiled_vs_numpy": round(float(np.median(numpy_times) / np.median(times)), 2),
    }


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames-small", type=int, default=50)
    parser.add_argument("--frames-large", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(2024)
    rows = []
    for n, frames in ((10_000, args.frames_small), (1_000_000, args.frames_large)):
        for q in (0.01, 0.02, 0.05, 0.10):
            rows.append(_run(n, q, frames, rng))
    print(
        json.dumps(
            {
                "benchmark": "qkd_cascade",
                "schedule": "optimized",
                "rows": rows,
                "target_efficiency": 1.10,
                "target_mbit_per_s": 5.0,
                "load_average": [round(v, 2) for v in os.getloadavg()],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Sifting throughput (detections/s) including the wire format, vs a per-detection loop.

Prints JSON: vectorized rate on N detections (announce -> bytes -> answer -> bytes -> both
sides sift), the rate of a plain Python reference on a small input measured in the same
process, their ratio, and whether both agree. Target: >= 50 M detections/s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from labctl.qkd.sifting import (
    BasisAnnouncement,
    Detections,
    SiftReply,
    announce,
    answer,
    sift_alice,
    sift_bob,
)


def _pipeline(det: Detections, a_basis: np.ndarray, a_int: np.ndarray, a_bit: np.ndarray) -> int:
    ann = BasisAnnouncement.from_bytes(announce(det).to_bytes())
    reply = SiftReply.from_bytes(answer(ann, a_basis, a_int).to_bytes())
    alice = sift_alice(ann, reply, a_bit)
    bob = sift_bob(det, reply)
    return len(alice) + len(bob)


def _reference(idx: np.ndarray, b_basis: np.ndarray, a_basis: np.ndarray) -> list[int]:
    return [int(i) for i, b, a in zip(idx, b_basis, a_basis, strict=True) if a == b]


def main() -> None:
    """Run the benchmark and print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--detections", type=int, default=10_000_000)
    args = parser.parse_args()
    n = args.detections
    rng = np.random.default_rng(1)
    idx = np.cumsum(rng.integers(1, 50, n)).astype(np.int64)
    det = Detections.create(
        idx, rng.integers(0, 2, n, dtype=np.uint8), rng.integers(0, 2, n, dtype=np.uint8)
    )
    a_basis = rng.integers(0, 2, n, dtype=np.uint8)
    a_int = rng.integers(0, 3, n, dtype=np.uint8)
    a_bit = rng.integers(0, 2, n, dtype=np.uint8)
    _pipeline(det, a_basis, a_int, a_bit)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        _pipeline(det, a_basis, a_int, a_bit)
        times.append(time.perf_counter() - t0)
    rate = n / min(times)
    small = 200_000
    t0 = time.perf_counter()
    ref = _reference(idx[:small], det.basis[:small], a_basis[:small])
    ref_rate = small / (time.perf_counter() - t0)
    sub = Detections.create(idx[:small], det.basis[:small], det.bit[:small])
    fast = sift_bob(sub, answer(announce(sub), a_basis[:small], a_int[:small]))
    print(
        json.dumps(
            {
                "benchmark": "qkd_sifting",
                "detections": n,
                "detections_per_s": round(rate),
                "target_detections_per_s": 50_000_000,
                "meets_target": rate >= 50e6,
                "reference_python_loop_per_s": round(ref_rate),
                "ratio_vs_reference": round(rate / ref_rate, 1),
                "matches_reference": fast.pulse_index.tolist() == ref,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""Wegman-Carter transcript hashing throughput and what authentication costs per block.

Prints JSON: the best-of-3 CPU time (time.process_time) of hashing a transcript of
``--mbytes`` MB with the four-lane polynomial hash mod 2^61 - 1 (labctl.qkd.auth.transcript,
numba), with HMAC-SHA256 of the same bytes in the same process as the baseline (ratio), the
pure-Python polynomial mod 2^127 - 1 of labctl.qkd.auth.wegman_carter on a 1 MB slice (what a
one-level hash would cost), the bound per checkpoint and the pad bits a block uses (3
checkpoints of 128 bits) against what tagging every message would use for ``--messages``
messages per block, and the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable

from labctl.qkd.auth.transcript import EPS_PER_CHECK, LANES, P61, StreamHash
from labctl.qkd.auth.wegman_carter import poly_hash


def _best_cpu_s(run: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        run()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mbytes", type=float, default=12.0, help="transcript size (MB)")
    parser.add_argument("--messages", type=int, default=690, help="messages per block")
    args = parser.parse_args()
    data = os.urandom(int(args.mbytes * 1e6))
    keys = tuple(secrets.randbelow(P61 - 1) + 1 for _ in range(LANES))

    def lanes() -> bytes:
        stream = StreamHash(keys)
        stream.update(data)
        return stream.digest()

    lanes()  # numba compile (cached) outside the timing
    poly_s = _best_cpu_s(lanes)
    hmac_s = _best_cpu_s(lambda: hmac.new(b"k" * 32, data, hashlib.sha256).digest())
    one_mb = data[:1_000_000]
    p127_s = _best_cpu_s(lambda: poly_hash(secrets.randbelow(2**126) + 1, one_mb), repeats=1)
    print(
        json.dumps(
            {
                "transcript_mbytes": args.mbytes,
                "poly61x4_mbytes_per_s": args.mbytes / poly_s,
                "hmac_sha256_mbytes_per_s": args.mbytes / hmac_s,
                "ratio_poly_to_hmac_time": poly_s / hmac_s,
                "poly127_python_mbytes_per_s": 1.0 / p127_s,
                "eps_per_checkpoint": EPS_PER_CHECK,
                "pad_bits_per_block_checkpoints": 3 * 128,
                "pad_bits_per_block_per_message_tags": args.messages * 128,
                "load_average": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

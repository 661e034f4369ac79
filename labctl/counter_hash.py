"""splitmix64: the counter-based hash behind every reproducible draw in labctl and its twins.

``splitmix64(golden * counter + key)`` gives independent-looking 64-bit words for any
counter, in any order (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014; the finaliser of Java's SplittableRandom). The public Cascade
shuffles and the simulated world's per-pulse choices draw from it, so a draw can be
recomputed for any index without replaying a stream. ``splitmix64`` works on numpy arrays;
``splitmix64_scalar`` is the same finaliser for numba kernels (inlined where called). uint64
constants stay uint64: mixing them with Python ints would promote to float64.

Not a cryptographic generator: secret states come from ``labctl.interfaces.pattern``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

U64 = npt.NDArray[np.uint64]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
"""The counter's stride (2^64 / golden ratio)."""
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)


def splitmix64(values: U64) -> U64:
    """The finaliser applied element-wise (a new array; uint64 arithmetic wraps by design)."""
    z = values ^ (values >> _S30)
    z *= MIX1
    z ^= z >> _S27
    z *= MIX2
    z ^= z >> _S31
    return z


@njit(cache=True, nogil=True, inline="always")
def splitmix64_scalar(z: np.uint64) -> np.uint64:
    """The finaliser of one uint64, for numba kernels."""
    z = z ^ (z >> _S30)
    z = z * MIX1
    z = z ^ (z >> _S27)
    z = z * MIX2
    return z ^ (z >> _S31)

"""Compiled kernel behind :class:`labctl.interfaces.pattern.PackedCodes`: a pattern's state
codes packed two pulses a byte in one pass (numpy needs six passes and two temporaries)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

U8 = npt.NDArray[np.uint8]


@njit(cache=True, nogil=True)
def pack_states(intensity: U8, basis: U8, bit: U8) -> tuple[U8, bool]:  # pragma: no cover
    """(codes two a byte, low nibble first; True when every intensity class is below 4).

    A pulse's code is intensity * 4 + basis * 2 + bit; with a class of 4 or more the codes
    do not fit a nibble and the packed bytes are not to be used.
    """
    n = intensity.size
    out = np.empty((n + 1) // 2, dtype=np.uint8)
    widest = np.uint8(0)
    for k in range(n // 2):
        i, j = 2 * k, 2 * k + 1
        widest |= intensity[i] | intensity[j]
        low = (intensity[i] << 2) | (basis[i] << 1) | bit[i]
        high = (intensity[j] << 2) | (basis[j] << 1) | bit[j]
        out[k] = np.uint8(low | (high << 4))
    if n % 2:
        last = n - 1
        widest |= intensity[last]
        out[n // 2] = np.uint8((intensity[last] << 2) | (basis[last] << 1) | bit[last])
    return out, bool(widest < 4)

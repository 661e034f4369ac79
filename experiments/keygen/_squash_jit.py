"""Compiled kernel behind :func:`experiments.keygen.acquisition.detections_from_indices`:
the clicks of one pulse merged in one pass, in place (numpy needs the start of every pulse
as an int64 array, a gather and two reductions: three block-sized temporaries)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]

MIXED = np.uint8(255)
"""Detector code left on a pulse whose clicks came from different detectors."""


@njit(cache=True, nogil=True)
def squash_sorted(index: I64 | I32, code: U8) -> int:  # pragma: no cover
    """Merge runs of equal ``index`` (sorted) in place; returns the number of pulses n.

    Afterwards ``index[:n]`` holds each pulse once and ``code[:n]`` its detector code, or
    :data:`MIXED` where the pulse's clicks disagree. Codes must be below 255.
    """
    n = 0
    for i in range(index.size):
        if n > 0 and index[i] == index[n - 1]:
            if code[i] != code[n - 1]:
                code[n - 1] = MIXED
        else:
            index[n] = index[i]
            code[n] = code[i]
            n += 1
    return n

"""numba kernels behind :mod:`~labctl.qkd.privacy.toeplitz_blocks` (imported only with numba)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit


@njit(cache=True, nogil=True)
def accumulate(
    acc: npt.NDArray[np.complex128],
    seeds: npt.NDArray[np.complex128],
    first_diagonal: int,
    spectra: npt.NDArray[np.complex128],
    blocks: int,
) -> None:
    """acc[r] += seeds[e - first_diagonal] * spectra[c] for every column block c < blocks
    whose diagonal e = r - c + blocks - 1 is in this batch of seed spectra."""
    rows, width = acc.shape
    batch = seeds.shape[0]
    for r in range(rows):
        for i in range(batch):
            c = r + blocks - 1 - (first_diagonal + i)
            if 0 <= c < blocks:
                for w in range(width):
                    acc[r, w] += seeds[i, w] * spectra[c, w]


@njit(cache=True, nogil=True)
def round_parity(values: npt.NDArray[np.float64], parity: npt.NDArray[np.uint8]) -> float:
    """parity[i] = rint(values[i]) mod 2 (ties to even); returns the largest |values - rint|."""
    worst = 0.0
    for i in range(values.size):
        r = np.rint(values[i])
        parity[i] = np.uint8(np.int64(r) & 1)
        d = abs(values[i] - r)
        if not d <= worst:
            if d != d:  # NaN: no integer is near
                return np.inf
            worst = d
    return worst

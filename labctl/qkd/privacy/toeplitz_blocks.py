"""Toeplitz products as products of small Toeplitz blocks, so every FFT stays cache-sized.

The m x n matrix T[i, j] = s[i - j + n - 1] is cut into b x b blocks; block (r, c) is the
Toeplitz matrix of the 2b-bit seed segment of diagonal e = r - c + C - 1, identical for
every block on that diagonal, so each segment is transformed once and reused along it.
Output block r is sum_c segment_e (*) x_c: the spectra are accumulated and inverted once
per output block, and the window [b - 1, 2b - 1) of a 2b-point cyclic convolution is
alias-free (the linear tail wraps only onto indices below b - 2).

It does not beat one big FFT (benchmarks/README.md, "figures behind the code"): the small
transforms run faster per point, but copies, seed segments and the R C (b + 1) multiply-adds
eat the gain. So it is an opt-in method (``method="blocks"``), exact and tested, kept for
machines with small caches or for very long keys where one transform no longer fits in
memory.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import numpy.typing as npt

from labctl.qkd.privacy.fft_convolution import ConvolutionBackend, Floats

Bits = npt.NDArray[np.uint8]

BLOCK_BITS = 1 << 14
"""b: transforms of 2^15 points stay in the 1 MiB L2 cache with their spectra."""
_SEED_BATCH = 8
"""Seed-segment spectra transformed (and held) at a time: memory stays ~ the key's."""


def _load() -> ModuleType | None:
    try:
        from labctl.qkd.privacy import _toeplitz_jit
    except ImportError:  # numba is optional here: the numpy loop is the fallback
        return None
    return _toeplitz_jit


_KERNELS = _load()
ROUNDING_KERNEL = None if _KERNELS is None else _KERNELS.round_parity
"""Compiled rounding + parity + worst-error pass for privacy.py (None without numba)."""


def block_product(seed: Bits, x: Bits, m: int, block: int, fft: ConvolutionBackend) -> Floats:
    """T x (before reduction mod 2) for the m x n Toeplitz matrix of ``seed``, by blocks."""
    n = x.size
    b = block
    cols, rows = -(-n // b), -(-m // b)
    length = 2 * b
    x_rows = np.zeros((cols, length), dtype=np.float64)
    x_padded = np.zeros(cols * b, dtype=np.float64)
    x_padded[:n] = x  # zero tail in the last block
    x_rows[:, :b] = x_padded.reshape(cols, b)
    x_spectra = fft.rfft_rows(x_rows)
    del x_rows
    # Seed padded so that diagonal e's segment is padded[e b : e b + 2b]; padding only
    # meets zero columns or discarded rows.
    padded = np.zeros((rows + cols) * b, dtype=np.float64)
    padded[cols * b - n : cols * b - n + seed.size] = seed
    chunks = padded.reshape(rows + cols, b)
    acc = np.zeros((rows, b + 1), dtype=np.complex128)
    diagonals = rows + cols - 1
    for e0 in range(0, diagonals, _SEED_BATCH):
        e1 = min(e0 + _SEED_BATCH, diagonals)
        segments = np.concatenate((chunks[e0:e1], chunks[e0 + 1 : e1 + 1]), axis=1)
        seed_spectra = fft.rfft_rows(segments)
        if _KERNELS is not None:
            _KERNELS.accumulate(acc, seed_spectra, e0, x_spectra, cols)
            continue
        for i, e in enumerate(range(e0, e1)):  # numpy fallback: same sums
            r_lo, r_hi = max(0, e - cols + 1), min(rows, e + 1)
            for r in range(r_lo, r_hi):
                acc[r] += seed_spectra[i] * x_spectra[r + cols - 1 - e]
    out = fft.irfft_rows(acc, length)[:, b - 1 : 2 * b - 1]
    return out.reshape(-1)[:m].copy()

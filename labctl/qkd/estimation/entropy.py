"""Entropy helpers shared by estimation, key-rate and reconciliation code."""

from __future__ import annotations

import math
from typing import overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@overload
def binary_entropy(p: float) -> float: ...
@overload
def binary_entropy(p: FloatArray) -> FloatArray: ...
def binary_entropy(p: float | FloatArray) -> float | FloatArray:
    """Binary Shannon entropy h(p) = -p log2 p - (1-p) log2(1-p), with h(0) = h(1) = 0."""
    arr = np.asarray(p, dtype=np.float64)
    if np.any((arr < 0.0) | (arr > 1.0)) or np.any(np.isnan(arr)):
        raise ValueError(f"binary_entropy: probability outside [0, 1]: {p!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -arr * np.log2(arr) - (1.0 - arr) * np.log2(1.0 - arr)
    h = np.where((arr == 0.0) | (arr == 1.0), 0.0, h)
    if np.ndim(h) == 0:
        return float(h)
    return np.asarray(h, dtype=np.float64)


def shannon_limit_bits(n_bits: int, qber: float) -> float:
    """Minimum bits any reconciliation must disclose for n bits at error rate qber: n h(Q)."""
    if n_bits < 0:
        raise ValueError(f"shannon_limit_bits: n_bits must be >= 0, got {n_bits}")
    return n_bits * binary_entropy(float(qber))


def log2_or_inf(x: float) -> float:
    """log2(x) for x > 0, -inf for x == 0 (used in security-parameter penalties)."""
    if x < 0.0:
        raise ValueError(f"log2_or_inf: negative argument {x}")
    return -math.inf if x == 0.0 else math.log2(x)

"""numba kernel behind :mod:`labctl.qkd.auth.transcript`: Horner steps mod p = 2^61 - 1."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

_P = np.uint64((1 << 61) - 1)
_M29 = np.uint64((1 << 29) - 1)
_M32 = np.uint64((1 << 32) - 1)
_S3 = np.uint64(3)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_S61 = np.uint64(61)


@njit(cache=True, nogil=True, inline="always")
def _fold(x: np.uint64) -> np.uint64:
    """x mod p for x < 2^64 (two Mersenne folds and one subtraction)."""
    x = (x & _P) + (x >> _S61)
    x = (x & _P) + (x >> _S61)
    if x >= _P:
        x -= _P
    return x


@njit(cache=True, nogil=True, inline="always")
def _mulmod(a: np.uint64, b: np.uint64) -> np.uint64:
    """a * b mod p for a, b < 2^61, from 32-bit halves (no 128-bit product needed)."""
    a_lo = a & _M32
    a_hi = a >> _S32
    b_lo = b & _M32
    b_hi = b >> _S32
    lo = a_lo * b_lo
    mid = a_hi * b_lo + a_lo * b_hi
    hi = a_hi * b_hi
    # a b = hi 2^64 + mid 2^32 + lo, with 2^61 = 1 and 2^64 = 8 (mod p)
    r = (hi << _S3) + (mid >> _S29) + ((mid & _M29) << _S32) + (lo & _P) + (lo >> _S61)
    return _fold(r)


@njit(cache=True, nogil=True)
def horner(
    acc: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64], coefficients: npt.NDArray[np.uint64]
) -> None:
    """acc[j] = (...((acc[j] + c_0) k_j + c_1) k_j ...) k_j mod p for every lane j."""
    for j in range(acc.size):
        a = acc[j]
        k = keys[j]
        for i in range(coefficients.size):
            a = _mulmod(_fold(a + coefficients[i]), k)
        acc[j] = a

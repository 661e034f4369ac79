"""numba kernels for the public Cascade shuffles (imported by ``_cascade_jit``).

Fisher-Yates from counter-based splitmix64 draws keyed by (seed, pass), so that the
pure-Python fallback in :mod:`labctl.qkd.cascade.schedule` gives the same permutation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from labctl.counter_hash import GOLDEN as _GOLDEN
from labctl.counter_hash import splitmix64_scalar as _splitmix

_S32 = np.uint64(32)


_LOW32 = np.uint64(0xFFFFFFFF)

ShuffleArray = npt.NDArray[np.int32]


@njit(cache=True, nogil=True, inline="always")
def _swap(order: ShuffleArray, i: int, r: np.uint64) -> None:
    j = np.int64((r * np.uint64(i + 1)) >> _S32)
    t = order[i]
    order[i] = order[j]
    order[j] = t


@njit(cache=True, nogil=True, inline="always")
def _shuffle_into(order: ShuffleArray, stream: np.uint64) -> None:
    n = order.size
    for i in range(n):
        order[i] = i
    i = n - 1
    if i >= 1 and i % 2 == 0:
        _swap(order, i, _splitmix(np.uint64(i >> 1) * _GOLDEN + stream) & _LOW32)
        i -= 1
    while i >= 1:  # i odd: i uses the high half, i - 1 the low half of one draw
        z = _splitmix(np.uint64(i >> 1) * _GOLDEN + stream)
        _swap(order, i, z >> _S32)
        if i - 1 >= 1:
            _swap(order, i - 1, z & _LOW32)
        i -= 2


@njit(cache=True, nogil=True)
def fisher_yates(n: int, stream: np.uint64) -> ShuffleArray:
    """Fisher-Yates shuffle of 0..n-1 (int32); swap i <-> (r_i (i + 1)) >> 32 for i = n-1..1,
    with z = splitmix64((i >> 1) * golden + stream), r_i its high 32 bits for odd i and its
    low 32 bits for even i (one splitmix per two draws: the draws are half the cost of a
    shuffle that fits in cache, e.g. frames of 1e4)."""
    order = np.empty(n, dtype=np.int32)  # filled in place: no int64 temporary to page in
    _shuffle_into(order, stream)
    return order


@njit(cache=True, nogil=True)
def fisher_yates_many(n: int, streams: npt.NDArray[np.uint64]) -> ShuffleArray:
    """:func:`fisher_yates` for several streams at once, one row each (a batch of frames
    with their own seeds: one call instead of one per frame)."""
    out = np.empty((streams.size, n), dtype=np.int32)
    for f in range(streams.size):
        _shuffle_into(out[f], streams[f])
    return out


@njit(cache=True, nogil=True)
def inverse(order: ShuffleArray) -> ShuffleArray:
    """position[order[p]] = p."""
    position = np.empty_like(order)
    for p in range(order.size):
        position[order[p]] = p
    return position

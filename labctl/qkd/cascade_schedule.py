"""Cascade block-size schedules and the public per-pass shuffles.

Schedules follow Martinez-Mateo, Pacher, Peev, Ciurana, Martin, "Demystifying the
information reconciliation protocol Cascade", QIC 15, 453 (2015):

- ``original``: Brassard-Salvail, k1 = ceil(0.73/Q), k_i = 2 k_(i-1), 4 passes.
- ``optimized`` (their "Cascade opt. (7)"): block sizes are powers of two,
  k1 = 2^ceil(log2(1/Q)), k2 = 4 k1, k_i = n/2 for i >= 3, 14 passes; combined with
  parity inference (the last block parity of every pass after the first follows from the
  total parity) and reuse of already-disclosed parities.

The shuffles are public: both parties derive them from the shared seed, so they are cached
per (n, seed, pass) and reused across frames of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import numpy.typing as npt

from labctl.qkd.cascade_kernels import load, splitmix_stream_seed

IndexArray = npt.NDArray[np.int64]
ShuffleArray = npt.NDArray[np.int32]
"""Permutations are int32 (frames are far below 2^31 bits): half the memory and traffic."""
ScheduleName = Literal["optimized", "original"]

MIN_QBER = 1e-4
"""Block sizes are computed for max(Q, MIN_QBER): a zero estimate must not mean k = inf."""


@dataclass(frozen=True)
class CascadeSchedule:
    """Frame length, block size of every pass and the seed of the public shuffles."""

    n_bits: int
    block_sizes: tuple[int, ...]
    seed: int
    name: str = "custom"

    def __post_init__(self) -> None:
        if not 1 <= self.n_bits < 2**31:
            raise ValueError(f"CascadeSchedule.n_bits must be in [1, 2^31), got {self.n_bits}")
        if not self.block_sizes or any(k < 1 for k in self.block_sizes):
            raise ValueError(f"CascadeSchedule.block_sizes must be >= 1: {self.block_sizes}")
        if len(self.block_sizes) > 255:
            raise ValueError("CascadeSchedule: at most 255 passes")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"CascadeSchedule.seed must be in [0, 2^63), got {self.seed}")

    @classmethod
    def create(
        cls, n_bits: int, qber: float, seed: int, name: ScheduleName = "optimized"
    ) -> CascadeSchedule:
        """Schedule for a frame of n_bits at estimated error rate qber."""
        if not 0.0 <= qber < 0.5:
            raise ValueError(f"CascadeSchedule: qber must be in [0, 0.5), got {qber}")
        if n_bits < 2:
            raise ValueError(f"CascadeSchedule: n_bits must be >= 2, got {n_bits}")
        q = max(qber, MIN_QBER)
        half = max(n_bits // 2, 1)
        if name == "optimized":
            k1 = min(2 ** math.ceil(math.log2(1.0 / q)), half)
            k2 = min(4 * k1, half)
            sizes = (k1, k2, *([half] * 12))
        elif name == "original":
            k1 = min(math.ceil(0.73 / q), half)
            sizes = tuple(min(k1 * 2**i, n_bits) for i in range(4))
        else:
            raise ValueError(f"CascadeSchedule: unknown schedule {name!r}")
        return cls(n_bits, sizes, seed, name)

    @property
    def passes(self) -> int:
        """Number of passes."""
        return len(self.block_sizes)

    def block_count(self, pass_index: int) -> int:
        """Blocks in a pass (the last one may be shorter)."""
        return -(-self.n_bits // self.block_sizes[pass_index])

    def shuffle(self, pass_index: int) -> tuple[ShuffleArray, ShuffleArray]:
        """(order, position): order[p] is the bit at shuffled position p, position its inverse."""
        if not 0 <= pass_index < self.passes:
            raise ValueError(f"pass index {pass_index} outside [0, {self.passes})")
        return _shuffle(self.n_bits, self.seed, pass_index)


_KERNELS = load()


def _swap_targets(n_bits: int, stream: np.uint64) -> npt.NDArray[np.int64]:
    """j_i = (r_i (i + 1)) >> 32 for every i, as the compiled ``fisher_yates`` draws them."""
    z = np.arange(n_bits, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + stream
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    z >>= np.uint64(32)
    z *= np.arange(1, n_bits + 1, dtype=np.uint64)
    return (z >> np.uint64(32)).astype(np.int64)


def public_order(n_bits: int, seed: int, pass_index: int, *, compiled: bool = True) -> ShuffleArray:
    """Pass ``pass_index``'s public permutation: a Fisher-Yates shuffle from counter-based draws.

    Swap targets come from splitmix64 of a counter keyed by (seed, pass), so the compiled
    kernel and the pure-Python fallback give the same permutation and two nodes agree even
    when only one has numba. The multiply-shift draw is biased by at most n / 2^32, which
    is irrelevant for a public shuffle (Cascade needs errors spread, not secrecy).
    """
    stream = splitmix_stream_seed(seed, pass_index)
    if compiled and _KERNELS is not None:
        order: ShuffleArray = _KERNELS.fisher_yates(n_bits, stream)
        return order
    targets = _swap_targets(n_bits, stream).tolist()
    items = list(range(n_bits))
    for i in range(n_bits - 1, 0, -1):  # sequential by nature; the fallback only
        j = targets[i]
        items[i], items[j] = items[j], items[i]
    return np.array(items, dtype=np.int32)


@lru_cache(maxsize=16)  # one schedule's passes (Alice and Bob share them in one process)
def _shuffle(n_bits: int, seed: int, pass_index: int) -> tuple[ShuffleArray, ShuffleArray]:
    if pass_index == 0:
        order = np.arange(n_bits, dtype=np.int32)
    else:
        order = public_order(n_bits, seed, pass_index)
    if _KERNELS is not None:
        position: ShuffleArray = _KERNELS.inverse(order)
    else:
        position = np.empty_like(order)
        position[order] = np.arange(n_bits, dtype=np.int32)
    order.flags.writeable = False
    position.flags.writeable = False
    return order, position

"""Cascade block-size schedules and the public per-pass shuffles.

Schedules follow Martinez-Mateo, Pacher, Peev, Ciurana, Martin, "Demystifying the
information reconciliation protocol Cascade", QIC 15, 453 (2015):

- ``original``: Brassard-Salvail, k1 = ceil(0.73/Q), k_i = 2 k_(i-1), 4 passes.
- ``optimized`` (their "Cascade opt. (7)"): block sizes are powers of two,
  k1 = 2^ceil(log2(1/Q)), k2 = 4 k1, k_i = n/2 for i >= 3, 14 passes; combined with
  parity inference (the last block parity of every pass after the first follows from the
  total parity) and reuse of already-disclosed parities.

The shuffles are public: both parties derive them from the shared seed, so they are cached
per (n, seed, pass) and reused across frames of the same size. A pass's inverse shuffle is
computed (and cached) separately, only when a corrected bit has to be located in it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from labctl.counter_hash import GOLDEN, splitmix64
from labctl.qkd.cascade.kernels import load, splitmix_stream_seed

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
        self._check(pass_index)
        return _order(self.n_bits, self.seed, pass_index), _position(
            self.n_bits, self.seed, pass_index
        )

    def order(self, pass_index: int) -> ShuffleArray:
        """The permutation alone (its inverse costs as much again and most passes never
        need it: it is only used to locate corrected bits in a pass)."""
        self._check(pass_index)
        return _order(self.n_bits, self.seed, pass_index)

    def _check(self, pass_index: int) -> None:
        if not 0 <= pass_index < self.passes:
            raise ValueError(f"pass index {pass_index} outside [0, {self.passes})")


_KERNELS = load()


def _swap_targets(n_bits: int, stream: np.uint64) -> npt.NDArray[np.int64]:
    """j_i = (r_i (i + 1)) >> 32 for every i, as the compiled ``fisher_yates`` draws them:
    r_i is the high (odd i) or low (even i) half of splitmix64((i >> 1) golden + stream)."""
    index = np.arange(n_bits, dtype=np.uint64)
    z = splitmix64((index >> np.uint64(1)) * GOLDEN + stream)
    odd = (index & np.uint64(1)).astype(np.bool_)
    r = np.where(odd, z >> np.uint64(32), z & np.uint64(0xFFFFFFFF))
    r *= index + np.uint64(1)
    return (r >> np.uint64(32)).astype(np.int64)


def public_order(n_bits: int, seed: int, pass_index: int, *, compiled: bool = True) -> ShuffleArray:
    """Pass ``pass_index``'s public permutation: a Fisher-Yates shuffle from counter-based draws.

    Swap targets come from splitmix64 of a counter keyed by (seed, pass), so the compiled
    kernel and the pure-Python oracle (``compiled=False``) give the same permutation. The
    multiply-shift draw is biased by at most n / 2^32, which is irrelevant for a public
    shuffle (Cascade needs errors spread, not secrecy).
    """
    stream = splitmix_stream_seed(seed, pass_index)
    if compiled:
        order: ShuffleArray = _KERNELS.fisher_yates(n_bits, stream)
        return order
    targets = _swap_targets(n_bits, stream).tolist()
    items = list(range(n_bits))
    for i in range(n_bits - 1, 0, -1):  # sequential by nature; the oracle only
        j = targets[i]
        items[i], items[j] = items[j], items[i]
    return np.array(items, dtype=np.int32)


_KEPT = 16
"""Shuffles (and, separately, inverses) kept, least recently used dropped: one schedule's
passes, which Alice and Bob share in one process."""
_ORDERS: OrderedDict[tuple[int, int, int], ShuffleArray] = OrderedDict()


def _remember(
    cache: OrderedDict[tuple[int, int, int], ShuffleArray],
    key: tuple[int, int, int],
    value: ShuffleArray,
) -> ShuffleArray:
    value.flags.writeable = False
    cache[key] = value
    if len(cache) > _KEPT:
        cache.popitem(last=False)
    return value


def _order(n_bits: int, seed: int, pass_index: int) -> ShuffleArray:
    key = (n_bits, seed, pass_index)
    order = _ORDERS.get(key)
    if order is not None:
        _ORDERS.move_to_end(key)
        return order
    if pass_index == 0:
        order = np.arange(n_bits, dtype=np.int32)
    else:
        order = public_order(n_bits, seed, pass_index)
    return _remember(_ORDERS, key, order)


_POSITIONS: OrderedDict[tuple[int, int, int], ShuffleArray] = OrderedDict()


def _position(n_bits: int, seed: int, pass_index: int) -> ShuffleArray:
    key = (n_bits, seed, pass_index)
    position = _POSITIONS.get(key)
    if position is not None:
        _POSITIONS.move_to_end(key)
        return position
    return _remember(_POSITIONS, key, _inverse(_order(n_bits, seed, pass_index)))


def cached_shuffle(
    schedule: CascadeSchedule, pass_index: int
) -> tuple[ShuffleArray | None, ShuffleArray | None]:
    """(order, position) of a pass as far as already computed (nothing is computed here)."""
    key = (schedule.n_bits, schedule.seed, pass_index)
    return _ORDERS.get(key), _POSITIONS.get(key)


def forget_shuffles(schedule: CascadeSchedule) -> None:
    """Drop the schedule's shuffles from the cache: a fresh seed per block never meets
    them again, and a 2e6-bit frame's 14 passes hold ~110 MB with their inverses."""
    for cache in (_ORDERS, _POSITIONS):
        for key in [k for k in cache if k[:2] == (schedule.n_bits, schedule.seed)]:
            del cache[key]


def inverse_shuffle(
    schedule: CascadeSchedule, pass_index: int, order: ShuffleArray
) -> ShuffleArray:
    """The inverse of ``order`` (the pass's permutation, already at hand): cached like
    :meth:`CascadeSchedule.shuffle`'s, without recomputing an order that left the cache."""
    key = (schedule.n_bits, schedule.seed, pass_index)
    position = _POSITIONS.get(key)
    if position is not None:
        _POSITIONS.move_to_end(key)
        return position
    return _remember(_POSITIONS, key, _inverse(order))


def _inverse(order: ShuffleArray) -> ShuffleArray:
    position: ShuffleArray = _KERNELS.inverse(order)
    return position

"""Where the bits of K frames reconciled together sit, pass by pass (one frame: K = 1).

Real links reconcile many frames at once so that one channel message per round trip
carries the queries of all of them. Each frame keeps its own public shuffles and block
partition: the frames' keys are concatenated (bit i of frame f at key position f n + i),
and in pass j frame f's shuffled bits occupy [f S_j, f S_j + n) of the pass's row, where
S_j is n rounded up to a multiple of the block size k_j. Blocks are then uniform
([b k_j, (b + 1) k_j) cut at the frame's end), never cross frames, and the padding
[f S_j + n, (f + 1) S_j) is never inside a block, so it is never queried nor disclosed.
A frame's tree of ranges, hence every query about it, is exactly that of the frame alone,
offset by f S_j. For K = 1, S_j >= n and everything reduces to the single-frame protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.qkd.cascade_kernels import load
from labctl.qkd.cascade_schedule import CascadeSchedule, ShuffleArray

IndexArray = npt.NDArray[np.int64]

_KERNELS = load()


class FrameLayout:
    """K frames of one length and one block-size schedule, each with its own shuffle seed."""

    def __init__(self, schedules: Sequence[CascadeSchedule], *, compiled: bool = True) -> None:
        if not schedules:
            raise ValueError("FrameLayout: no frames")
        first = schedules[0]
        for s in schedules:
            if s.n_bits != first.n_bits or s.block_sizes != first.block_sizes:
                raise ValueError(
                    "FrameLayout: frames reconciled together need one length and one "
                    f"block-size schedule ({s.n_bits} / {s.block_sizes} vs "
                    f"{first.n_bits} / {first.block_sizes})"
                )
        self.schedules = tuple(schedules)
        self.frames = len(schedules)
        self.n_bits = first.n_bits
        """Bits per frame."""
        self.block_sizes = first.block_sizes
        self.passes = first.passes
        k = np.array(first.block_sizes, dtype=np.int64)
        self.blocks_per_frame: IndexArray = -(-self.n_bits // k)
        self.frame_stride: IndexArray = self.blocks_per_frame * k
        """S_j: shuffled positions per frame in pass j (n rounded up to a multiple of k_j)."""
        self.row_length = self.frames * int(self.frame_stride.max())
        """Longest pass row (K S_j); per-pass rows are stored with stride row_length + 1."""
        self.kernels = _KERNELS if compiled else None
        """The compiled kernels module (None: numpy path)."""
        self._shuffles: dict[int, list[tuple[ShuffleArray, ShuffleArray]]] = {}
        self._typed: tuple[Any, Any] | None = None
        self._super: dict[tuple[str, int], IndexArray] = {}

    def __repr__(self) -> str:
        return f"FrameLayout(frames={self.frames}, n_bits={self.n_bits}, passes={self.passes})"

    @property
    def total_bits(self) -> int:
        """K n: the length of the concatenated key."""
        return self.frames * self.n_bits

    @property
    def kernel_layout(self) -> tuple[int, int, IndexArray]:
        """(K, n, S) as the compiled kernels take it."""
        return self.frames, self.n_bits, self.frame_stride

    def shuffles(self, pass_index: int) -> list[tuple[ShuffleArray, ShuffleArray]]:
        """(order, position) of every frame in one pass (frames sharing a seed share them)."""
        got = self._shuffles.get(pass_index)
        if got is None:
            by_seed: dict[int, tuple[ShuffleArray, ShuffleArray]] = {}
            got = []
            for s in self.schedules:
                if s.seed not in by_seed:
                    by_seed[s.seed] = s.shuffle(pass_index)
                got.append(by_seed[s.seed])
            self._shuffles[pass_index] = got
        return got

    def typed_shuffles(self) -> tuple[Any, Any]:
        """Compiled path: typed lists of every pass's orders and positions, index j K + f."""
        if self._typed is None:
            assert self.kernels is not None
            orders, positions = self.kernels.new_array_list(), self.kernels.new_array_list()
            for j in range(self.passes):
                for order, position in self.shuffles(j):
                    orders.append(order)
                    positions.append(position)
            self._typed = (orders, positions)
        return self._typed

    def frame_of(self, passes: IndexArray, shuffled: IndexArray) -> IndexArray:
        """Frame of each (pass, shuffled position)."""
        frame: IndexArray = shuffled // self.frame_stride[passes]
        return frame

    def super_order(self, pass_index: int) -> IndexArray:
        """Numpy path: key position of every shuffled position of the pass row (K S_j
        entries; padding points at position 0 and is never read as a bit)."""
        key = ("order", pass_index)
        got = self._super.get(key)
        if got is None:
            n, fs = self.n_bits, int(self.frame_stride[pass_index])
            grid = np.zeros((self.frames, fs), dtype=np.int64)
            for f, (order, _) in enumerate(self.shuffles(pass_index)):
                grid[f, :n] = order.astype(np.int64) + f * n
            got = self._super[key] = grid.reshape(-1)
        return got

    def super_position(self, pass_index: int) -> IndexArray:
        """Numpy path: shuffled position in the pass row of every key position (K n)."""
        key = ("position", pass_index)
        got = self._super.get(key)
        if got is None:
            fs = int(self.frame_stride[pass_index])
            parts = [
                position.astype(np.int64) + f * fs
                for f, (_, position) in enumerate(self.shuffles(pass_index))
            ]
            got = self._super[key] = np.concatenate(parts)
        return got

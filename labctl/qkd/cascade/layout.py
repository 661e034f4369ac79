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

from labctl.qkd.cascade.kernels import load, splitmix_stream_seed
from labctl.qkd.cascade.schedule import (
    CascadeSchedule,
    ShuffleArray,
    cached_shuffle,
    inverse_shuffle,
)
from labctl.qkd.secret import Bits

IndexArray = npt.NDArray[np.int64]

_KERNELS = load()


def block_parities(shuffled: Bits, block_size: int, n_blocks: int) -> Bits:
    """Parities of the first n_blocks blocks of an already shuffled key (last may be short)."""
    full = min(n_blocks, shuffled.size // block_size)
    out = np.empty(n_blocks, dtype=np.uint8)
    if full:
        body = shuffled[: full * block_size].reshape(full, block_size)
        out[:full] = np.add.reduce(body, axis=1, dtype=np.uint8) & 1
    if n_blocks > full:
        out[full] = np.add.reduce(shuffled[full * block_size :], dtype=np.uint8) & 1
    return out


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
        self._orders: dict[int, list[ShuffleArray]] = {}
        self._positions: dict[tuple[int, int], ShuffleArray] = {}
        self._typed: tuple[Any, Any] | None = None
        self._typed_positions = np.zeros((self.passes, self.frames), dtype=np.bool_)
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

    def orders(self, pass_index: int) -> list[ShuffleArray]:
        """Every frame's permutation in one pass (frames sharing a seed share it)."""
        got = self._orders.get(pass_index)
        if got is None:
            by_seed: dict[int, ShuffleArray] = {}
            todo: list[int] = []
            for s in self.schedules:
                if s.seed not in by_seed:
                    cached = cached_shuffle(s, pass_index)[0]
                    if cached is not None or pass_index == 0 or self.kernels is None:
                        by_seed[s.seed] = s.order(pass_index)
                    elif s.seed not in todo:
                        todo.append(s.seed)
            if len(todo) == 1:
                by_seed[todo[0]] = next(s for s in self.schedules if s.seed == todo[0]).order(
                    pass_index
                )
            elif todo:  # many fresh seeds: one kernel call (left out of the shuffle cache)
                assert self.kernels is not None
                streams = np.array(
                    [splitmix_stream_seed(seed, pass_index) for seed in todo], dtype=np.uint64
                )
                rows = self.kernels.fisher_yates_many(self.n_bits, streams)
                rows.flags.writeable = False
                by_seed.update(zip(todo, rows, strict=True))
            got = self._orders[pass_index] = [by_seed[s.seed] for s in self.schedules]
        return got

    def _position(self, frame: int, pass_index: int) -> ShuffleArray:
        schedule = self.schedules[frame]
        key = (schedule.seed, pass_index)
        got = self._positions.get(key)
        if got is None:
            order = self.orders(pass_index)[frame]
            got = self._positions[key] = inverse_shuffle(schedule, pass_index, order)
        return got

    def positions(self, pass_index: int) -> list[ShuffleArray]:
        """Every frame's inverse permutation in one pass (computed on first use)."""
        return [self._position(f, pass_index) for f in range(self.frames)]

    def positions_ready(self, pass_index: int) -> bool:
        """Whether every frame's inverse shuffle of the pass is in the typed list."""
        return bool(self._typed_positions[pass_index].all())

    def typed_shuffles(self) -> tuple[Any, Any]:
        """Compiled path: typed lists of every pass's orders and positions, index j K + f.

        Positions are placeholders (empty) until :meth:`ensure_positions` fills them: only
        passes that are started while a frame still has bits corrected need that frame's."""
        if self._typed is None:
            assert self.kernels is not None
            orders, positions = self.kernels.new_array_list(), self.kernels.new_array_list()
            empty = np.zeros(0, dtype=np.int32)
            empty.flags.writeable = False
            # A seed reused for frames of this length (every order already computed): its
            # inverses are worth computing once, since they make the block parities a
            # sequential scan; for a fresh seed only the passes that locate bits get them.
            reused = all(
                cached_shuffle(s, j)[0] is not None
                for s in self.schedules
                for j in range(self.passes)
            )
            for j in range(self.passes):
                for order in self.orders(j):
                    orders.append(order)
                    positions.append(empty)
            self._typed = (orders, positions)
            if reused:
                self.ensure_positions(self.passes)
        return self._typed

    def ensure_positions(self, passes: int, frames: IndexArray | None = None) -> None:
        """Compiled path: put the inverse shuffles of passes [0, passes) of the given
        frames (all by default) in the typed list."""
        ready = self._typed_positions[:passes]
        if frames is not None:
            ready = ready[:, frames]
        if bool(ready.all()):
            return
        typed = self.typed_shuffles()[1]
        todo = range(self.frames) if frames is None else frames.tolist()
        for j in range(passes):
            for f in todo:
                if not self._typed_positions[j, f]:
                    typed[j * self.frames + f] = self._position(f, j)
                    self._typed_positions[j, f] = True

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
            for f, order in enumerate(self.orders(pass_index)):
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
                for f, position in enumerate(self.positions(pass_index))
            ]
            got = self._super[key] = np.concatenate(parts)
        return got

    def head_parities(self, key: Bits, pass_index: int, count: int) -> Bits:
        """Parities of the first ``count`` blocks of every frame of ``key`` (K n bits) in
        pass ``pass_index``, frame-major (both sides announce or check these)."""
        k = self.block_sizes[pass_index]
        if self.kernels is not None:
            if self.positions_ready(pass_index):
                scanned: Bits = self.kernels.head_parities(
                    key, self.typed_shuffles()[1], pass_index, self.kernel_layout, k, count
                )
                return scanned
            gathered: Bits = self.kernels.head_parities_gather(
                key, self.typed_shuffles()[0], pass_index, self.kernel_layout, k, count
            )
            return gathered
        n, length = self.n_bits, min(count * k, self.n_bits)
        parts = [
            block_parities(key[f * n : (f + 1) * n][order[:length]], k, count)
            for f, order in enumerate(self.orders(pass_index))
        ]
        return np.concatenate(parts)

"""Bob's memory of every range whose parity Alice has disclosed or implied (sub-block reuse).

Martinez-Mateo et al. (2015) show that Cascade wastes parities when a cascaded correction
restarts the binary search from a whole block: any sub-block seen during an earlier search
already has a known parity. The store keeps, for every known range of every pass, whether
Bob's bits currently disagree with Alice's in parity ("odd"); each corrected bit toggles
every known range that contains it. The next search starts from the smallest odd ranges.

The ranges of one block of length L form a binary tree numbered like a heap (root 1,
children 2h and 2h + 1); node h = 2^d + i covers [floor(i L / 2^d), floor((i + 1) L / 2^d))
of the block (halves differ by at most one bit; for L a power of two this is plain
halving). The closed form gives any node's range, and the nodes on a bit's path, without
walking the tree level by level. Every
tree node of two or more bits has a slot in one dense uint8 array (bit 0: known, bit 1:
odd), so a lookup or a toggle is plain indexing instead of a search in sorted keys: the
cost of a cascade wave no longer grows with the number of known ranges. The array is
allocated with ``np.zeros`` (pages the OS hands out on first touch), about one to two
bytes per key bit and pass, and only the pages of touched nodes become resident.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.qkd.cascade.kernels import load

_KERNELS = load()

IndexArray = npt.NDArray[np.int64]
Bits = npt.NDArray[np.uint8]

_KNOWN = np.uint8(1)
_ODD = np.uint8(2)
_KNOWN_ODD = np.uint8(3)
_MARK = np.uint8(4)
"""Scratch bit for set membership (set, read and cleared within one call)."""


def _distinct(values: IndexArray) -> IndexArray:
    """Sorted distinct values (sort-based; np.unique's hash path is slower for small sets)."""
    if values.size < 2:
        return values
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _depth(heap: IndexArray) -> IndexArray:
    """floor(log2 heap) for heap ids >= 1 (exact: ids are far below 2^53)."""
    return (np.frexp(heap.astype(np.float64))[1] - 1).astype(np.int64)


def _slots(block_size: int) -> int:
    """Heap ids of nodes with >= 2 bits are < 2^ceil(log2 k) (1 for one-bit blocks)."""
    return 1 << max(math.ceil(math.log2(block_size)), 0) if block_size > 1 else 1


class NodeStore:
    """Known ranges of every pass as dense heap-numbered trees with an odd flag each."""

    def __init__(
        self,
        n_bits: int,
        block_sizes: tuple[int, ...],
        *,
        frames: int = 1,
        compiled: bool = True,
    ) -> None:
        if n_bits < 1 or not block_sizes or min(block_sizes) < 1 or frames < 1:
            raise ValueError(
                f"NodeStore: bad frame {n_bits} / block sizes {block_sizes} / {frames} frames"
            )
        self._n = n_bits
        self.block_size = np.array(block_sizes, dtype=np.int64)
        self.slots = np.array([_slots(k) for k in block_sizes], dtype=np.int64)
        # Frames side by side (labctl.qkd.cascade.layout): frame f of pass j starts at
        # f S_j, S_j = n rounded up to a multiple of k_j, so blocks never cross frames.
        per_frame = -(-n_bits // self.block_size)
        self.frame_stride = per_frame * self.block_size
        blocks = frames * per_frame
        self.offset = np.concatenate(([0], np.cumsum(blocks * self.slots)))
        self._levels = max(math.ceil(math.log2(max(block_sizes))), 1) + 1
        self._state = np.zeros(int(self.offset[-1]), dtype=np.uint8)
        self._odd = np.zeros(0, dtype=np.int64)
        self.known_count = 0
        self.kernels = _KERNELS if compiled else None
        """The compiled kernels module (None: numpy path); Bob's search uses it too."""

    def __len__(self) -> int:
        return self.known_count

    def node_id(self, passes: IndexArray, block: IndexArray, heap: IndexArray) -> IndexArray:
        """Global slot of heap node ``heap`` of ``block`` in ``passes`` (node of >= 2 bits)."""
        ids: IndexArray = self.offset[passes] + block * self.slots[passes] + heap
        return ids

    def block_range(self, passes: IndexArray, block: IndexArray) -> tuple[IndexArray, IndexArray]:
        """[start, end) of whole blocks in shuffled positions (a frame's last may be short)."""
        start = block * self.block_size[passes]
        stride = self.frame_stride[passes]
        frame_end = (start // stride) * stride + self._n
        return start, np.minimum(start + self.block_size[passes], frame_end)

    def node_range(
        self, passes: IndexArray, block: IndexArray, heap: IndexArray
    ) -> tuple[IndexArray, IndexArray]:
        """[start, end) of heap nodes (closed form, see the module docstring)."""
        first, last = self.block_range(passes, block)
        length = last - first
        depth = _depth(heap)
        i = heap - (np.int64(1) << depth)
        return first + ((i * length) >> depth), first + (((i + 1) * length) >> depth)

    def known_odd(self, ids: IndexArray) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(known, odd) of each node."""
        state = self._state[ids]
        return (state & _KNOWN).astype(np.bool_), (state & _ODD).astype(np.bool_)

    def record(self, ids: IndexArray, odd: npt.NDArray[np.bool_]) -> None:
        """Mark nodes known with the given odd flag (re-recording a known node is harmless)."""
        if ids.size == 0:
            return
        if self.kernels is not None:
            fresh, new_known = self.kernels.record(self._state, ids, odd)
            self.add_odd(fresh, int(new_known))
            return
        before = self._state[ids]
        self.known_count += int(np.count_nonzero((before & _KNOWN) == 0))
        self._state[ids] = _KNOWN | (odd.astype(np.uint8) << 1)
        fresh = ids[odd & (before != _KNOWN_ODD)]
        if fresh.size:
            self._odd = np.concatenate((self._odd, _distinct(fresh)))

    def add_odd(self, fresh: IndexArray, new_known: int) -> None:
        """Append distinct nodes that just became known-odd (the compiled search records)."""
        self.known_count += new_known
        if fresh.size:
            self._odd = np.concatenate((self._odd, fresh))

    @property
    def state(self) -> Bits:
        """The node state array (bit 0 known, bit 1 odd), shared with the compiled search."""
        return self._state

    def geometry(self) -> tuple[IndexArray, IndexArray, IndexArray, IndexArray, int]:
        """(offset, slots, block_size, frame_stride, n) as the compiled kernels take them."""
        return self.offset, self.slots, self.block_size, self.frame_stride, self._n

    def toggle_paths(self, passes: IndexArray, positions: IndexArray) -> None:
        """Flip the odd flag of every node (known or not) on the path to each corrected bit.

        Unknown nodes are toggled too: their flag is ignored until :meth:`record` sets it.
        """
        if positions.size == 0:
            return
        if self.kernels is not None:
            self._odd = self.kernels.toggle_paths(
                self._state, self._odd, passes, positions, *self.geometry(), self._levels
            )
            return
        k = self.block_size[passes]
        block = positions // k
        first, last = self.block_range(passes, block)
        length = (last - first)[:, None]
        offset = (positions - first)[:, None]
        d = np.arange(self._levels, dtype=np.int64)[None, :]
        # Node at depth d holding the bit: largest i with floor(i L / 2^d) <= offset.
        i = (((offset + 1) << d) - 1) // length
        size = (((i + 1) * length) >> d) - ((i * length) >> d)
        heap = (np.int64(1) << d) + i
        base = (self.offset[passes] + block * self.slots[passes])[:, None]
        ids = (base + heap)[size >= 2]
        state = self._state
        np.bitwise_xor.at(state, ids, _ODD)
        # New odd set: old members still odd, plus touched nodes that became odd (old
        # members are marked so that they are not added twice).
        old = self._odd
        state[old] |= _MARK
        became = _distinct(ids[state[ids] == _KNOWN_ODD])
        state[old] &= ~_MARK
        self._odd = np.concatenate((old[state[old] == _KNOWN_ODD], became))

    def correct(
        self,
        key: Bits,
        bits: IndexArray,
        positions: Any,
        started: int,
        rows: Bits,
        stride: int,
        row_ready: npt.NDArray[np.bool_],
        layout: tuple[int, int, IndexArray],
    ) -> tuple[int, tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]]:
        """Compiled path only: flip the distinct ``bits`` in the key, in the ready shuffled
        rows and on every path; returns (bits flipped, minimal odd ranges). The odd set
        kept is the minimal odd nodes only (see ``minimal_odd`` in the kernels)."""
        assert self.kernels is not None
        count, self._odd, frontier = self.kernels.correct(
            key, bits, positions, started, rows, stride, row_ready, self._state, self._odd,
            self.geometry(), self._levels, layout,
        )  # fmt: skip
        return int(count), frontier

    def decode(self, ids: IndexArray) -> tuple[IndexArray, IndexArray, IndexArray]:
        """(pass, block, heap) of global node ids."""
        passes = np.searchsorted(self.offset, ids, side="right") - 1
        rest = ids - self.offset[passes]
        return passes, rest // self.slots[passes], rest % self.slots[passes]

    def minimal_odd(self) -> tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]:
        """Odd nodes with no odd descendant (disjoint, each holds an error): pass, block,
        heap, start, end."""
        ids = self._odd
        if self.kernels is not None:
            found: tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]
            found, self._odd = self.kernels.minimal_odd(ids, self._state, *self.geometry())
            return found
        passes, block, heap = self.decode(ids)
        if ids.size > 1 and bool((heap > 1).any()):
            # An odd node is not minimal when it is an ancestor of another odd node.
            # Walk up level by level, dropping nodes that reached their root.
            deep = np.flatnonzero(heap > 1)
            base, up = ids[deep] - heap[deep], heap[deep] >> 1
            parts: list[IndexArray] = []
            while up.size:
                parts.append(base + up)
                more = up > 1
                base, up = base[more], up[more] >> 1
            above = np.concatenate(parts)
            self._state[above] |= _MARK
            keep = (self._state[ids] & _MARK) == 0
            self._state[above] &= ~_MARK
            passes, block, heap = passes[keep], block[keep], heap[keep]
        start, end = self.node_range(passes, block, heap)
        return passes, block, heap, start, end

"""Bob's memory of every range whose parity Alice has disclosed or implied (sub-block reuse).

Martinez-Mateo et al. (2015) show that Cascade wastes parities when a cascaded correction
restarts the binary search from a whole block: any sub-block seen during an earlier search
already has a known parity. The store keeps, for every known range of every pass, whether
Bob's bits currently disagree with Alice's in parity ("odd"); each corrected bit toggles
every known range that contains it. The next search starts from the smallest odd ranges.

Ranges follow the binary-search split rule (left = [s, s + (e - s) // 2)), so the known
ranges of a pass are nested or disjoint and the ranges containing a bit form one path.
Keys sort by (pass, start ascending, end descending): an ancestor comes right before its
descendants.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.int64]
Bits = npt.NDArray[np.uint8]


class NodeStore:
    """Sorted (pass, start, end) keys with an odd/even flag each."""

    def __init__(self, n_bits: int) -> None:
        self._n = n_bits
        self._radix = n_bits + 1
        self.keys = np.zeros(0, dtype=np.int64)
        self.odd = np.zeros(0, dtype=np.uint8)

    def __len__(self) -> int:
        return int(self.keys.size)

    def encode(self, passes: npt.ArrayLike, start: IndexArray, end: IndexArray) -> IndexArray:
        """Sort key of each range."""
        p = np.asarray(passes, dtype=np.int64)
        return (p * self._radix + start) * self._radix + (self._n - end)

    def decode(self, keys: IndexArray) -> tuple[npt.NDArray[np.uint8], IndexArray, IndexArray]:
        """(pass, start, end) of keys."""
        end = self._n - keys % self._radix
        rest = keys // self._radix
        return (rest // self._radix).astype(np.uint8), rest % self._radix, end

    def lookup(self, keys: IndexArray) -> tuple[IndexArray, npt.NDArray[np.bool_]]:
        """(slot, found) for each key."""
        slot = np.searchsorted(self.keys, keys)
        inside = slot < self.keys.size
        found = np.zeros(keys.size, dtype=np.bool_)
        found[inside] = self.keys[slot[inside]] == keys[inside]
        return slot, found

    def insert(self, keys: IndexArray, odd: Bits) -> None:
        """Add new ranges (keys not yet stored; duplicates within the batch are dropped)."""
        if keys.size == 0:
            return
        keys, first = np.unique(keys, return_index=True)
        odd = odd[first]
        _, found = self.lookup(keys)
        keys, odd = keys[~found], odd[~found]
        at = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, at, keys)
        self.odd = np.insert(self.odd, at, odd)

    def toggle_paths(self, pass_index: int, positions: IndexArray, block_size: int) -> None:
        """Flip the odd flag of every stored range of a pass that contains a corrected bit."""
        if positions.size == 0 or self.keys.size == 0:
            return
        start = (positions // block_size) * block_size
        end = np.minimum(start + block_size, self._n)
        hits: list[IndexArray] = []
        live = np.arange(positions.size)
        while live.size:
            s, e = start[live], end[live]
            slot, found = self.lookup(self.encode(pass_index, s, e))
            hits.append(slot[found])
            mid = s + (e - s) // 2
            go_left = positions[live] < mid
            e = np.where(go_left, mid, e)
            s = np.where(go_left, s, mid)
            start[live], end[live] = s, e
            live = live[e - s >= 2]
        all_hits = np.concatenate(hits)
        if all_hits.size:
            np.bitwise_xor.at(self.odd, all_hits, np.uint8(1))

    def minimal_odd(self) -> tuple[npt.NDArray[np.uint8], IndexArray, IndexArray]:
        """Odd ranges that contain no other odd range: disjoint, each holds an error."""
        idx = np.flatnonzero(self.odd)
        passes, start, end = self.decode(self.keys[idx])
        if idx.size > 1:
            # In (pass, start asc, end desc) order a range has an odd descendant exactly
            # when the next odd range is in the same pass and starts before it ends.
            has_child = np.zeros(idx.size, dtype=np.bool_)
            has_child[:-1] = (passes[1:] == passes[:-1]) & (start[1:] < end[:-1])
            keep = ~has_child
            return passes[keep], start[keep], end[keep]
        return passes, start, end

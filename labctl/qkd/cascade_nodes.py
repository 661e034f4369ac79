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


class _SortedTable:
    """Sorted int64 keys with a uint8 flag each; lookups by binary search."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.flag = np.zeros(0, dtype=np.uint8)

    def lookup(self, keys: IndexArray) -> tuple[IndexArray, npt.NDArray[np.bool_]]:
        """(slot, found) of each key."""
        slot = np.searchsorted(self.keys, keys)
        inside = slot < self.keys.size
        found = np.zeros(keys.size, dtype=np.bool_)
        found[inside] = self.keys[slot[inside]] == keys[inside]
        return slot, found

    def merge(self, keys: IndexArray, flag: Bits) -> None:
        """Insert keys known to be absent (sorted, unique)."""
        at = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, at, keys)
        self.flag = np.insert(self.flag, at, flag)


class NodeStore:
    """Known ranges keyed by (pass, start, end) with an odd/even flag each.

    Two sorted tables (a large one and a small recent one, merged when the recent one
    grows) keep inserts cheap; the odd keys are kept apart so that finding the next
    ranges to search does not scan every known range.
    """

    def __init__(self, n_bits: int) -> None:
        self._n = n_bits
        self._radix = n_bits + 1
        self._main = _SortedTable()
        self._recent = _SortedTable()
        self._odd_keys = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._main.keys.size + self._recent.keys.size)

    def encode(self, passes: npt.ArrayLike, start: IndexArray, end: IndexArray) -> IndexArray:
        """Sort key of each range."""
        p = np.asarray(passes, dtype=np.int64)
        return (p * self._radix + start) * self._radix + (self._n - end)

    def decode(self, keys: IndexArray) -> tuple[npt.NDArray[np.uint8], IndexArray, IndexArray]:
        """(pass, start, end) of keys."""
        end = self._n - keys % self._radix
        rest = keys // self._radix
        return (rest // self._radix).astype(np.uint8), rest % self._radix, end

    def odd_flags(self, keys: IndexArray) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(known, odd) for each key."""
        known = np.zeros(keys.size, dtype=np.bool_)
        odd = np.zeros(keys.size, dtype=np.bool_)
        for table in (self._main, self._recent):
            slot, found = table.lookup(keys)
            known |= found
            odd[found] = table.flag[slot[found]] == 1
        return known, odd

    def insert(self, keys: IndexArray, odd: Bits) -> None:
        """Add new ranges (already-known keys and duplicates in the batch are ignored)."""
        if keys.size == 0:
            return
        keys, first = np.unique(keys, return_index=True)
        odd = odd[first]
        known, _ = self.odd_flags(keys)
        keys, odd = keys[~known], odd[~known]
        self._recent.merge(keys, odd)
        self._odd_keys = np.union1d(self._odd_keys, keys[odd == 1])
        if self._recent.keys.size > max(4096, self._main.keys.size // 8):
            self._main.merge(self._recent.keys, self._recent.flag)
            self._recent = _SortedTable()

    def _toggle(self, keys: IndexArray) -> None:
        """Toggle the flag of every stored key in keys (a key listed twice toggles twice)."""
        became_odd: list[IndexArray] = []
        became_even: list[IndexArray] = []
        for table in (self._main, self._recent):
            slot, found = table.lookup(keys)
            hit = slot[found]
            if hit.size == 0:
                continue
            np.bitwise_xor.at(table.flag, hit, np.uint8(1))
            touched = np.unique(hit)
            now = table.flag[touched]
            became_odd.append(table.keys[touched[now == 1]])
            became_even.append(table.keys[touched[now == 0]])
        if became_even:
            self._odd_keys = np.setdiff1d(
                self._odd_keys, np.concatenate(became_even), assume_unique=True
            )
        if became_odd:
            self._odd_keys = np.union1d(self._odd_keys, np.concatenate(became_odd))

    def toggle_paths(self, pass_index: int, positions: IndexArray, block_size: int) -> None:
        """Flip the odd flag of every stored range of a pass that contains a corrected bit."""
        if positions.size == 0 or len(self) == 0:
            return
        start = (positions // block_size) * block_size
        end = np.minimum(start + block_size, self._n)
        path: list[IndexArray] = []
        live = np.arange(positions.size)
        while live.size:
            s, e = start[live], end[live]
            path.append(self.encode(pass_index, s, e))
            mid = s + (e - s) // 2
            go_left = positions[live] < mid
            e = np.where(go_left, mid, e)
            s = np.where(go_left, s, mid)
            start[live], end[live] = s, e
            live = live[e - s >= 2]
        self._toggle(np.concatenate(path))

    def minimal_odd(self) -> tuple[npt.NDArray[np.uint8], IndexArray, IndexArray]:
        """Odd ranges that contain no other odd range: disjoint, each holds an error."""
        passes, start, end = self.decode(self._odd_keys)
        if passes.size > 1:
            # In (pass, start asc, end desc) order a range has an odd descendant exactly
            # when the next odd range is in the same pass and starts before it ends.
            has_child = np.zeros(passes.size, dtype=np.bool_)
            has_child[:-1] = (passes[1:] == passes[:-1]) & (start[1:] < end[:-1])
            keep = ~has_child
            return passes[keep], start[keep], end[keep]
        return passes, start, end

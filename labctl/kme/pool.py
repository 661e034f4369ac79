"""Key material for the KME, sliced from the node's key store in store order.

The store holds the link's final keys, identical at Alice and Bob (same ids, same bits, same
order). The pool sees them as one byte string: the whole bytes of each stored key, oldest
first (a key's last ``n_bits % 8`` bits are not used). A key handed to an SAE is a run of
that string, possibly spanning several stored keys, described by :class:`Segment` s (store
key id, byte offset, length) that mean the same bytes at both nodes.

Only the allocator KME picks material: it walks a cursor forward and never back, taking
durable leases ahead of it (:class:`~labctl.kme.ledger.Ledger`). The other KME takes
locations from the allocator, checks them against its own store (key present and long
enough) and recomputes their place in its own store order before recording them consumed.
A key_ID is a UUID derived from its first segment and size, so both KMEs name the same
bytes the same way and a location that does not match its key_ID is refused.
"""

from __future__ import annotations

import bisect
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from labctl.kme.ledger import Ledger, Segment
from labctl.store.keystore import KeyStore, KeyStoreError

# Names the key_IDs of this scheme (uuid5 of the first segment and the size).
KEY_ID_NAMESPACE = uuid.UUID("6f1c1a52-5b1e-4c55-9f0e-2f4d3c1b0a14")
_CACHE_KEYS = 4


class PoolError(Exception):
    """The pool cannot do what was asked (short of material, unknown store key)."""


def key_id_for(segments: Sequence[Segment], size_bits: int) -> str:
    """The key_ID of the key made of ``segments`` (same at both KMEs)."""
    first = segments[0]
    return str(uuid.uuid5(KEY_ID_NAMESPACE, f"{first.key_id}/{first.offset}/{size_bits}"))


class KeyPool:
    """The store's keys as one byte string, with an allocation cursor (allocator only)."""

    def __init__(self, store: KeyStore, ledger: Ledger, *, lease_bytes: int = 1 << 16) -> None:
        self.store = store
        self.ledger = ledger
        self.lease_bytes = lease_bytes
        self._last_row = 0
        self._starts: list[int] = []
        self._ids: list[str] = []
        self._lens: list[int] = []
        self._where: dict[str, int] = {}
        self._total = 0
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._lease_end = ledger.lease_end()
        # After a restart, begin past everything that may have been handed out.
        self._cursor = max(self._lease_end, ledger.consumed_end())
        self.refresh()

    def refresh(self) -> None:
        """Take in the keys the store gained since the last look."""
        for row, key_id, n_bits in self.store.sizes_after(self._last_row):
            self._last_row = row
            n_bytes = n_bits // 8
            if n_bytes == 0 or key_id in self._where:
                continue
            self._where[key_id] = len(self._ids)
            self._starts.append(self._total)
            self._ids.append(key_id)
            self._lens.append(n_bytes)
            self._total += n_bytes

    @property
    def total_bytes(self) -> int:
        """Whole bytes of key the store holds."""
        return self._total

    def available_bytes(self) -> int:
        """Bytes past the cursor (for the other KME: past everything consumed)."""
        return max(0, self._total - max(self._cursor, self.ledger.consumed_end()))

    def allocate(self, count: int, size_bytes: int) -> list[tuple[Segment, ...]]:
        """``count`` keys of ``size_bytes`` each, from the cursor on (PoolError if short)."""
        need = count * size_bytes
        if need > self.available_bytes():
            self.refresh()
        if need > self.available_bytes():
            raise PoolError(
                f"the pool holds {self.available_bytes() // size_bytes} keys of "
                f"{8 * size_bytes} bits, {count} asked"
            )
        start = max(self._cursor, self.ledger.consumed_end())
        if start + need > self._lease_end:
            # Durable before any byte of the lease leaves: a restart starts past it.
            self._lease_end = start + need + self.lease_bytes
            self.ledger.extend_lease(self._lease_end)
        keys = []
        for k in range(count):
            keys.append(self._slice(start + k * size_bytes, size_bytes))
        self._cursor = start + need
        return keys

    def _slice(self, start: int, n_bytes: int) -> tuple[Segment, ...]:
        segments = []
        i = bisect.bisect_right(self._starts, start) - 1
        while n_bytes > 0:
            offset = start - self._starts[i]
            take = min(n_bytes, self._lens[i] - offset)
            segments.append(Segment(self._ids[i], offset, take, start))
            start, n_bytes, i = start + take, n_bytes - take, i + 1
        return tuple(segments)

    def localize(self, segments: Sequence[Segment]) -> tuple[Segment, ...]:
        """Segments from the other KME placed in this store's order (PoolError if absent)."""
        out = []
        for seg in segments:
            i = self._where.get(seg.key_id)
            if i is None:
                self.refresh()
                i = self._where.get(seg.key_id)
            if i is None:
                raise PoolError(f"store key {seg.key_id} is not in this node's store (yet)")
            if seg.offset + seg.n_bytes > self._lens[i]:
                raise PoolError(f"store key {seg.key_id} has no bytes {seg.offset}+{seg.n_bytes}")
            out.append(Segment(seg.key_id, seg.offset, seg.n_bytes, self._starts[i] + seg.offset))
        return tuple(out)

    def read(self, segments: Sequence[Segment]) -> bytes:
        """The key bytes of ``segments`` (never logged by this module)."""
        parts = []
        for seg in segments:
            data = self._cache.get(seg.key_id)
            if data is None:
                try:
                    data = self.store.get(seg.key_id).to_bytes()
                except KeyStoreError as exc:
                    raise PoolError(str(exc)) from None
                self._cache[seg.key_id] = data
                if len(self._cache) > _CACHE_KEYS:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(seg.key_id)
            parts.append(data[seg.offset : seg.offset + seg.n_bytes])
        return b"".join(parts)

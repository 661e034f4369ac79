"""Cascade, Alice's side: answers parity queries about her key and keeps nothing else.

Block parities of a pass come from the shuffled head only (the last block's parity is
inferred by Bob from the total parity); range parities come from per-pass prefix parity
rows built on a pass's first range query, so a batch of queries is one gather.
"""

from __future__ import annotations

import numpy as np

from labctl.qkd.cascade_kernels import load
from labctl.qkd.cascade_messages import BLOCKS, RANGES, CascadeReply, CascadeRequest
from labctl.qkd.cascade_schedule import CascadeSchedule
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import Bits, SecretBits


def _block_parities(shuffled: Bits, block_size: int, n_blocks: int) -> Bits:
    """Parities of the first n_blocks blocks of an already shuffled key (last may be short)."""
    full = min(n_blocks, shuffled.size // block_size)
    out = np.empty(n_blocks, dtype=np.uint8)
    if full:
        body = shuffled[: full * block_size].reshape(full, block_size)
        out[:full] = np.add.reduce(body, axis=1, dtype=np.uint8) & 1
    if n_blocks > full:
        out[full] = np.add.reduce(shuffled[full * block_size :], dtype=np.uint8) & 1
    return out


_KERNELS = load()
_RANGE_ERRORS = {
    1: "CascadeAlice: query for pass >= {passes}",
    2: "CascadeAlice: range query outside the frame",
}


class CascadeAlice:
    """Alice's side: answers parity queries about her key, keeps nothing else."""

    def __init__(
        self, key: SecretBits, schedule: CascadeSchedule, *, compiled: bool = True
    ) -> None:
        if len(key) != schedule.n_bits:
            raise ReconciliationError(
                f"CascadeAlice: key has {len(key)} bits, schedule expects {schedule.n_bits}"
            )
        self._key = key.bits
        self._schedule = schedule
        # Row j: prefix parities of the key in pass j's shuffled order (n + 1 entries), so
        # a batch of range queries over any passes is one gather.
        self._stride = schedule.n_bits + 1
        self._prefix = np.zeros(schedule.passes * self._stride, dtype=np.uint8)
        self._filled = np.zeros(schedule.passes, dtype=np.bool_)
        self._kernels = _KERNELS if compiled else None

    def __repr__(self) -> str:
        return f"CascadeAlice(n_bits={self._schedule.n_bits}, passes={self._schedule.passes})"

    def _fill(self, pass_index: int) -> Bits:
        row = self._prefix[pass_index * self._stride : (pass_index + 1) * self._stride]
        if not self._filled[pass_index]:
            key = self._key
            shuffled = key if pass_index == 0 else key[self._schedule.shuffle(pass_index)[0]]
            # A uint32 running sum vectorizes far better than a uint8 XOR scan.
            np.bitwise_and(np.cumsum(shuffled, dtype=np.uint32), 1, out=row[1:], casting="unsafe")
            self._filled[pass_index] = True
        return row

    def handle(self, request: CascadeRequest) -> CascadeReply:
        """Answer one request; raises ReconciliationError on an out-of-range query."""
        passes = self._schedule.passes
        n = self._schedule.n_bits
        if request.kind == RANGES and self._kernels is not None:
            return self._handle_ranges_compiled(request)
        if request.pass_index.size and int(request.pass_index.max()) >= passes:
            raise ReconciliationError(f"CascadeAlice: query for pass >= {passes}")
        if request.kind == BLOCKS:
            j = int(request.pass_index[0])
            k = self._schedule.block_sizes[j]
            n_blocks = self._schedule.block_count(j)
            sent = n_blocks if j == 0 else n_blocks - 1
            if self._filled[j]:
                prefix = self._fill(j)
                starts = np.arange(sent, dtype=np.int64) * k
                return CascadeReply(prefix[np.minimum(starts + k, n)] ^ prefix[starts])
            # Only the announced head is shuffled here; the prefix waits for a range query.
            length = min(sent * k, n)
            if j == 0:
                return CascadeReply(_block_parities(self._key[:length], k, sent))
            order = self._schedule.shuffle(j)[0]
            if self._kernels is not None:
                return CascadeReply(self._kernels.head_parities(self._key, order, k, sent))
            return CascadeReply(_block_parities(self._key[order[:length]], k, sent))
        start, end = request.start, request.end
        if start.size and (
            int(start.min()) < 0 or int(end.max()) > n or bool(np.any(end <= start))
        ):
            raise ReconciliationError("CascadeAlice: range query outside the frame")
        p = request.pass_index.astype(np.int64)
        missing = ~self._filled[p]
        if bool(missing.any()):  # Bob normally asks only about passes already announced
            for j in np.unique(p[missing]):
                self._fill(int(j))
        base = p * self._stride
        return CascadeReply(self._prefix[base + end] ^ self._prefix[base + start])

    def _handle_ranges_compiled(self, request: CascadeRequest) -> CascadeReply:
        kernels = self._kernels
        assert kernels is not None
        sched = self._schedule
        while True:
            parities, code = kernels.alice_ranges(
                self._prefix,
                self._stride,
                request.pass_index,
                request.start,
                request.end,
                sched.n_bits,
                sched.passes,
                self._filled,
            )
            if code == 0:
                return CascadeReply(parities)
            if code != 3:
                raise ReconciliationError(_RANGE_ERRORS[int(code)].format(passes=sched.passes))
            # Bob normally asks only about passes already announced; fill the others.
            for j in np.unique(request.pass_index[~self._filled[request.pass_index]]):
                self._fill(int(j))

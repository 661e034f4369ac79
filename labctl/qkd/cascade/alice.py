"""Cascade, Alice's side: answers parity queries about her key and keeps nothing else.

Block parities of a pass come from the shuffled head only (the last block's parity is
inferred by Bob from the total parity); range parities come from per-pass prefix parity
rows built on a pass's first range query, so a batch of queries is one gather. The same
class serves K frames reconciled together (:mod:`labctl.qkd.cascade.layout`): block
parities are then frame-major, and a range query must stay inside one frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labctl.qkd.cascade.layout import FrameLayout
from labctl.qkd.cascade.messages import BLOCKS, RANGES, CascadeReply, CascadeRequest
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import Bits, SecretBits

_RANGE_ERRORS = {
    1: "CascadeAlice: query for pass >= {passes}",
    2: "CascadeAlice: range query outside the frame",
}


class CascadeAlice:
    """Alice's side: answers parity queries about her key, keeps nothing else."""

    def __init__(
        self, key: SecretBits, schedule: CascadeSchedule, *, compiled: bool = True
    ) -> None:
        self._setup((key,), FrameLayout((schedule,), compiled=compiled))

    @classmethod
    def for_frames(cls, keys: Sequence[SecretBits], layout: FrameLayout) -> CascadeAlice:
        """Alice of K frames reconciled in lock-step (see :mod:`labctl.qkd.cascade.batch`)."""
        alice = cls.__new__(cls)
        alice._setup(keys, layout)
        return alice

    def _setup(self, keys: Sequence[SecretBits], layout: FrameLayout) -> None:
        n = layout.n_bits
        if len(keys) != layout.frames or any(len(k) != n for k in keys):
            raise ReconciliationError(
                f"CascadeAlice: keys of {[len(k) for k in keys]} bits, expected "
                f"{layout.frames} frames of {n}"
            )
        self._key = np.concatenate([k.bits for k in keys]) if len(keys) > 1 else keys[0].bits
        self._layout = layout
        # Row j: prefix parities of pass j's row (frames side by side, padding zeros), so
        # a batch of range queries over any passes is one gather.
        self._stride = layout.row_length + 1
        self._prefix = np.zeros(layout.passes * self._stride, dtype=np.uint8)
        self._filled = np.zeros(layout.passes, dtype=np.bool_)
        self._kernels = layout.kernels

    def __repr__(self) -> str:
        layout = self._layout
        frames = "" if layout.frames == 1 else f", frames={layout.frames}"
        return f"CascadeAlice(n_bits={layout.n_bits}, passes={layout.passes}{frames})"

    def _fill(self, pass_index: int) -> Bits:
        layout = self._layout
        base = pass_index * self._stride
        row = self._prefix[base : base + layout.frames * int(layout.frame_stride[pass_index]) + 1]
        if not self._filled[pass_index]:
            if self._kernels is not None:
                self._kernels.fill_prefix(
                    self._prefix, self._stride, pass_index, self._key,
                    layout.typed_shuffles()[0], layout.kernel_layout,
                )  # fmt: skip
            else:
                shuffled = self._key[layout.super_order(pass_index)]
                fs = int(layout.frame_stride[pass_index])
                shuffled.reshape(layout.frames, fs)[:, layout.n_bits :] = 0  # padding
                # A uint32 running sum vectorizes far better than a uint8 XOR scan.
                np.bitwise_and(
                    np.cumsum(shuffled, dtype=np.uint32), 1, out=row[1:], casting="unsafe"
                )
            self._filled[pass_index] = True
        return row

    def _block_parities(self, j: int) -> Bits:
        """Parities of every frame's announced blocks in pass j (all but the last after
        pass 0), frame-major."""
        layout = self._layout
        k, n_blocks = layout.block_sizes[j], int(layout.blocks_per_frame[j])
        sent = n_blocks if j == 0 else n_blocks - 1
        n, fs = layout.n_bits, int(layout.frame_stride[j])
        if self._filled[j]:
            prefix = self._fill(j)
            starts = (np.arange(layout.frames, dtype=np.int64)[:, None] * fs) + (
                np.arange(sent, dtype=np.int64)[None, :] * k
            )
            ends = np.minimum(starts + k, starts - starts % fs + n)
            out: Bits = (prefix[ends] ^ prefix[starts]).reshape(-1)
            return out
        # Only the announced head is shuffled here; the prefix waits for a range query.
        return layout.head_parities(self._key, j, sent)

    def handle(self, request: CascadeRequest) -> CascadeReply:
        """Answer one request; raises ReconciliationError on an out-of-range query."""
        layout = self._layout
        passes = layout.passes
        if request.kind == RANGES and self._kernels is not None:
            return self._handle_ranges_compiled(request)
        if request.pass_index.size and int(request.pass_index.max()) >= passes:
            raise ReconciliationError(f"CascadeAlice: query for pass >= {passes}")
        if request.kind == BLOCKS:
            return CascadeReply(self._block_parities(int(request.pass_index[0])))
        start, end = request.start, request.end
        p = request.pass_index.astype(np.int64)
        fs = layout.frame_stride[p]
        if start.size and (
            int(start.min()) < 0
            or bool(np.any(end <= start))
            or bool(np.any(end > layout.frames * fs))
            or bool(np.any(end - 1 - (start // fs) * fs >= layout.n_bits))
        ):
            raise ReconciliationError("CascadeAlice: range query outside the frame")
        missing = ~self._filled[p]
        if bool(missing.any()):  # Bob normally asks only about passes already announced
            for j in np.unique(p[missing]):
                self._fill(int(j))
        base = p * self._stride
        return CascadeReply(self._prefix[base + end] ^ self._prefix[base + start])

    def _handle_ranges_compiled(self, request: CascadeRequest) -> CascadeReply:
        kernels = self._kernels
        assert kernels is not None
        layout = self._layout
        while True:
            parities, code = kernels.alice_ranges(
                self._prefix,
                self._stride,
                request.pass_index,
                request.start,
                request.end,
                layout.kernel_layout,
                layout.passes,
                self._filled,
            )
            if code == 0:
                return CascadeReply(parities)
            if code != 3:
                raise ReconciliationError(_RANGE_ERRORS[int(code)].format(passes=layout.passes))
            # Bob normally asks only about passes already announced; fill the others.
            for j in np.unique(request.pass_index[~self._filled[request.pass_index]]):
                self._fill(int(j))

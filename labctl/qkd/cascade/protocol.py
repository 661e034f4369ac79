"""Cascade error reconciliation between two parties, vectorized with numpy.

Alice holds the reference key and only answers parity queries (:class:`CascadeAlice`);
Bob drives the protocol (:class:`CascadeBob`) as a generator that yields requests and
receives Alice's replies, so the same code runs in one process (:func:`reconcile`) or over
the authenticated TCP channel (:mod:`labctl.qkd.cascade.link`). Disclosed parity bits and
round trips are counted where messages cross.

Per pass (Brassard-Salvail 1993, schedules from Martinez-Mateo et al. 2015, see
:mod:`labctl.qkd.cascade.schedule`): Alice discloses the parities of all blocks of the
shuffled key in one message (after pass 1 the last block's parity is inferred from the
total parity, so it is not sent); all odd blocks are binary-searched in parallel, one
round trip per halving (only the left half's parity is disclosed, the right half's is
inferred), so a pass costs about log2(k) round trips. Each corrected bit toggles the
parity of every known range that holds it in every earlier pass (per-pass index maps,
:mod:`labctl.qkd.cascade.nodes`). Searches do not wait for each other: every round trip
advances all minimal odd ranges (of any pass) by one halving, and bits isolated in that
round are flipped at once, so ranges they make odd are searched from the next round on.
Each search still ends on a real error (it only ever follows an odd range), and the round
trips of a pass are those of its longest chain of cascaded searches rather than a sum
over waves.

Each side's local work per round trip (Bob: descent through known halves, his range
parities, recording, flips and path toggles, minimal odd ranges; Alice: validation and the
prefix gather) runs in numba kernels (:mod:`labctl.qkd.cascade.kernels`): in Python it
dominated the hundreds of sequential rounds (benchmarks/README.md, "qkd cascade").
``compiled=False`` (or numba missing) runs the numpy path, which sends the same queries.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.qkd.cascade.alice import CascadeAlice
from labctl.qkd.cascade.layout import FrameLayout
from labctl.qkd.cascade.messages import (
    RANGES,
    REPLY_HEADER,
    REQ_HEADER,
    CascadeOutcome,
    CascadeReply,
    CascadeRequest,
    CascadeStats,
)
from labctl.qkd.cascade.nodes import NodeStore
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import ReconciliationError
from labctl.qkd.secret import Bits, SecretBits

IndexArray = npt.NDArray[np.int64]

__all__ = [
    "CascadeAlice",
    "CascadeBob",
    "CascadeOutcome",
    "CascadeProtocol",
    "CascadeReply",
    "CascadeRequest",
    "CascadeStats",
    "reconcile",
]


CascadeProtocol = Generator[CascadeRequest, CascadeReply, CascadeOutcome]
_Frontier = tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]
"""Ranges being searched: pass, block, heap id, start, end."""


class CascadeBob:
    """Bob's side: drives the passes, the parallel binary searches and the cascade."""

    def __init__(
        self, key: SecretBits, schedule: CascadeSchedule, *, compiled: bool = True
    ) -> None:
        # compiled=False runs the numpy path (same messages, same disclosed bits).
        self._setup((key,), FrameLayout((schedule,), compiled=compiled))

    @classmethod
    def for_frames(cls, keys: Sequence[SecretBits], layout: FrameLayout) -> CascadeBob:
        """Bob of K frames reconciled in lock-step (see :mod:`labctl.qkd.cascade.batch`)."""
        bob = cls.__new__(cls)
        bob._setup(keys, layout)
        return bob

    def _setup(self, keys: Sequence[SecretBits], layout: FrameLayout) -> None:
        n = layout.n_bits
        if len(keys) != layout.frames or any(len(k) != n for k in keys):
            raise ReconciliationError(
                f"CascadeBob: keys of {[len(k) for k in keys]} bits, expected "
                f"{layout.frames} frames of {n}"
            )
        self._layout = layout
        self._key = np.concatenate([k.bits for k in keys]) if len(keys) > 1 else keys[0].bits.copy()
        self._nodes = NodeStore(
            n, layout.block_sizes, frames=layout.frames, compiled=layout.kernels is not None
        )
        # Row j: Bob's key in pass j's shuffled order (padding zeros between frames) plus
        # one zero bit, so the parity of disjoint ranges of any passes is one reduceat.
        self._stride = layout.row_length + 1
        # Rows are built on the first range query of a pass (most passes of the optimized
        # schedule never get one) and kept up to date from then on.
        self._shuffled = np.zeros(layout.passes * self._stride, dtype=np.uint8)
        self._row_ready = np.zeros(layout.passes, dtype=np.bool_)
        self._passes_started = 0
        # Every pass's per-frame shuffles and inverses, as typed lists the kernels index.
        shuffles = layout.typed_shuffles() if layout.kernels is not None else (None, None)
        self._orders: Any = shuffles[0]
        self._positions: Any = shuffles[1]
        self.stats = CascadeStats(layout.total_bits)
        self.disclosed_per_frame: IndexArray = np.zeros(layout.frames, dtype=np.int64)
        """Disclosed parity bits charged to each frame (each query concerns one frame)."""

    def __repr__(self) -> str:
        return f"CascadeBob(layout={self._layout!r}, stats={self.stats!r})"

    def _exchange(self, request: CascadeRequest) -> Generator[CascadeRequest, CascadeReply, Bits]:
        reply = yield request
        expected = request.start.size if request.kind == RANGES else None
        if expected is not None and reply.parities.size != expected:
            raise ReconciliationError(
                f"CascadeBob: {reply.parities.size} parities for {expected} queries"
            )
        self.stats.round_trips += 1
        self.stats.messages += 2
        self.stats.bytes_sent += (
            REQ_HEADER.size
            + request.pass_index.size
            + 16 * request.start.size
            + REPLY_HEADER.size
            + (reply.parities.size + 7) // 8
        )
        self.stats.disclosed_bits += int(reply.parities.size)
        frames = self._layout.frames
        if frames == 1:
            self.disclosed_per_frame[0] += reply.parities.size
        elif request.kind == RANGES:
            owner = self._layout.frame_of(request.pass_index.astype(np.int64), request.start)
            self.disclosed_per_frame += np.bincount(owner, minlength=frames)
        else:  # block parities: the same count of every frame, frame-major
            self.disclosed_per_frame += reply.parities.size // frames
        return reply.parities

    def _range_parity(self, passes: IndexArray, start: IndexArray, end: IndexArray) -> Bits:
        """Bob's parities of shuffled ranges [start, end) of the given passes."""
        missing = ~self._row_ready[passes]
        if bool(missing.any()):
            for j in np.unique(passes[missing]):
                self._build_row(int(j))
        lens = end - start
        offsets = np.cumsum(lens) - lens
        first = passes * self._stride + start
        idx = np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(first - offsets, lens)
        sums: Bits = np.add.reduceat(self._shuffled[idx], offsets, dtype=np.uint8)
        return sums & np.uint8(1)

    def _build_row(self, j: int) -> None:
        layout = self._layout
        if layout.kernels is not None:
            layout.kernels.build_row(
                self._shuffled, self._stride, j, self._key, self._orders, layout.kernel_layout
            )
        else:
            fs = int(layout.frame_stride[j])
            row = self._shuffled[j * self._stride : j * self._stride + layout.frames * fs]
            row[:] = self._key[layout.super_order(j)]
            row.reshape(layout.frames, fs)[:, layout.n_bits :] = 0  # padding: public zeros
        self._row_ready[j] = True

    def _search_round(
        self,
        passes: IndexArray,
        block: IndexArray,
        heap: IndexArray,
        start: IndexArray,
        end: IndexArray,
    ) -> Generator[CascadeRequest, CascadeReply, tuple[IndexArray, _Frontier]]:
        """Advance every minimal odd range by one halving (one round trip); returns the
        error bits (unshuffled positions) that this round isolated and the odd halves
        still to search (the minimal odd ranges, as long as no bit is flipped)."""
        if self._nodes.kernels is not None:
            return (yield from self._search_round_compiled(passes, block, heap, start, end))
        nodes = self._nodes
        p, b, h, s, e = passes, block, heap.copy(), start.copy(), end.copy()
        found_p: list[IndexArray] = []
        found_pos: list[IndexArray] = []
        while True:
            # Locally descend through known (hence even) left halves: the right half is odd.
            single = e - s == 1
            if bool(single.any()):
                found_p.append(p[single])
                found_pos.append(s[single])
                go = ~single
                p, b, h, s, e = p[go], b[go], h[go], s[go], e[go]
            mid = nodes.node_range(p, b, 2 * h)[1]
            big = np.flatnonzero(mid - s >= 2)  # one-bit halves have no tree slot
            known = np.zeros(p.size, dtype=np.bool_)
            known[big] = nodes.known_odd(nodes.node_id(p[big], b[big], 2 * h[big]))[0]
            if not bool(known.any()):
                break
            s = np.where(known, mid, s)
            h = 2 * h + known
        if p.size:
            q = CascadeRequest(RANGES, p.astype(np.uint8), s, mid)
            alice = yield from self._exchange(q)
            left_odd = alice != self._range_parity(p, s, mid)
            self.stats.search_rounds_per_pass[-1] += 1
            # Record both halves: the parent is odd, so the right's parity is the
            # complement of the left's. The odd half is the next round's minimal odd range.
            left = np.flatnonzero(mid - s >= 2)
            nodes.record(nodes.node_id(p[left], b[left], 2 * h[left]), left_odd[left])
            right = np.flatnonzero(e - mid >= 2)
            nodes.record(nodes.node_id(p[right], b[right], 2 * h[right] + 1), ~left_odd[right])
            s = np.where(left_odd, s, mid)
            e = np.where(left_odd, mid, e)
            h = 2 * h + ~left_odd
            single = e - s == 1
            found_p.append(p[single])
            found_pos.append(s[single])
            go = ~single
            p, b, h, s, e = p[go], b[go], h[go], s[go], e[go]
        frontier = (p, b, h, s, e)
        if not found_p:
            return np.zeros(0, dtype=np.int64), frontier
        return self._unshuffle(np.concatenate(found_p), np.concatenate(found_pos)), frontier

    def _search_round_compiled(
        self,
        passes: IndexArray,
        block: IndexArray,
        heap: IndexArray,
        start: IndexArray,
        end: IndexArray,
    ) -> Generator[CascadeRequest, CascadeReply, tuple[IndexArray, _Frontier]]:
        """:meth:`_search_round` with the local work in compiled kernels (same queries)."""
        nodes = self._nodes
        kernels = nodes.kernels
        assert kernels is not None
        offset, slots = nodes.offset, nodes.slots
        state = nodes.state
        qp, qb, qh, qs, qm, qe, fp, fpos = kernels.descend(
            passes, block, heap, start, end, state, *nodes.geometry()
        )
        frontier: _Frontier = (qp, qb, qh, qs, qe)
        if not qp.size:
            return (self._unshuffle(fp, fpos) if fp.size else fp), frontier
        alice = yield from self._exchange(CascadeRequest(RANGES, qp.astype(np.uint8), qs, qm))
        self.stats.search_rounds_per_pass[-1] += 1
        query = (qp, qb, qh, qs, qm, qe)
        while True:
            ok, frontier, found, fresh, new_known = kernels.answer(
                query, alice, self._shuffled, self._stride, self._row_ready, state, offset,
                slots, self._orders, fp, fpos, self._layout.kernel_layout,
            )  # fmt: skip
            if ok:
                break
            for j in np.unique(qp[~self._row_ready[qp]]):  # first range query of a pass
                self._build_row(int(j))
        nodes.add_odd(fresh, int(new_known))
        return found, frontier

    def _unshuffle(self, fp: IndexArray, fpos: IndexArray) -> IndexArray:
        """Key positions of bits given as (pass, shuffled position)."""
        layout = self._layout
        if layout.kernels is not None:
            found: IndexArray = layout.kernels.unshuffle(
                fp, fpos, self._orders, layout.kernel_layout
            )
            return found
        bits = fpos.copy()
        for j in np.unique(fp):
            sel = fp == j
            bits[sel] = layout.super_order(int(j))[fpos[sel]]
        return bits

    def _apply_flips(self, bits: IndexArray) -> _Frontier:
        """Correct the error bits everywhere; returns the new minimal odd ranges."""
        started = self._passes_started
        if self._nodes.kernels is not None:
            # Locating the bits needs the inverse shuffles of their frames.
            layout = self._layout
            frames = None if layout.frames == 1 else np.unique(bits // layout.n_bits)
            layout.ensure_positions(started, frames)
            count, frontier = self._nodes.correct(
                self._key, bits, self._positions, started, self._shuffled, self._stride,
                self._row_ready, self._layout.kernel_layout,
            )  # fmt: skip
            self.stats.corrected_bits += count
            return frontier
        flips = np.unique(bits)
        self.stats.corrected_bits += int(flips.size)
        self._key[flips] ^= 1
        pos = [self._layout.super_position(j)[flips] for j in range(started)]
        positions: IndexArray = np.concatenate(pos).astype(np.int64, copy=False)
        passes = np.repeat(np.arange(started, dtype=np.int64), flips.size)
        ready = self._row_ready[passes]
        self._shuffled[(passes * self._stride + positions)[ready]] ^= 1
        self._nodes.toggle_paths(passes, positions)
        return self._nodes.minimal_odd()

    def _start_pass(
        self, j: int, alice_total: Bits
    ) -> Generator[CascadeRequest, CascadeReply, Bits]:
        """Exchange block parities of pass j, store the blocks; returns Alice's total parity
        of every frame."""
        layout = self._layout
        frames, n_blocks = layout.frames, int(layout.blocks_per_frame[j])
        self._passes_started = j + 1
        alice = yield from self._exchange(CascadeRequest.blocks(j))
        sent = n_blocks if j == 0 else n_blocks - 1
        if alice.size != frames * sent:
            raise ReconciliationError(
                f"CascadeBob: {alice.size} block parities for pass {j}, expected {frames} x {sent}"
            )
        alice = alice.reshape(frames, sent)
        if j == 0:
            alice_total = np.bitwise_xor.reduce(alice, axis=1)
            bob = self._layout.head_parities(self._key, j, sent).reshape(frames, sent)
        else:
            # Parity inference: the last block's parity follows from the frame's total
            # parity, so neither side needs the shuffled tail (half the key when k = n / 2).
            alice_last = alice_total ^ np.bitwise_xor.reduce(alice, axis=1)
            alice = np.concatenate((alice, alice_last[:, None]), axis=1)
            bob_head = self._layout.head_parities(self._key, j, sent).reshape(frames, sent)
            by_frame = self._key.reshape(frames, layout.n_bits)
            bob_total = (np.add.reduce(by_frame, axis=1, dtype=np.uint64) & 1).astype(np.uint8)
            bob_last = bob_total ^ np.bitwise_xor.reduce(bob_head, axis=1)
            bob = np.concatenate((bob_head, bob_last[:, None]), axis=1)
        block = np.arange(frames * n_blocks, dtype=np.int64)
        passes = np.full(block.size, j, dtype=np.int64)
        starts, ends = self._nodes.block_range(passes, block)
        multi = ends - starts >= 2
        odd = (alice ^ bob).reshape(-1).astype(np.bool_)
        roots = self._nodes.node_id(passes, block, np.ones(block.size, dtype=np.int64))
        self._nodes.record(roots[multi], odd[multi])
        single = np.flatnonzero(~multi & odd)
        if single.size:  # a one-bit block with odd parity is itself the error
            self._apply_flips(self._unshuffle(passes[single], starts[single]))
        return alice_total

    def _drive(self) -> Generator[CascadeRequest, CascadeReply, None]:
        """All passes: yields requests, receives replies; the key is corrected in place."""
        alice_total = np.zeros(self._layout.frames, dtype=np.uint8)
        for j in range(self._layout.passes):
            self.stats.search_rounds_per_pass.append(0)
            alice_total = yield from self._start_pass(j, alice_total)
            frontier = self._nodes.minimal_odd()
            while frontier[0].size:
                bits, advanced = yield from self._search_round(*frontier)
                if bits.size:
                    frontier = self._apply_flips(bits)
                else:  # nothing flipped: the odd halves are exactly the minimal odd ranges
                    frontier = advanced
            self.stats.passes_run += 1

    def corrected_keys(self) -> tuple[SecretBits, ...]:
        """Bob's key of every frame (after :meth:`run` or a batch run has finished)."""
        n = self._layout.n_bits
        key = self._key
        return tuple(SecretBits.adopt(key[f * n : (f + 1) * n]) for f in range(self._layout.frames))

    def run(self) -> CascadeProtocol:
        """The protocol as a generator: yields requests, receives replies, returns the outcome."""
        yield from self._drive()
        return CascadeOutcome(SecretBits.adopt(self._key), self.stats)


def reconcile(
    alice_key: SecretBits,
    bob_key: SecretBits,
    schedule: CascadeSchedule,
    *,
    compiled: bool = True,
) -> CascadeOutcome:
    """Run Cascade in one process: Bob's corrected key and what crossed the channel (both
    sides share the public shuffles, as two nodes deriving them from the seed would)."""
    layout = FrameLayout((schedule,), compiled=compiled)
    alice = CascadeAlice.for_frames((alice_key,), layout)
    protocol = CascadeBob.for_frames((bob_key,), layout).run()
    try:
        request = next(protocol)
        while True:
            request = protocol.send(alice.handle(request))
    except StopIteration as done:
        outcome: CascadeOutcome = done.value
        return outcome

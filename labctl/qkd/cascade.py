"""Cascade error reconciliation between two parties, vectorized with numpy.

Alice holds the reference key and only answers parity queries (:class:`CascadeAlice`);
Bob drives the protocol (:class:`CascadeBob`) as a generator that yields requests and
receives Alice's replies, so the same code runs in one process (:func:`reconcile`) or over
the authenticated TCP channel (:mod:`labctl.qkd.cascade_link`). Disclosed parity bits and
round trips are counted where messages cross.

Per pass (Brassard-Salvail 1993, schedules from Martinez-Mateo et al. 2015, see
:mod:`labctl.qkd.cascade_schedule`): Alice discloses the parities of all blocks of the
shuffled key in one message (after pass 1 the last block's parity is inferred from the
total parity, so it is not sent); all odd blocks are binary-searched in parallel, one
round trip per halving (only the left half's parity is disclosed, the right half's is
inferred), so a pass costs about log2(k) round trips. Each corrected bit toggles the
parity of every known range that holds it in every earlier pass (per-pass index maps,
:mod:`labctl.qkd.cascade_nodes`). Searches do not wait for each other: every round trip
advances all minimal odd ranges (of any pass) by one halving, and bits isolated in that
round are flipped at once, so ranges they make odd are searched from the next round on.
Each search still ends on a real error (it only ever follows an odd range), and the round
trips of a pass are those of its longest chain of cascaded searches rather than a sum
over waves.

Each side's local work per round trip (Bob: descent through known halves, his range
parities, recording, flips and path toggles, minimal odd ranges; Alice: validation and the
prefix gather) runs in numba kernels (:mod:`labctl.qkd.cascade_kernels`): Python per round
trip was ~0.3 ms over 360-560 sequential rounds. ``compiled=False`` (or numba missing, or
``LABCTL_QKD_KERNELS=numpy``) runs the numpy path, which sends the same queries.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.qkd.cascade_alice import CascadeAlice, _block_parities
from labctl.qkd.cascade_messages import (
    RANGES,
    REPLY_HEADER,
    REQ_HEADER,
    CascadeReply,
    CascadeRequest,
)
from labctl.qkd.cascade_nodes import NodeStore
from labctl.qkd.cascade_schedule import CascadeSchedule
from labctl.qkd.entropy import binary_entropy
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


@dataclass
class CascadeStats:
    """What crossed the channel: disclosed parity bits, round trips, messages, bytes."""

    n_bits: int
    disclosed_bits: int = 0
    round_trips: int = 0
    messages: int = 0
    bytes_sent: int = 0
    corrected_bits: int = 0
    passes_run: int = 0
    search_rounds_per_pass: list[int] = field(default_factory=list)

    def efficiency(self, qber: float) -> float:
        """f = disclosed / (n h(Q)): 1 is the Shannon limit."""
        limit = self.n_bits * binary_entropy(qber)
        return float("inf") if limit == 0 else self.disclosed_bits / limit


@dataclass(frozen=True, repr=False)
class CascadeOutcome:
    """Bob's corrected key and the channel statistics."""

    key: SecretBits
    stats: CascadeStats

    def __repr__(self) -> str:
        return f"CascadeOutcome(key={self.key!r}, stats={self.stats!r})"


CascadeProtocol = Generator[CascadeRequest, CascadeReply, CascadeOutcome]
_Frontier = tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]
"""Ranges being searched: pass, block, heap id, start, end."""


class CascadeBob:
    """Bob's side: drives the passes, the parallel binary searches and the cascade."""

    def __init__(
        self, key: SecretBits, schedule: CascadeSchedule, *, compiled: bool = True
    ) -> None:
        if len(key) != schedule.n_bits:
            raise ReconciliationError(
                f"CascadeBob: key has {len(key)} bits, schedule expects {schedule.n_bits}"
            )
        self._key = key.bits.copy()
        self._schedule = schedule
        # compiled=False runs the numpy path (same messages, same disclosed bits).
        self._nodes = NodeStore(schedule.n_bits, schedule.block_sizes, compiled=compiled)
        # Row j: Bob's key in pass j's shuffled order plus one zero bit, so that the parity
        # of disjoint ranges of every pass is one np.add.reduceat over the flat array.
        self._stride = schedule.n_bits + 1
        # Rows are built on the first range query of a pass (most passes of the optimized
        # schedule never get one) and kept up to date from then on.
        self._shuffled = np.zeros(schedule.passes * self._stride, dtype=np.uint8)
        self._row_ready = np.zeros(schedule.passes, dtype=np.bool_)
        self._passes_started = 0
        kernels = self._nodes.kernels
        # Started passes' shuffles and inverses, as typed lists the kernels can index.
        self._positions: Any = None if kernels is None else kernels.new_array_list()
        self._orders: Any = None if kernels is None else kernels.new_array_list()
        self.stats = CascadeStats(schedule.n_bits)

    def __repr__(self) -> str:
        return f"CascadeBob(n_bits={self._schedule.n_bits}, stats={self.stats!r})"

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
        row = self._shuffled[j * self._stride : j * self._stride + self._schedule.n_bits]
        row[:] = self._key if j == 0 else self._key[self._schedule.shuffle(j)[0]]
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
        offset, slots, block_size, n = nodes.geometry()
        state = nodes.state
        qp, qb, qh, qs, qm, qe, fp, fpos = kernels.descend(
            passes, block, heap, start, end, state, offset, slots, block_size, n
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
                slots, self._orders, fp, fpos,
            )  # fmt: skip
            if ok:
                break
            for j in np.unique(qp[~self._row_ready[qp]]):  # first range query of a pass
                self._build_row(int(j))
        nodes.add_odd(fresh, int(new_known))
        return found, frontier

    def _unshuffle(self, fp: IndexArray, fpos: IndexArray) -> IndexArray:
        """Key positions of bits given as (pass, shuffled position)."""
        if self._orders is not None:
            assert self._nodes.kernels is not None
            found: IndexArray = self._nodes.kernels.unshuffle(fp, fpos, self._orders)
            return found
        bits = fpos.copy()
        for j in np.unique(fp):
            if j != 0:
                sel = fp == j
                bits[sel] = self._schedule.shuffle(int(j))[0][fpos[sel]]
        return bits

    def _apply_flips(self, bits: IndexArray) -> _Frontier:
        """Correct the error bits everywhere; returns the new minimal odd ranges."""
        started = self._passes_started
        if self._nodes.kernels is not None:
            count, frontier = self._nodes.correct(
                self._key, bits, self._positions, started, self._shuffled, self._stride,
                self._row_ready,
            )  # fmt: skip
            self.stats.corrected_bits += count
            return frontier
        flips = np.unique(bits)
        self.stats.corrected_bits += int(flips.size)
        self._key[flips] ^= 1
        pos = [flips if j == 0 else self._schedule.shuffle(j)[1][flips] for j in range(started)]
        positions: IndexArray = np.concatenate(pos).astype(np.int64, copy=False)
        passes = np.repeat(np.arange(started, dtype=np.int64), flips.size)
        ready = self._row_ready[passes]
        self._shuffled[(passes * self._stride + positions)[ready]] ^= 1
        self._nodes.toggle_paths(passes, positions)
        return self._nodes.minimal_odd()

    def _start_pass(self, j: int, alice_total: int) -> Generator[CascadeRequest, CascadeReply, int]:
        """Exchange block parities of pass j, store the blocks; returns Alice's total parity."""
        sched = self._schedule
        n, k, n_blocks = sched.n_bits, sched.block_sizes[j], sched.block_count(j)
        self._passes_started = j + 1
        if self._positions is not None:
            self._orders.append(sched.shuffle(j)[0])
            self._positions.append(sched.shuffle(j)[1])
        alice = yield from self._exchange(CascadeRequest.blocks(j))
        sent = n_blocks if j == 0 else n_blocks - 1
        if alice.size != sent:
            raise ReconciliationError(
                f"CascadeBob: {alice.size} block parities for pass {j}, expected {sent}"
            )
        if j == 0:
            alice_total = int(np.bitwise_xor.reduce(alice)) if alice.size else 0
            bob = _block_parities(self._key, k, n_blocks)
        else:
            # Parity inference: the last block's parity follows from the total parity, so
            # neither side needs the shuffled tail (half the key when k = n / 2).
            alice_rest = int(np.bitwise_xor.reduce(alice)) if alice.size else 0
            alice = np.append(alice, np.uint8(alice_total ^ alice_rest))
            order = sched.shuffle(j)[0]
            kernels = self._nodes.kernels
            if kernels is not None:
                bob_head = kernels.head_parities(self._key, order, k, sent)
            else:
                bob_head = _block_parities(self._key[order[: min(sent * k, n)]], k, sent)
            bob_total = int(np.add.reduce(self._key, dtype=np.uint64) & 1)
            bob_rest = int(np.bitwise_xor.reduce(bob_head)) if bob_head.size else 0
            bob = np.append(bob_head, np.uint8(bob_total ^ bob_rest))
        block = np.arange(n_blocks, dtype=np.int64)
        passes = np.full(n_blocks, j, dtype=np.int64)
        starts, ends = self._nodes.block_range(passes, block)
        multi = ends - starts >= 2
        odd = (alice ^ bob).astype(np.bool_)
        roots = self._nodes.node_id(passes, block, np.ones(n_blocks, dtype=np.int64))
        self._nodes.record(roots[multi], odd[multi])
        single = np.flatnonzero(~multi & odd)
        if single.size:  # a one-bit block with odd parity is itself the error
            self._apply_flips(np.asarray(sched.shuffle(j)[0][starts[single]]))
        return alice_total

    def run(self) -> CascadeProtocol:
        """The protocol as a generator: yields requests, receives replies, returns the outcome."""
        alice_total = 0
        for j in range(self._schedule.passes):
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
        return CascadeOutcome(SecretBits.adopt(self._key), self.stats)


def reconcile(
    alice_key: SecretBits,
    bob_key: SecretBits,
    schedule: CascadeSchedule,
    *,
    compiled: bool = True,
) -> CascadeOutcome:
    """Run Cascade in one process: Bob's corrected key and what crossed the channel."""
    alice = CascadeAlice(alice_key, schedule, compiled=compiled)
    protocol = CascadeBob(bob_key, schedule, compiled=compiled).run()
    try:
        request = next(protocol)
        while True:
            request = protocol.send(alice.handle(request))
    except StopIteration as done:
        outcome: CascadeOutcome = done.value
        return outcome

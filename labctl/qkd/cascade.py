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
parity of the block that holds it in every earlier pass (per-pass index maps); the newly
odd blocks are searched in the next wave, until no odd block is left.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from labctl.qkd.cascade_nodes import NodeStore
from labctl.qkd.cascade_schedule import CascadeSchedule
from labctl.qkd.entropy import binary_entropy
from labctl.qkd.errors import MessageFormatError, ReconciliationError
from labctl.qkd.secret import Bits, SecretBits

IndexArray = npt.NDArray[np.int64]

_BLOCKS = 0
_RANGES = 1
_REQ_HEADER = struct.Struct("<2sBQ")
_REPLY_HEADER = struct.Struct("<2sQ")


@dataclass(frozen=True)
class CascadeRequest:
    """Bob -> Alice: block parities of one pass, or parities of shuffled ranges [start, end)."""

    kind: int
    pass_index: npt.NDArray[np.uint8]
    start: IndexArray
    end: IndexArray

    @classmethod
    def blocks(cls, pass_index: int) -> CascadeRequest:
        """Ask for the block parities of a pass."""
        empty = np.zeros(0, dtype=np.int64)
        return cls(_BLOCKS, np.array([pass_index], dtype=np.uint8), empty, empty)

    def to_bytes(self) -> bytes:
        """Serialise: header, pass indices, int64 starts and ends."""
        n = int(self.pass_index.size)
        return b"".join(
            (
                _REQ_HEADER.pack(b"CQ", self.kind, n),
                self.pass_index.tobytes(),
                self.start.astype("<i8", copy=False).tobytes(),
                self.end.astype("<i8", copy=False).tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CascadeRequest:
        """Parse :meth:`to_bytes`; raises MessageFormatError when malformed."""
        if len(data) < _REQ_HEADER.size:
            raise MessageFormatError("CascadeRequest: shorter than its header")
        magic, kind, n = _REQ_HEADER.unpack_from(data)
        if magic != b"CQ" or kind not in (_BLOCKS, _RANGES):
            raise MessageFormatError(f"CascadeRequest: bad magic/kind {magic!r}/{kind}")
        ranges = n if kind == _RANGES else 0
        if len(data) != _REQ_HEADER.size + n + 16 * ranges:
            raise MessageFormatError(f"CascadeRequest: {len(data)} bytes do not hold {n} queries")
        off = _REQ_HEADER.size
        passes = np.frombuffer(data, dtype=np.uint8, count=n, offset=off).copy()
        start = np.frombuffer(data, dtype="<i8", count=ranges, offset=off + n).astype(np.int64)
        end = np.frombuffer(data, dtype="<i8", count=ranges, offset=off + n + 8 * ranges)
        return cls(kind, passes, start, end.astype(np.int64))


@dataclass(frozen=True)
class CascadeReply:
    """Alice -> Bob: one parity bit per query (or per disclosed block)."""

    parities: npt.NDArray[np.uint8]

    def to_bytes(self) -> bytes:
        """Serialise: header and bit-packed parities."""
        n = int(self.parities.size)
        return _REPLY_HEADER.pack(b"CR", n) + np.packbits(self.parities).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CascadeReply:
        """Parse :meth:`to_bytes`; raises MessageFormatError when malformed."""
        if len(data) < _REPLY_HEADER.size:
            raise MessageFormatError("CascadeReply: shorter than its header")
        magic, n = _REPLY_HEADER.unpack_from(data)
        if magic != b"CR" or len(data) != _REPLY_HEADER.size + (n + 7) // 8:
            raise MessageFormatError(f"CascadeReply: malformed ({len(data)} bytes, n={n})")
        packed = np.frombuffer(data, dtype=np.uint8, offset=_REPLY_HEADER.size)
        return cls(np.unpackbits(packed, count=n))


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


def _prefix_parity(shuffled: Bits) -> Bits:
    """P[i] = parity of shuffled[:i] (length n + 1)."""
    prefix = np.zeros(shuffled.size + 1, dtype=np.uint8)
    np.bitwise_xor.accumulate(shuffled, out=prefix[1:])
    return prefix


def _shuffled_head(key: Bits, schedule: CascadeSchedule, pass_index: int, length: int) -> Bits:
    if pass_index == 0:
        return key[:length]
    order = schedule.shuffle(pass_index)[0]
    return key[order[:length]]


class CascadeAlice:
    """Alice's side: answers parity queries about her key, keeps nothing else."""

    def __init__(self, key: SecretBits, schedule: CascadeSchedule) -> None:
        if len(key) != schedule.n_bits:
            raise ReconciliationError(
                f"CascadeAlice: key has {len(key)} bits, schedule expects {schedule.n_bits}"
            )
        self._key = key.bits
        self._schedule = schedule
        self._prefix: dict[int, Bits] = {}

    def __repr__(self) -> str:
        return f"CascadeAlice(n_bits={self._schedule.n_bits}, passes={self._schedule.passes})"

    def _prefix_for(self, pass_index: int) -> Bits:
        prefix = self._prefix.get(pass_index)
        if prefix is None:
            n = self._schedule.n_bits
            prefix = _prefix_parity(_shuffled_head(self._key, self._schedule, pass_index, n))
            self._prefix[pass_index] = prefix
        return prefix

    def handle(self, request: CascadeRequest) -> CascadeReply:
        """Answer one request; raises ReconciliationError on an out-of-range query."""
        passes = self._schedule.passes
        if request.pass_index.size and int(request.pass_index.max()) >= passes:
            raise ReconciliationError(f"CascadeAlice: query for pass >= {passes}")
        if request.kind == _BLOCKS:
            j = int(request.pass_index[0])
            k = self._schedule.block_sizes[j]
            n_blocks = self._schedule.block_count(j)
            sent = n_blocks if j == 0 else n_blocks - 1
            length = min(sent * k, self._schedule.n_bits)
            head = _shuffled_head(self._key, self._schedule, j, length)
            return CascadeReply(_block_parities(head, k, sent))
        start, end = request.start, request.end
        if start.size and (
            int(start.min()) < 0
            or int(end.max()) > self._schedule.n_bits
            or bool(np.any(end <= start))
        ):
            raise ReconciliationError("CascadeAlice: range query outside the frame")
        out = np.empty(start.size, dtype=np.uint8)
        for j in np.unique(request.pass_index):
            sel = request.pass_index == j
            prefix = self._prefix_for(int(j))
            out[sel] = prefix[end[sel]] ^ prefix[start[sel]]
        return CascadeReply(out)


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


class CascadeBob:
    """Bob's side: drives the passes, the parallel binary searches and the cascade."""

    def __init__(self, key: SecretBits, schedule: CascadeSchedule) -> None:
        if len(key) != schedule.n_bits:
            raise ReconciliationError(
                f"CascadeBob: key has {len(key)} bits, schedule expects {schedule.n_bits}"
            )
        self._key = key.bits.copy()
        self._schedule = schedule
        self._nodes = NodeStore(schedule.n_bits)
        self.stats = CascadeStats(schedule.n_bits)

    def __repr__(self) -> str:
        return f"CascadeBob(n_bits={self._schedule.n_bits}, stats={self.stats!r})"

    def _exchange(self, request: CascadeRequest) -> Generator[CascadeRequest, CascadeReply, Bits]:
        reply = yield request
        expected = request.start.size if request.kind == _RANGES else None
        if expected is not None and reply.parities.size != expected:
            raise ReconciliationError(
                f"CascadeBob: {reply.parities.size} parities for {expected} queries"
            )
        self.stats.round_trips += 1
        self.stats.messages += 2
        self.stats.bytes_sent += (
            _REQ_HEADER.size
            + request.pass_index.size
            + 16 * request.start.size
            + _REPLY_HEADER.size
            + (reply.parities.size + 7) // 8
        )
        self.stats.disclosed_bits += int(reply.parities.size)
        return reply.parities

    def _range_parity(
        self, passes: npt.NDArray[np.uint8], start: IndexArray, end: IndexArray
    ) -> Bits:
        out = np.empty(start.size, dtype=np.uint8)
        for j in np.unique(passes):
            sel = passes == j
            s, e = start[sel], end[sel]
            lens = e - s
            offsets = np.cumsum(lens) - lens
            idx = np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(s - offsets, lens)
            if j != 0:
                idx = self._schedule.shuffle(int(j))[0][idx]
            sums = np.add.reduceat(self._key[idx], offsets, dtype=np.uint8)
            out[sel] = sums & 1
        return out

    def _binary_search(
        self, passes: npt.NDArray[np.uint8], start: IndexArray, end: IndexArray
    ) -> Generator[CascadeRequest, CascadeReply, IndexArray]:
        """Search odd ranges in parallel, reusing known sub-ranges; one error bit per range."""
        start, end = start.copy(), end.copy()
        nodes = self._nodes
        new_keys: list[IndexArray] = []
        new_odd: list[Bits] = []
        rounds = 0
        while True:
            active = np.flatnonzero(end - start > 1)
            if active.size == 0:
                break
            p, s, e = passes[active], start[active], end[active]
            mid = s + (e - s) // 2
            left_keys = nodes.encode(p, s, mid)
            known, left_odd = nodes.odd_flags(left_keys)
            ask = np.flatnonzero(~known)
            if ask.size:
                q = CascadeRequest(_RANGES, p[ask], s[ask], mid[ask])
                alice = yield from self._exchange(q)
                left_odd[ask] = alice != self._range_parity(q.pass_index, q.start, q.end)
                rounds += 1
            # Record what is now known: the asked left halves and every right half
            # (parent odd, so right parity = 1 - left parity); single bits are useless.
            right_keys = nodes.encode(p, mid, e)
            left_new = ask[(mid[ask] - s[ask]) >= 2]
            right_new = np.flatnonzero((e - mid) >= 2)
            new_keys += [left_keys[left_new], right_keys[right_new]]
            new_odd += [
                left_odd[left_new].astype(np.uint8),
                (~left_odd[right_new]).astype(np.uint8),
            ]
            end[active] = np.where(left_odd, mid, e)
            start[active] = np.where(left_odd, s, mid)
        self.stats.search_rounds_per_pass[-1] += rounds
        if new_keys:
            nodes.insert(np.concatenate(new_keys), np.concatenate(new_odd))
        bits = start.copy()
        for j in np.unique(passes):
            if j != 0:
                sel = passes == j
                bits[sel] = self._schedule.shuffle(int(j))[0][start[sel]]
        return bits

    def _apply_flips(self, bits: IndexArray, upto: int) -> None:
        flips = np.unique(bits)
        self._key[flips] ^= 1
        self.stats.corrected_bits += int(flips.size)
        for j in range(upto + 1):
            pos = flips if j == 0 else self._schedule.shuffle(j)[1][flips]
            self._nodes.toggle_paths(j, pos, self._schedule.block_sizes[j])

    def _start_pass(self, j: int, alice_total: int) -> Generator[CascadeRequest, CascadeReply, int]:
        """Exchange block parities of pass j, store the blocks; returns Alice's total parity."""
        sched = self._schedule
        n, k, n_blocks = sched.n_bits, sched.block_sizes[j], sched.block_count(j)
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
            # Parity inference: the last block's parity follows from the total parity.
            alice_rest = int(np.bitwise_xor.reduce(alice)) if alice.size else 0
            alice = np.append(alice, np.uint8(alice_total ^ alice_rest))
            head = _shuffled_head(self._key, sched, j, min((n_blocks - 1) * k, n))
            bob_head = _block_parities(head, k, n_blocks - 1)
            bob_total = int(np.add.reduce(self._key, dtype=np.uint64) & 1)
            bob_rest = int(np.bitwise_xor.reduce(bob_head)) if bob_head.size else 0
            bob = np.append(bob_head, np.uint8(bob_total ^ bob_rest))
        starts = np.arange(n_blocks, dtype=np.int64) * k
        ends = np.minimum(starts + k, n)
        multi = ends - starts >= 2
        odd = alice ^ bob
        keys = self._nodes.encode(np.full(n_blocks, j, dtype=np.uint8), starts, ends)
        self._nodes.insert(keys[multi], odd[multi])
        single = np.flatnonzero(~multi & (odd == 1))
        if single.size:  # a one-bit block with odd parity is itself the error
            self._apply_flips(np.asarray(sched.shuffle(j)[0][starts[single]]), j)
        return alice_total

    def run(self) -> CascadeProtocol:
        """The protocol as a generator: yields requests, receives replies, returns the outcome."""
        alice_total = 0
        for j in range(self._schedule.passes):
            self.stats.search_rounds_per_pass.append(0)
            alice_total = yield from self._start_pass(j, alice_total)
            while True:
                passes, starts, ends = self._nodes.minimal_odd()
                if passes.size == 0:
                    break
                bits = yield from self._binary_search(passes, starts, ends)
                self._apply_flips(bits, j)
            self.stats.passes_run += 1
        return CascadeOutcome(SecretBits(self._key), self.stats)


def reconcile(
    alice_key: SecretBits, bob_key: SecretBits, schedule: CascadeSchedule
) -> CascadeOutcome:
    """Run Cascade in one process: Bob's corrected key and what crossed the channel."""
    alice = CascadeAlice(alice_key, schedule)
    protocol = CascadeBob(bob_key, schedule).run()
    try:
        request = next(protocol)
        while True:
            request = protocol.send(alice.handle(request))
    except StopIteration as done:
        outcome: CascadeOutcome = done.value
        return outcome

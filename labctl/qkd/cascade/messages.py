"""Cascade messages: Bob's parity requests and Alice's replies, with their byte format,
and what crossed the channel (:class:`CascadeStats`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from labctl.qkd.errors import MessageFormatError
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.secret import SecretBits

IndexArray = npt.NDArray[np.int64]

BLOCKS = 0
"""Request kind: the block parities of one pass."""
RANGES = 1
"""Request kind: parities of shuffled ranges [start, end) of given passes."""
REQ_HEADER = struct.Struct("<2sBQ")
REPLY_HEADER = struct.Struct("<2sQ")


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
        return cls(BLOCKS, np.array([pass_index], dtype=np.uint8), empty, empty)

    def to_bytes(self) -> bytes:
        """Serialise: header, pass indices, int64 starts and ends."""
        n = int(self.pass_index.size)
        return b"".join(
            (
                REQ_HEADER.pack(b"CQ", self.kind, n),
                self.pass_index.tobytes(),
                self.start.astype("<i8", copy=False).tobytes(),
                self.end.astype("<i8", copy=False).tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CascadeRequest:
        """Parse :meth:`to_bytes`; raises MessageFormatError when malformed."""
        if len(data) < REQ_HEADER.size:
            raise MessageFormatError("CascadeRequest: shorter than its header")
        magic, kind, n = REQ_HEADER.unpack_from(data)
        if magic != b"CQ" or kind not in (BLOCKS, RANGES):
            raise MessageFormatError(f"CascadeRequest: bad magic/kind {magic!r}/{kind}")
        ranges = n if kind == RANGES else 0
        if len(data) != REQ_HEADER.size + n + 16 * ranges:
            raise MessageFormatError(f"CascadeRequest: {len(data)} bytes do not hold {n} queries")
        off = REQ_HEADER.size
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
        return REPLY_HEADER.pack(b"CR", n) + np.packbits(self.parities).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CascadeReply:
        """Parse :meth:`to_bytes`; raises MessageFormatError when malformed."""
        if len(data) < REPLY_HEADER.size:
            raise MessageFormatError("CascadeReply: shorter than its header")
        magic, n = REPLY_HEADER.unpack_from(data)
        if magic != b"CR" or len(data) != REPLY_HEADER.size + (n + 7) // 8:
            raise MessageFormatError(f"CascadeReply: malformed ({len(data)} bytes, n={n})")
        packed = np.frombuffer(data, dtype=np.uint8, offset=REPLY_HEADER.size)
        return cls(np.unpackbits(packed, count=n))


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

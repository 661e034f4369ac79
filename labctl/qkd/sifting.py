"""Basis sifting over the classical channel.

Bob announces the pulse indices of his detections and the basis he measured in (never the
bit); Alice answers, for each announced detection, whether her basis matched and which
intensity class the pulse had (signal or decoy: revealing the class after detection is
what makes the decoy method work, Lo, Ma, Chen 2005). Both sides then keep the matched
bits. Everything is vectorized: one call sifts millions of detections.

Alice's per-pulse values are passed as arrays aligned with the announcement; a twin or
driver that recomputes them from a counter-based RNG does so for ``announcement.pulse_index``.

Speed (tens of millions of detections per second): the announcement carries the first
index and the gaps between consecutive indices in the narrowest of 1, 2 or 4 bytes that
holds the largest gap, or one byte each with the few larger gaps (a dark stretch, a
transmitter's underrun) escaped by a 0 byte and listed after as 8 bytes each, whichever
is smallest (8-byte absolute indices only when a gap does not fit 32 bits and escaping
does not pay), so it is small and validated by one ``min``; the matched positions are
computed once per reply (``np.flatnonzero``) and every per-detection array is gathered
with ``take``, which unlike boolean-mask indexing does not branch per element on a
random mask.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from labctl.qkd.errors import MessageFormatError
from labctl.qkd.secret import SecretBits, as_bits

Int64Array = npt.NDArray[np.int64]
UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

_ANNOUNCE_MAGIC = b"SA2"
_REPLY_MAGIC = b"SR1"
_HEADER = struct.Struct("<3sQ")
_ANNOUNCE_HEADER = struct.Struct("<3sQBq")
"""magic, detections, bytes per gap (1, 2, 4; 8 = absolute int64 indices; 0 = one byte,
escaped), first index."""
_ESCAPED = 0
"""Width code of escaped gaps: one byte per gap, 0 (no gap is 0) standing for the next
of the larger gaps listed after the bytes as int64."""
_MAX_INDEX = 1 << 62
"""Largest pulse index an announcement may reach (its prefix sums stay clear of int64)."""
_GAP_DTYPES: dict[int, np.dtype[np.unsignedinteger[Any]]] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    4: np.dtype("<u4"),
}


def _as_indices(values: npt.ArrayLike, *, what: str) -> Int64Array:
    arr = np.ascontiguousarray(values, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array of pulse indices, got shape {arr.shape}")
    if arr.size and int(arr[0]) < 0:
        raise ValueError(f"{what}: negative pulse index {int(arr[0])}")
    if arr.size > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        bad = int(np.argmin(arr[1:] > arr[:-1])) + 1
        raise ValueError(
            f"{what}: pulse indices must be strictly increasing (position {bad}: "
            f"{int(arr[bad - 1])} then {int(arr[bad])}); resolve double clicks before sifting"
        )
    return arr


def _same_length(what: str, **arrays: npt.NDArray[np.generic]) -> None:
    sizes = {name: arr.size for name, arr in arrays.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{what}: arrays differ in length: {sizes}")


@dataclass(frozen=True, repr=False)
class Detections:
    """Bob's detections: pulse index (Alice's clock), measurement basis (0/1) and bit."""

    pulse_index: Int64Array
    basis: UInt8Array
    bit: UInt8Array

    @classmethod
    def create(
        cls, pulse_index: npt.ArrayLike, basis: npt.ArrayLike, bit: npt.ArrayLike
    ) -> Detections:
        """Validate and build (strictly increasing indices, 0/1 bases and bits)."""
        idx = _as_indices(pulse_index, what="Detections.pulse_index")
        b = as_bits(basis, what="Detections.basis")
        v = as_bits(bit, what="Detections.bit")
        _same_length("Detections", pulse_index=idx, basis=b, bit=v)
        return cls(idx, b, v)

    def __len__(self) -> int:
        return int(self.pulse_index.size)

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"


_GAP_CHUNK = 1 << 20
"""Gaps computed at a time: a block's millions of int64 differences are never held at once."""


@dataclass(frozen=True)
class _Gaps:
    """idx[1:] - idx[:-1] as sent: ``body`` in ``width`` bytes each (``_ESCAPED``: one
    byte, 0 where the gap is the next of ``escaped``)."""

    width: int
    body: npt.NDArray[np.unsignedinteger[Any]]
    escaped: Int64Array


def _narrow_gaps(idx: Int64Array) -> _Gaps | None:
    """The gaps of strictly increasing ``idx`` in the smallest form (None: absolute int64
    indices are smaller), computed a chunk at a time."""
    largest = large = 0
    for at in range(0, idx.size - 1, _GAP_CHUNK):
        part = idx[at : at + _GAP_CHUNK + 1]
        gaps = part[1:] - part[:-1]
        largest = max(largest, int(gaps.max()))
        large += int(np.count_nonzero(gaps > 255))
    n = idx.size - 1
    sizes = {_ESCAPED: n + 8 * large, 8: 8 * (n + 1)}
    for width, dtype in _GAP_DTYPES.items():
        if largest <= np.iinfo(dtype).max:
            sizes[width] = width * n
            break
    width = min(sizes, key=lambda w: (sizes[w], w == _ESCAPED))
    if width == 8:
        return None
    body: npt.NDArray[np.unsignedinteger[Any]] = np.empty(n, dtype=_GAP_DTYPES.get(width, "<u1"))
    escaped: list[Int64Array] = []
    for at in range(0, n, _GAP_CHUNK):
        part = idx[at : at + _GAP_CHUNK + 1]
        gaps = part[1:] - part[:-1]
        if width == _ESCAPED:
            big = gaps > 255
            escaped.append(gaps[big])
            gaps[big] = 0
        body[at : at + gaps.size] = gaps
    none = np.zeros(0, dtype=np.int64)
    return _Gaps(width, body, np.concatenate(escaped) if escaped else none)


@dataclass(frozen=True)
class BasisAnnouncement:
    """Bob -> Alice: pulse indices of detections and the bases measured in."""

    pulse_index: Int64Array
    basis: UInt8Array

    def __len__(self) -> int:
        return int(self.pulse_index.size)

    def to_bytes(self) -> bytes:
        """Serialise: header, index gaps (1/2/4 bytes, or 1 byte escaped and the large
        gaps, or int64 indices), packed bases."""
        n = len(self)
        idx = self.pulse_index
        first = int(idx[0]) if n else 0
        parts: list[npt.NDArray[np.generic]] = [idx.astype("<i8", copy=False)]
        width = 8
        if n > 1:
            gaps = _narrow_gaps(idx)
            if gaps is not None:
                width, parts = gaps.width, [gaps.body, gaps.escaped.astype("<i8", copy=False)]
        elif n == 1:
            parts, width = [parts[0][:0]], 1
        header = _ANNOUNCE_HEADER.pack(_ANNOUNCE_MAGIC, n, width, first)
        # join copies once from the buffers (no intermediate tobytes copies).
        body = [part.data.cast("B") for part in parts]
        return b"".join((header, *body, np.packbits(self.basis).data))

    @classmethod
    def from_bytes(cls, data: bytes) -> BasisAnnouncement:
        """Parse :meth:`to_bytes` output; raises MessageFormatError on any mismatch."""
        what = "BasisAnnouncement"
        n = _parse_header(data, _ANNOUNCE_MAGIC, what)
        if len(data) < _ANNOUNCE_HEADER.size:
            raise MessageFormatError(f"{what}: {len(data)} bytes are shorter than a header")
        _, _, width, first = _ANNOUNCE_HEADER.unpack_from(data)
        if width not in (_ESCAPED, 1, 2, 4, 8):
            raise MessageFormatError(f"{what}: bad index width {width}")
        stored = n if width == 8 else max(n - 1, 0)
        off = _ANNOUNCE_HEADER.size
        bytes_per_gap = 1 if width == _ESCAPED else width
        if len(data) < off + bytes_per_gap * stored:
            raise MessageFormatError(f"{what}: {len(data)} bytes are too short for {n} detections")
        n_escaped = 0
        if width == _ESCAPED:
            n_escaped = stored - int(
                np.count_nonzero(np.frombuffer(data, dtype=np.uint8, count=stored, offset=off))
            )
        expected = off + bytes_per_gap * stored + 8 * n_escaped + (n + 7) // 8
        if len(data) != expected:
            raise MessageFormatError(
                f"{what}: {len(data)} bytes for {n} detections, expected {expected}"
            )
        basis = np.unpackbits(
            np.frombuffer(data, dtype=np.uint8, offset=expected - (n + 7) // 8), count=n
        )
        if width == 8:
            raw = np.frombuffer(data, dtype="<i8", count=n, offset=off)
            try:
                idx = _as_indices(raw, what=f"{what}.pulse_index")
            except ValueError as exc:
                raise MessageFormatError(str(exc)) from None
            return cls(idx, basis)
        gaps = np.frombuffer(data, dtype=_GAP_DTYPES[bytes_per_gap], count=stored, offset=off)
        if first < 0:
            raise MessageFormatError(f"{what}: negative pulse index {first}")
        escaped = np.frombuffer(data, dtype="<i8", count=n_escaped, offset=off + stored)
        if width != _ESCAPED and stored and int(gaps.min()) == 0:
            bad = int(np.argmin(gaps)) + 1
            raise MessageFormatError(
                f"{what}.pulse_index: pulse indices must be strictly increasing "
                f"(position {bad} repeats the previous index)"
            )
        if n_escaped and not 1 <= int(escaped.min()) <= int(escaped.max()) < _MAX_INDEX:
            raise MessageFormatError(f"{what}: an escaped gap is out of range (1..2**62)")
        reach = first + float(gaps.sum(dtype=np.float64)) + float(escaped.sum(dtype=np.float64))
        if reach >= _MAX_INDEX:
            raise MessageFormatError(f"{what}: pulse indices would pass 2**62")
        idx = np.empty(n, dtype=np.int64)
        if n:
            # Widen then prefix-sum in place: faster than a casting cumsum.
            idx[0] = first
            idx[1:] = gaps
            if n_escaped:
                idx[1:][gaps == 0] = escaped
            np.cumsum(idx, out=idx)
        return cls(idx, basis)


@dataclass(frozen=True)
class SiftReply:
    """Alice -> Bob: basis-match flag and intensity class of every announced detection."""

    match: BoolArray
    intensity: UInt8Array

    def __len__(self) -> int:
        return int(self.match.size)

    @cached_property
    def matched(self) -> Int64Array:
        """Positions (in announcement order) of the detections whose bases matched."""
        return np.flatnonzero(self.match)

    def to_bytes(self) -> bytes:
        """Serialise: header, bit-packed match mask, one byte of intensity class each."""
        intensity = np.ascontiguousarray(self.intensity, dtype=np.uint8)
        return b"".join(
            (_HEADER.pack(_REPLY_MAGIC, len(self)), np.packbits(self.match).data, intensity.data)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SiftReply:
        """Parse :meth:`to_bytes` output; raises MessageFormatError on any mismatch."""
        n = _parse_header(data, _REPLY_MAGIC, "SiftReply")
        packed = (n + 7) // 8
        if len(data) != _HEADER.size + packed + n:
            raise MessageFormatError(f"SiftReply: {len(data)} bytes do not hold {n} answers")
        off = _HEADER.size
        match = np.unpackbits(
            np.frombuffer(data, dtype=np.uint8, count=packed, offset=off), count=n
        ).view(np.bool_)
        intensity = np.frombuffer(data, dtype=np.uint8, count=n, offset=off + packed).copy()
        return cls(match, intensity)


def _parse_header(data: bytes, magic: bytes, what: str) -> int:
    if len(data) < _HEADER.size:
        raise MessageFormatError(f"{what}: message of {len(data)} bytes is shorter than a header")
    got_magic, n = _HEADER.unpack_from(data)
    if got_magic != magic:
        raise MessageFormatError(f"{what}: wrong message type {got_magic!r}, expected {magic!r}")
    return int(n)


@dataclass(frozen=True, repr=False)
class SiftedKey:
    """One party's sifted bits with pulse index, basis and intensity class of each."""

    pulse_index: Int64Array
    basis: UInt8Array
    intensity: UInt8Array
    bits: SecretBits

    def __len__(self) -> int:
        return int(self.pulse_index.size)

    def counts(self, n_intensities: int, n_bases: int = 2) -> npt.NDArray[np.int64]:
        """Sifted bits per (intensity class, basis), shape (n_intensities, n_bases)."""
        if self.intensity.size and int(self.intensity.max()) >= n_intensities:
            raise ValueError(
                f"SiftedKey.counts: intensity class {int(self.intensity.max())} "
                f">= n_intensities={n_intensities}"
            )
        flat = self.intensity.astype(np.int64) * n_bases + self.basis
        return np.bincount(flat, minlength=n_intensities * n_bases).reshape(n_intensities, n_bases)

    def select(self, mask: BoolArray) -> SiftedKey:
        """The subset of sifted bits where mask is True (e.g. one basis or one intensity)."""
        mask = np.asarray(mask, dtype=np.bool_)
        if mask.shape != self.pulse_index.shape:
            raise ValueError(f"SiftedKey.select: mask shape {mask.shape} != ({len(self)},)")
        return self._take(np.flatnonzero(mask))

    def _take(self, positions: Int64Array) -> SiftedKey:
        return SiftedKey(
            self.pulse_index.take(positions),
            self.basis.take(positions),
            self.intensity.take(positions),
            SecretBits.adopt(self.bits.bits.take(positions)),
        )

    def __repr__(self) -> str:
        return f"SiftedKey(n={len(self)}, bits={self.bits!r})"


def announce(detections: Detections) -> BasisAnnouncement:
    """Bob's announcement: indices and bases of his detections (bits stay private)."""
    return BasisAnnouncement(detections.pulse_index, detections.basis)


def answer(
    announcement: BasisAnnouncement, alice_basis: npt.ArrayLike, alice_intensity: npt.ArrayLike
) -> SiftReply:
    """Alice's reply given her basis and intensity class at each announced pulse index."""
    basis = as_bits(alice_basis, what="answer: alice_basis")
    intensity = np.ascontiguousarray(alice_intensity, dtype=np.uint8)
    _same_length(
        "answer", announcement=announcement.pulse_index, alice_basis=basis, intensity=intensity
    )
    return SiftReply(basis == announcement.basis, intensity)


def sift_alice(
    announcement: BasisAnnouncement, reply: SiftReply, alice_bits: npt.ArrayLike
) -> SiftedKey:
    """Alice keeps her bits (aligned with the announcement) where the bases matched."""
    bits = as_bits(alice_bits, what="sift_alice: alice_bits")
    _same_length("sift_alice", announcement=announcement.pulse_index, reply=reply.match, bits=bits)
    m = reply.matched
    return SiftedKey(
        announcement.pulse_index.take(m),
        announcement.basis.take(m),
        reply.intensity.take(m),
        SecretBits.adopt(bits.take(m)),
    )


def sift_bob(detections: Detections, reply: SiftReply) -> SiftedKey:
    """Bob keeps his detected bits where Alice reported a basis match."""
    _same_length("sift_bob", detections=detections.pulse_index, reply=reply.match)
    m = reply.matched
    return SiftedKey(
        detections.pulse_index.take(m),
        detections.basis.take(m),
        reply.intensity.take(m),
        SecretBits.adopt(detections.bit.take(m)),
    )


def split_bob(
    basis: UInt8Array, bit: UInt8Array, reply: SiftReply, key_basis: int
) -> tuple[SecretBits, SecretBits]:
    """Bob's matched bits in the key basis and in the test basis, in announcement order.

    The same bits as splitting :func:`sift_bob`'s key by basis, from his bases and bits
    alone: once announced, his detections' pulse indices (8 bytes each, millions per
    block) can be let go before Alice answers, and no positions array is built.
    """
    _same_length("split_bob", basis=basis, bit=bit, reply=reply.match)
    in_key = basis == key_basis
    in_test = ~in_key
    in_key &= reply.match
    in_test &= reply.match
    return SecretBits.adopt(bit[in_key]), SecretBits.adopt(bit[in_test])


def class_counts(intensity: UInt8Array, *, skip: int) -> tuple[int, ...]:
    """Entries of each intensity class 0..the largest present, leaving out class ``skip``
    (e.g. not sent): ``np.bincount`` of the others, without first widening millions of
    bytes to int64 (one comparison per class instead)."""
    others = intensity != skip
    if not bool(others.any()):
        return ()
    top = int(np.max(intensity, initial=0, where=others))
    del others
    return tuple(0 if k == skip else int(np.count_nonzero(intensity == k)) for k in range(top + 1))

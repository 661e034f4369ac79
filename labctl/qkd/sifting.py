"""Basis sifting over the classical channel.

Bob announces the pulse indices of his detections and the basis he measured in (never the
bit); Alice answers, for each announced detection, whether her basis matched and which
intensity class the pulse had (signal or decoy: revealing the class after detection is
what makes the decoy method work, Lo, Ma, Chen 2005). Both sides then keep the matched
bits. Everything is vectorized: one call sifts millions of detections.

Alice's per-pulse values are passed as arrays aligned with the announcement; a twin or
driver that recomputes them from a counter-based RNG does so for ``announcement.pulse_index``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.qkd.errors import MessageFormatError
from labctl.qkd.secret import SecretBits, as_bits

Int64Array = npt.NDArray[np.int64]
UInt8Array = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

_ANNOUNCE_MAGIC = b"SA1"
_REPLY_MAGIC = b"SR1"
_HEADER = struct.Struct("<3sQ")


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


@dataclass(frozen=True)
class BasisAnnouncement:
    """Bob -> Alice: pulse indices of detections and the bases measured in."""

    pulse_index: Int64Array
    basis: UInt8Array

    def __len__(self) -> int:
        return int(self.pulse_index.size)

    def to_bytes(self) -> bytes:
        """Serialise: header, int64 little-endian indices, bit-packed bases."""
        n = len(self)
        return b"".join(
            (
                _HEADER.pack(_ANNOUNCE_MAGIC, n),
                self.pulse_index.astype("<i8", copy=False).tobytes(),
                np.packbits(self.basis).tobytes(),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> BasisAnnouncement:
        """Parse :meth:`to_bytes` output; raises MessageFormatError on any mismatch."""
        n = _parse_header(data, _ANNOUNCE_MAGIC, "BasisAnnouncement")
        expected = _HEADER.size + 8 * n + (n + 7) // 8
        if len(data) != expected:
            raise MessageFormatError(
                f"BasisAnnouncement: {len(data)} bytes for {n} detections, expected {expected}"
            )
        off = _HEADER.size
        idx = np.frombuffer(data, dtype="<i8", count=n, offset=off)
        basis = np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=off + 8 * n), count=n)
        try:
            idx = _as_indices(idx, what="BasisAnnouncement.pulse_index")
        except ValueError as exc:
            raise MessageFormatError(str(exc)) from None
        return cls(idx, basis)


@dataclass(frozen=True)
class SiftReply:
    """Alice -> Bob: basis-match flag and intensity class of every announced detection."""

    match: BoolArray
    intensity: UInt8Array

    def __len__(self) -> int:
        return int(self.match.size)

    def to_bytes(self) -> bytes:
        """Serialise: header, bit-packed match mask, one byte of intensity class each."""
        return b"".join(
            (
                _HEADER.pack(_REPLY_MAGIC, len(self)),
                np.packbits(self.match).tobytes(),
                self.intensity.tobytes(),
            )
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
        return SiftedKey(
            self.pulse_index[mask],
            self.basis[mask],
            self.intensity[mask],
            SecretBits(self.bits.bits[mask]),
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
    m = reply.match
    return SiftedKey(
        announcement.pulse_index[m],
        announcement.basis[m],
        reply.intensity[m],
        SecretBits.adopt(bits[m]),
    )


def sift_bob(detections: Detections, reply: SiftReply) -> SiftedKey:
    """Bob keeps his detected bits where Alice reported a basis match."""
    _same_length("sift_bob", detections=detections.pulse_index, reply=reply.match)
    m = reply.match
    return SiftedKey(
        detections.pulse_index[m],
        detections.basis[m],
        reply.intensity[m],
        SecretBits.adopt(detections.bit[m]),
    )

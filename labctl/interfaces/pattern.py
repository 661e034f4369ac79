"""Alice's per-pulse state pattern: what a transmitter is told to prepare, pulse by pulse.

A pattern is three uint8 arrays of one length: the intensity class code (0 = the first
class of the station's decoy design, e.g. signal), the basis (0 = Z, 1 = X) and the bit.
Patterns for key generation come from a cryptographic random source
(:func:`secret_pattern`); a seeded generator is for public calibration frames and tests only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

NOT_SENT = 0xFF
"""State code of a pulse that carried no state (no light was prepared for it)."""


class PatternMode(StrEnum):
    """What a transmitter does with a pattern longer than its memory, or once it ends."""

    STREAMED = "streamed"
    """Chunks play back to back and each pulse's state is used once: key may be stored."""
    REPEATING = "repeating"
    """The loaded pattern cycles: states repeat within a block, a demonstration only."""


@dataclass(frozen=True, slots=True)
class PulsePattern:
    """Intensity class, basis and bit of consecutive pulses (uint8 arrays of one length)."""

    intensity: U8
    basis: U8
    bit: U8

    def __post_init__(self) -> None:
        for name in ("intensity", "basis", "bit"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 1:
                raise TypeError(f"PulsePattern.{name} must be a 1-D uint8 array")
        if not (self.intensity.size == self.basis.size == self.bit.size):
            raise ValueError(
                "PulsePattern arrays differ in length: "
                f"{self.intensity.size}, {self.basis.size}, {self.bit.size}"
            )
        if self.basis.size and (int(self.basis.max()) > 1 or int(self.bit.max()) > 1):
            raise ValueError("PulsePattern basis and bit must be 0 or 1")

    def __len__(self) -> int:
        return int(self.intensity.size)

    def __repr__(self) -> str:  # never the states themselves: they may be key material
        return f"PulsePattern({len(self)} pulses)"

    def slice(self, start: int, stop: int) -> PulsePattern:
        """Pulses [start, stop) of this pattern (views, no copy)."""
        return PulsePattern(
            self.intensity[start:stop], self.basis[start:stop], self.bit[start:stop]
        )

    def take(self, positions: npt.NDArray[np.int64]) -> PulsePattern:
        """The states at the given positions (0-based within this pattern)."""
        return PulsePattern(self.intensity[positions], self.basis[positions], self.bit[positions])

    @classmethod
    def concatenate(cls, parts: Sequence[PulsePattern]) -> PulsePattern:
        """One pattern of the given ones back to back."""
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.intensity for p in parts]),
            np.concatenate([p.basis for p in parts]),
            np.concatenate([p.bit for p in parts]),
        )

    @classmethod
    def empty(cls) -> PulsePattern:
        """A pattern of no pulses."""
        zero = np.zeros(0, dtype=np.uint8)
        return cls(zero, zero.copy(), zero.copy())


def state_codes(pattern: PulsePattern) -> U8:
    """One state code per pulse: intensity class * 4 + basis * 2 + bit."""
    # ((intensity << 1 | basis) << 1) | bit, in place: a shifted copy of basis would be
    # another byte a pulse (100 MB for a 1e8-pulse block).
    code = pattern.intensity << np.uint8(1)
    code |= pattern.basis
    code <<= np.uint8(1)
    code |= pattern.bit
    return code


class PackedCodes:
    """State codes of consecutive pulses, two a byte (low nibble first) when every code is
    below 16 (up to four intensity classes), else one a byte."""

    __slots__ = ("_data", "_packed", "size")

    def __init__(self, codes: U8) -> None:
        self.size = int(codes.size)
        self._packed = self.size > 0 and int(codes.max()) < 16
        if self._packed:
            data = codes[0::2].copy()
            odd = codes[1::2]
            data[: odd.size] |= odd << np.uint8(4)
            self._data = data
        else:
            self._data = codes

    def __getitem__(self, pos: I64) -> U8:
        """The codes at positions ``pos`` (0-based, each below ``size``)."""
        if not self._packed:
            out: U8 = self._data[pos]
            return out
        byte: U8 = self._data[pos >> 1]
        shift = ((pos & 1) << 2).astype(np.uint8)
        byte >>= shift
        byte &= np.uint8(0xF)
        return byte

    @classmethod
    def of(cls, pattern: PulsePattern) -> PackedCodes:
        """The state codes of a pattern, packed (one compiled pass over its arrays)."""
        from labctl.interfaces._pack_jit import pack_states  # numba only where packing

        data, fits = pack_states(pattern.intensity, pattern.basis, pattern.bit)
        if not fits or len(pattern) == 0:
            return cls(state_codes(pattern))
        packed = cls.__new__(cls)
        packed.size, packed._packed, packed._data = len(pattern), True, data
        return packed

    def unpacked(self) -> U8:
        """Every code, one a byte."""
        return self[np.arange(self.size, dtype=np.int64)]

    @property
    def nbytes(self) -> int:
        """Bytes held."""
        return int(self._data.nbytes)


_CHUNK_PULSES = 1 << 22  # draws are made this many pulses at a time (bounded memory)


def _class_thresholds(probabilities: Sequence[float]) -> npt.NDArray[np.uint32]:
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 1 or probs.size == 0 or np.any(probs < 0) or not np.isclose(probs.sum(), 1):
        raise ValueError(f"intensity probabilities must be >= 0 and sum to 1, got {probabilities}")
    edges = np.cumsum(probs)[:-1] * float(1 << 32)
    return np.minimum(np.rint(edges), float((1 << 32) - 1)).astype(np.uint32)


_PIECE_PULSES = 1 << 19
"""Random bytes are requested for at most this many pulses' draws at a time (2 MiB): a
chunk's 9 bytes a pulse never exist at once."""


def _fill(
    out: PulsePattern,
    offset: int,
    n: int,
    random_bytes: Callable[[int], U8],
    edges: npt.NDArray[np.uint32],
    z_edge: int,
) -> None:
    """States of pulses [offset, offset + n) from 9 n random bytes, taken in stream order:
    4 n for the class draws, 4 n for the basis draws, then n for the bits."""
    for at in range(offset, offset + n, _PIECE_PULSES):
        k = min(_PIECE_PULSES, offset + n - at)
        class_draw = random_bytes(4 * k).view(np.uint32)
        intensity = out.intensity[at : at + k]
        intensity[:] = 0
        for edge in edges:
            intensity += class_draw >= edge
    for at in range(offset, offset + n, _PIECE_PULSES):
        k = min(_PIECE_PULSES, offset + n - at)
        basis_draw = random_bytes(4 * k).view(np.uint32)
        if z_edge > 0xFFFFFFFF:  # every draw is below: always Z (the bytes are used all the same)
            out.basis[at : at + k] = 0
        else:
            np.greater_equal(basis_draw, np.uint32(z_edge), out=out.basis[at : at + k].view(bool))
    for at in range(offset, offset + n, _PIECE_PULSES):
        k = min(_PIECE_PULSES, offset + n - at)
        np.bitwise_and(random_bytes(k), np.uint8(1), out=out.bit[at : at + k])


def draw_pattern(
    n_pulses: int,
    intensity_probability: Sequence[float],
    basis_z_probability: float,
    random_bytes: Callable[[int], U8],
) -> PulsePattern:
    """A pattern from ``random_bytes(k)`` (k fresh random bytes per call), 9 bytes a pulse.

    Per pulse: a 32-bit intensity-class draw, a 32-bit basis draw and one bit; thresholds
    are compared as 32-bit integers, so class and basis frequencies follow the design
    probabilities to 2^-32. Pulses are drawn 4 Mi at a time, each such chunk's bytes laid
    out as its class draws, its basis draws, then its bits.
    """
    if n_pulses < 0:
        raise ValueError(f"n_pulses must be >= 0, got {n_pulses}")
    if not 0.0 <= basis_z_probability <= 1.0:
        raise ValueError(f"basis_z_probability must be in [0, 1], got {basis_z_probability}")
    edges = _class_thresholds(intensity_probability)
    if basis_z_probability >= 1.0:
        z_edge = 1 << 32
    else:
        z_edge = round(basis_z_probability * float(1 << 32))
    out = PulsePattern(
        np.zeros(n_pulses, dtype=np.uint8),
        np.zeros(n_pulses, dtype=np.uint8),
        np.zeros(n_pulses, dtype=np.uint8),
    )
    for offset in range(0, n_pulses, _CHUNK_PULSES):
        _fill(out, offset, min(_CHUNK_PULSES, n_pulses - offset), random_bytes, edges, z_edge)
    return out


_ZEROS_BYTES = 1 << 21
"""Plaintext zeros encrypted at a time (one buffer of this size, reused)."""


class _KeyStream:
    """AES-256 in counter mode under a key from ``secrets``: a cryptographic byte stream.

    The operating system's generator alone is too slow for a 1e8-pulse block's 900 MB
    (benchmarks/README.md, "figures behind the code"), so its 32-byte key seeds a block
    cipher in counter mode (the construction of NIST SP 800-90A CTR_DRBG, without its
    reseeding, which a single block never needs).
    """

    def __init__(self) -> None:
        key, nonce = secrets.token_bytes(32), secrets.token_bytes(16)
        self._encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
        self._zeros = np.zeros(0, dtype=np.uint8)

    def __call__(self, n_bytes: int) -> U8:
        out = np.empty(n_bytes + 15, dtype=np.uint8)  # update_into wants block-size slack
        piece = min(n_bytes, _ZEROS_BYTES) or 1
        if self._zeros.size < piece:
            self._zeros = np.zeros(piece, dtype=np.uint8)
        for at in range(0, n_bytes, piece):  # the keystream is the encryption of zeros
            k = min(piece, n_bytes - at)
            self._encryptor.update_into(self._zeros[:k].data, out[at : at + k + 15].data)
        return out[:n_bytes]


def secret_pattern(
    n_pulses: int, intensity_probability: Sequence[float], basis_z_probability: float
) -> PulsePattern:
    """A pattern from a cryptographic random source (for key generation)."""
    return draw_pattern(n_pulses, intensity_probability, basis_z_probability, _KeyStream())


def secret_chunks(
    n_pulses: int,
    chunk_pulses: int,
    intensity_probability: Sequence[float],
    basis_z_probability: float,
) -> Iterator[PulsePattern]:
    """:func:`secret_pattern` of ``n_pulses`` in chunks of ``chunk_pulses`` (the last one
    shorter), each drawn when it is taken: the whole pattern (3 bytes a pulse) never exists
    at once unless it is one chunk."""
    return draw_chunks(
        n_pulses, chunk_pulses, intensity_probability, basis_z_probability, _KeyStream()
    )


def draw_chunks(
    n_pulses: int,
    chunk_pulses: int,
    intensity_probability: Sequence[float],
    basis_z_probability: float,
    random_bytes: Callable[[int], U8],
) -> Iterator[PulsePattern]:
    """The states :func:`draw_pattern` makes from the same bytes, cut into chunks of
    ``chunk_pulses`` and drawn as they are taken (one draw of at most 4 Mi pulses held)."""
    if chunk_pulses < 1:
        raise ValueError(f"chunk_pulses must be >= 1, got {chunk_pulses}")
    if n_pulses < 0:
        raise ValueError(f"n_pulses must be >= 0, got {n_pulses}")
    if chunk_pulses >= n_pulses:
        if n_pulses:
            yield draw_pattern(n_pulses, intensity_probability, basis_z_probability, random_bytes)
        return
    draws = (
        draw_pattern(
            min(_CHUNK_PULSES, n_pulses - offset),
            intensity_probability,
            basis_z_probability,
            random_bytes,
        )
        for offset in range(0, n_pulses, _CHUNK_PULSES)
    )
    state = _DrawCursor(draws)
    for offset in range(0, n_pulses, chunk_pulses):
        # Built by a call, so this frame holds no reference to a chunk once it is taken.
        yield state.take(min(chunk_pulses, n_pulses - offset))


class _DrawCursor:
    """Consecutive pulses of a sequence of draws, copied out chunk by chunk."""

    def __init__(self, draws: Iterator[PulsePattern]) -> None:
        self._draws = draws
        self._drawn = PulsePattern.empty()
        self._at = 0

    def take(self, n: int) -> PulsePattern:
        if self._at == 0 and len(self._drawn) == n:
            chunk, self._drawn = self._drawn, PulsePattern.empty()  # no copy needed
            return chunk
        out = PulsePattern(*(np.zeros(n, dtype=np.uint8) for _ in range(3)))  # calloc: lazy
        filled = 0
        while filled < n:
            if self._at == len(self._drawn):
                self._drawn, self._at = next(self._draws), 0
                if filled == 0 and len(self._drawn) == n:
                    chunk, self._drawn = self._drawn, PulsePattern.empty()
                    return chunk
            k = min(n - filled, len(self._drawn) - self._at)
            for name in ("intensity", "basis", "bit"):
                src = getattr(self._drawn, name)[self._at : self._at + k]
                getattr(out, name)[filled : filled + k] = src
            filled += k
            self._at += k
        return out


def seeded_pattern(
    n_pulses: int, intensity_probability: Sequence[float], basis_z_probability: float, seed: int
) -> PulsePattern:
    """A reproducible pattern: public calibration frames and tests only, never key."""
    rng = np.random.default_rng(seed)

    def random_bytes(n_bytes: int) -> U8:
        return np.frombuffer(rng.bytes(n_bytes), dtype=np.uint8)

    return draw_pattern(n_pulses, intensity_probability, basis_z_probability, random_bytes)

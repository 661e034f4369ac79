"""A container for key material whose repr, str and errors never show the bits.

Everything that holds key bits (sifted keys, reconciled keys, final keys) wraps them in
:class:`SecretBits`, so that an accidental ``print``, log line or exception shows only a
length and a fingerprint (:func:`labctl.secrets.fingerprint`: a truncated HMAC under a
per-process random salt, deliberately not comparable across processes; key stores compare
by UUID).
"""

from __future__ import annotations

import hmac

import numpy as np
import numpy.typing as npt

from labctl.secrets import fingerprint

Bits = npt.NDArray[np.uint8]


def as_bits(values: npt.ArrayLike, *, what: str) -> Bits:
    """Validate a 0/1 vector and return it as a contiguous uint8 array."""
    arr = np.ascontiguousarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D bit vector, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.uint8)
        else:
            raise ValueError(f"{what}: expected integer or bool bits, got dtype {arr.dtype}")
    if arr.size and int(arr.max()) > 1:
        raise ValueError(f"{what}: bit vector holds values other than 0 and 1")
    return arr


class SecretBits:
    """Immutable key bits (uint8 0/1) whose repr shows only length and fingerprint."""

    __slots__ = ("_bits",)

    def __init__(self, bits: npt.ArrayLike) -> None:
        arr = as_bits(bits, what="SecretBits").copy()
        arr.flags.writeable = False
        self._bits = arr

    @classmethod
    def adopt(cls, bits: Bits) -> SecretBits:
        """Wrap a fresh 0/1 uint8 array this module's callers own, without copy or check."""
        if bits.dtype != np.uint8 or bits.ndim != 1:
            raise ValueError(f"SecretBits.adopt: need 1-D uint8, got {bits.dtype} {bits.shape}")
        obj = cls.__new__(cls)
        bits.flags.writeable = False
        obj._bits = bits
        return obj

    @classmethod
    def from_bytes(cls, data: bytes, n_bits: int) -> SecretBits:
        """Unpack the first n_bits bits (big-endian within bytes) of data."""
        if n_bits < 0 or n_bits > 8 * len(data):
            raise ValueError(f"SecretBits.from_bytes: {n_bits} bits do not fit {len(data)} bytes")
        unpacked = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n_bits)
        return cls(unpacked)

    @property
    def bits(self) -> Bits:
        """The read-only bit array (do not log it)."""
        return self._bits

    def to_bytes(self) -> bytes:
        """Pack the bits big-endian into bytes (last byte zero-padded)."""
        return np.packbits(self._bits).tobytes()

    def fingerprint(self) -> str:
        """Salted fingerprint (see module docstring)."""
        return fingerprint(self.to_bytes() + len(self).to_bytes(8, "little"))

    def __len__(self) -> int:
        return int(self._bits.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBits):
            return NotImplemented
        return len(self) == len(other) and hmac.compare_digest(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash((len(self), self.fingerprint()))

    def __repr__(self) -> str:
        return f"SecretBits(n_bits={len(self)}, fingerprint={self.fingerprint()})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling is allowed (multiprocessing), but only through the explicit bytes form.
        return (SecretBits.from_bytes, (self.to_bytes(), len(self)))

"""Verification of reconciled keys by universal hashing (the eps_cor step).

Alice draws a fresh random Toeplitz seed, hashes her key to t = ceil(log2(1/eps_cor))
bits and sends seed and tag; Bob hashes his key with the same seed. Toeplitz matrices
form a two-universal family (Krawczyk 1994): two different keys collide with probability
2^-t <= eps_cor, so matching tags mean the keys are equal except with probability eps_cor
(Lim et al. 2014 account for the disclosed tag in the log2(2/eps_cor) term of Eq. 1).
The seed is chosen after the keys are fixed, so no error pattern can adapt to it.
"""

from __future__ import annotations

import hmac
import math
import struct
from dataclasses import dataclass

import numpy as np

from labctl.qkd.errors import MessageFormatError, VerificationError
from labctl.qkd.privacy.amplify import random_seed, toeplitz_hash
from labctl.qkd.secret import Bits, SecretBits

_HEADER = struct.Struct("<2sQI")


def tag_length(eps_cor: float) -> int:
    """Tag bits t = ceil(log2(1/eps_cor)) so that a false match has probability <= eps_cor."""
    if not 0.0 < eps_cor < 1.0:
        raise ValueError(f"tag_length: eps_cor must be in (0, 1), got {eps_cor}")
    return max(1, math.ceil(-math.log2(eps_cor)))


@dataclass(frozen=True)
class VerificationTag:
    """Alice -> Bob: the hash seed (public, random) and her tag."""

    n_bits: int
    seed: Bits
    tag: Bits

    def to_bytes(self) -> bytes:
        """Serialise: header, packed seed, packed tag."""
        header = _HEADER.pack(b"VT", self.n_bits, self.tag.size)
        return header + np.packbits(self.seed).tobytes() + np.packbits(self.tag).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> VerificationTag:
        """Parse :meth:`to_bytes`; raises MessageFormatError when malformed."""
        if len(data) < _HEADER.size:
            raise MessageFormatError("VerificationTag: shorter than its header")
        magic, n, t = _HEADER.unpack_from(data)
        seed_bits = n + t - 1
        seed_bytes, tag_bytes = (seed_bits + 7) // 8, (t + 7) // 8
        if magic != b"VT" or t < 1 or len(data) != _HEADER.size + seed_bytes + tag_bytes:
            raise MessageFormatError(f"VerificationTag: malformed ({len(data)} bytes)")
        raw = np.frombuffer(data, dtype=np.uint8, offset=_HEADER.size)
        seed = np.unpackbits(raw[:seed_bytes], count=seed_bits)
        tag = np.unpackbits(raw[seed_bytes:], count=t)
        return cls(int(n), seed, tag)


def make_tag(
    key: SecretBits, eps_cor: float, rng: np.random.Generator | None = None
) -> VerificationTag:
    """Alice: draw a fresh seed and hash her key (rng only for reproducible tests)."""
    t = tag_length(eps_cor)
    n = len(key)
    if n == 0:
        raise ValueError("make_tag: cannot verify an empty key")
    seed = random_seed(n + t - 1, rng)
    return VerificationTag(n, seed, toeplitz_hash(seed, key.bits, t))


def tags_match(key: SecretBits, tag: VerificationTag) -> bool:
    """Bob: does his key hash to Alice's tag under her seed?"""
    if len(key) != tag.n_bits:
        return False
    mine = toeplitz_hash(tag.seed, key.bits, tag.tag.size)
    return hmac.compare_digest(np.packbits(mine).tobytes(), np.packbits(tag.tag).tobytes())


def verify(key: SecretBits, tag: VerificationTag) -> None:
    """Bob: raise VerificationError (without key material) when the tags differ."""
    if not tags_match(key, tag):
        raise VerificationError(
            f"verification: {len(key)}-bit key does not match Alice's {tag.tag.size}-bit tag; "
            "discard the frame"
        )

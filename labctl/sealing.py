"""Secrets sealed at rest with AES-256-GCM: key store rows and authentication pool files.

One 32-byte key (``storage.key_store_key_file``) seals both. Each seal takes a fresh 96-bit
nonce, written before the ciphertext, and associated data that binds the sealed bytes to
where they belong (a key store row, a pool's role), so they cannot be moved unnoticed.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12


class SealError(Exception):
    """Sealed bytes that do not open: altered, moved, or sealed under another key."""


class Sealer:
    """AES-256-GCM with a fresh nonce per seal; ``open`` checks the associated data."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a sealing key has {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, aad: bytes) -> bytes:
        """Nonce, then the ciphertext and its 16-byte tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """The plain bytes (SealError when the tag does not match)."""
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
        except InvalidTag:
            raise SealError("authentication tag mismatch") from None

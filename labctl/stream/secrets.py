"""Guard that keeps key material off MQTT.

The key store registers every key it holds; the publisher checks every payload against
the registry before it leaves the process (and before it touches the outbox on disk).
A key is searched for in the encodings a careless caller would use: raw bytes, hex (both
cases), base64 (standard and URL-safe, unpadded) and a string of bits. To catch a leaked
*part* of a key, each key is also split into aligned chunks of ``CHUNK_BYTES``; any leak of
``2 * CHUNK_BYTES`` consecutive key bytes contains at least one whole chunk in raw, hex and
bit form. Base64 of a fragment depends on its alignment, so base64 is searched for the
whole key and for 15-byte pieces at the three byte alignments (again any leak of
``2 * CHUNK_BYTES`` bytes is caught).

The registry holds the encodings in memory (the key store holds the keys anyway); it never
prints them: errors name only a short SHA-256 fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import threading

from labctl.interfaces.errors import LabctlError

CHUNK_BYTES = 16
MIN_SECRET_BYTES = 8


class SecretLeakError(LabctlError):
    """A payload about to be published contains registered key material."""


def fingerprint(secret: bytes) -> str:
    """Short public fingerprint of a secret (first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(secret).hexdigest()[:12]


def _bits(data: bytes) -> bytes:
    return "".join(f"{b:08b}" for b in data).encode()


def _b64_forms(data: bytes) -> list[bytes]:
    # Only whole 3-byte groups: the last group's characters depend on what follows.
    whole = data[: (len(data) // 3) * 3]
    return [base64.b64encode(whole).rstrip(b"="), base64.urlsafe_b64encode(whole).rstrip(b"=")]


def _needles(secret: bytes) -> set[bytes]:
    starts = range(0, max(1, len(secret) - CHUNK_BYTES + 1), CHUNK_BYTES)
    pieces = [secret] + [secret[s : s + CHUNK_BYTES] for s in starts]
    needles: set[bytes] = set()
    for piece in pieces:
        hx = piece.hex()
        needles.update({piece, hx.encode(), hx.upper().encode(), _bits(piece)})
    # A base64 fragment starting at offset o contains the encoding of a 15-byte piece
    # starting at s only when s - o is a multiple of 3: cover the three alignments.
    needles.update(_b64_forms(secret))
    for s in starts:
        for shift in range(3):
            piece = secret[s + shift : s + shift + CHUNK_BYTES - 1]
            if len(piece) >= 12:
                needles.update(_b64_forms(piece))
    return {n for n in needles if len(n) >= MIN_SECRET_BYTES}


class SecretRegistry:
    """Thread-safe set of secrets that must never be published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._needles: dict[str, frozenset[bytes]] = {}

    def register(self, secret: bytes) -> str:
        """Forbid ``secret`` (at least 8 bytes) from every payload; return its fingerprint."""
        if not isinstance(secret, bytes | bytearray | memoryview):
            raise TypeError("SecretRegistry.register: secret must be bytes")
        data = bytes(secret)
        if len(data) < MIN_SECRET_BYTES:
            raise ValueError(
                f"SecretRegistry.register: secret of {len(data)} bytes is too short to guard "
                f"(minimum {MIN_SECRET_BYTES})"
            )
        fp = fingerprint(data)
        needles = frozenset(_needles(data))
        with self._lock:
            self._needles[fp] = needles
        return fp

    def unregister(self, fp: str) -> None:
        """Forget the secret with fingerprint ``fp`` (after the key is destroyed)."""
        with self._lock:
            self._needles.pop(fp, None)

    def __len__(self) -> int:
        return len(self._needles)

    def find(self, payload: bytes) -> str | None:
        """Fingerprint of a registered secret found in ``payload``, or None."""
        with self._lock:
            items = list(self._needles.items())
        for fp, needles in items:
            for needle in needles:
                if needle in payload:
                    return fp
        return None

    def check(self, payload: bytes, where: str) -> None:
        """Raise SecretLeakError (naming ``where`` and the fingerprint only) on a leak."""
        fp = self.find(payload)
        if fp is not None:
            raise SecretLeakError(
                f"refused to publish on {where}: payload contains key material "
                f"(key fingerprint {fp})"
            )


_DEFAULT = SecretRegistry()


def default_registry() -> SecretRegistry:
    """The process-wide registry the key store fills and every publisher checks."""
    return _DEFAULT

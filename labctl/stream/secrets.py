"""Guard that keeps key material off MQTT.

The key store registers every key it holds; the publisher checks every payload against the
registry before it leaves the process (and before it reaches the outbox on disk).

How a payload is checked, in time that does not grow with the number of keys: the registry
keeps each key's aligned ``CHUNK_BYTES`` chunks (the whole key when it is shorter than
``2 * CHUNK_BYTES``) in a set. The payload is searched (C-speed regular expressions) for
runs that could encode bytes: hex, base64 (standard or URL-safe) and strings of bits; each
run is decoded at every alignment and every window of the decoded bytes is looked up in
the set. Raw bytes are scanned the same way when the payload holds any byte outside
printable ASCII (JSON text never does; a random 16-byte key chunk is printable ASCII with
probability 1e-7). Hence any leak of ``2 * CHUNK_BYTES`` consecutive key bytes (or of a
whole short key) in one of those encodings is found.

The registry never prints a key: errors name only a short SHA-256 fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading

from labctl.interfaces.errors import LabctlError

CHUNK_BYTES = 16
MIN_SECRET_BYTES = 8

_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{16,}")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_TOKENIZE = bytes(b if b in _B64_ALPHABET else 0x20 for b in range(256))
_MIN_RUN = 11  # base64 of 8 bytes, the shortest secret
_BIT_RUN = re.compile(rb"[01]{64,}")
_URLSAFE = bytes.maketrans(b"-_", b"+/")


class SecretLeakError(LabctlError):
    """A payload about to be published contains registered key material."""


def fingerprint(secret: bytes) -> str:
    """Short public fingerprint of a secret (first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(secret).hexdigest()[:12]


def _decoded_runs(payload: bytes) -> list[bytes]:
    """Byte strings that hex, base64 or bit runs in ``payload`` could stand for."""
    out: list[bytes] = []
    # One C-speed pass: every run of base64-alphabet bytes (hex and bits are subsets).
    runs = [t for t in payload.translate(_TOKENIZE).split() if len(t) >= _MIN_RUN]
    if not runs:
        return out
    joined = b" ".join(runs)
    for run in _HEX_RUN.findall(joined):
        for start in (0, 1):
            part = run[start:]
            out.append(bytes.fromhex(part[: len(part) // 2 * 2].decode()))
    for run in runs:
        run = run.translate(_URLSAFE)
        for start in range(4):
            part = run[start:]
            rem = len(part) % 4
            # Decode the trailing partial group too: the padding '=' is not in the run.
            part = part[:-1] if rem == 1 else part + b"=" * ((4 - rem) % 4)
            try:
                out.append(base64.b64decode(part, validate=True))
            except (binascii.Error, ValueError):
                continue
    for run in _BIT_RUN.findall(joined):
        for start in range(8):
            part = run[start:]
            n = len(part) // 8
            if n:
                out.append(int(part[: n * 8], 2).to_bytes(n, "big"))
    return out


class SecretRegistry:
    """Thread-safe set of secrets that must never be published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chunks: dict[int, dict[bytes, str]] = {}  # chunk length -> chunk -> fingerprint
        self._owned: dict[str, list[bytes]] = {}

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
        if len(data) < 2 * CHUNK_BYTES:
            chunks = [data]
        else:
            chunks = [
                data[i : i + CHUNK_BYTES]
                for i in range(0, len(data) - CHUNK_BYTES + 1, CHUNK_BYTES)
            ]
        with self._lock:
            for chunk in chunks:
                self._chunks.setdefault(len(chunk), {})[chunk] = fp
            self._owned[fp] = chunks
        return fp

    def unregister(self, fp: str) -> None:
        """Forget the secret with fingerprint ``fp`` (after the key is destroyed)."""
        with self._lock:
            for chunk in self._owned.pop(fp, []):
                table = self._chunks.get(len(chunk), {})
                if table.get(chunk) == fp:
                    del table[chunk]

    def __len__(self) -> int:
        return len(self._owned)

    def _scan(self, data: bytes) -> str | None:
        for size, table in self._chunks.items():
            if not table:
                continue
            for i in range(len(data) - size + 1):
                fp = table.get(data[i : i + size])
                if fp is not None:
                    return fp
        return None

    def find(self, payload: bytes) -> str | None:
        """Fingerprint of a registered secret found in ``payload``, or None."""
        if not self._owned:
            return None
        candidates = _decoded_runs(payload)
        if _NOT_PRINTABLE.search(payload):
            candidates.append(payload)
        with self._lock:
            for data in candidates:
                fp = self._scan(data)
                if fp is not None:
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

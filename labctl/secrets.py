"""The one registry of secrets a labctl process holds: masked in logs, refused on MQTT.

Whatever holds a secret registers it here (the key store every key it stores or reads, the
embedded broker its password, the station loader tokens): :mod:`labctl.log`'s handlers mask
it in every line and :mod:`labctl.stream.publisher` refuses every payload that carries it.
Two indexes serve the two uses, each in time that does not grow with the number of secrets:

* **Log lines** (:meth:`SecretRegistry.redact`): each text form of a secret (itself; for
  bytes, hex in either case, base64 and its ``repr``) is indexed by its first
  ``ANCHOR_CHARS`` characters and a line is scanned once with a sliding window per anchor
  length. (A single regular expression of every form, rebuilt at each new key, grew by
  ~60 kB of pattern per 7 kB key and made a long run's CPU quadratic in its keys.)
* **Payloads** (:meth:`SecretRegistry.find`, byte secrets only): each key's aligned
  ``CHUNK_BYTES`` chunks (the whole key when shorter than ``2 * CHUNK_BYTES``) go in a set.
  The payload is searched (C-speed regular expressions) for runs that could encode bytes:
  hex, base64 (standard or URL-safe) and strings of bits; each run is decoded at every
  alignment and every window of the decoded bytes is looked up. Raw bytes are scanned the
  same way when the payload holds a byte outside printable ASCII (JSON text never does; a
  random 16-byte chunk is printable ASCII with probability 1e-7). Any leak of
  ``2 * CHUNK_BYTES`` consecutive key bytes (or of a whole short key) in one of those
  encodings is found.

Final keys (``KEY_BLOCK_BYTES`` or more) are bounded to the ``MAX_KEY_BLOCKS`` most recent:
a run registers every key it stores or reads, so an overnight run would otherwise grow
without end; a key read back from a store is registered again. Errors and reprs name a
secret only by :func:`fingerprint`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import threading
from collections import OrderedDict

from labctl.interfaces.errors import LabctlError

MASK = "[redacted]"
MIN_SECRET_CHARS = 8
"""Shorter values would mask ordinary text (a 2-byte key would hide every '00' in a log)."""
MIN_SECRET_BYTES = 8
"""Byte secrets shorter than this are too short to guard (and too short to be keys)."""
ANCHOR_CHARS = 32
"""Text forms are found by their first ANCHOR_CHARS characters (the whole form if shorter)."""
CHUNK_BYTES = 16
KEY_BLOCK_BYTES = 256
MAX_KEY_BLOCKS = 4096
"""Bound on registered byte secrets of KEY_BLOCK_BYTES or more: the oldest goes first."""

_FINGERPRINT_SALT = os.urandom(32)


class SecretLeakError(LabctlError):
    """A payload about to be published contains registered key material."""


def fingerprint(data: bytes) -> str:
    """Salted 12-hex-digit fingerprint of secret bytes.

    A truncated HMAC under a per-process random salt: it tells a log reader nothing about
    the bytes and identifies them within this process only (key stores compare by id).
    """
    return hmac.new(_FINGERPRINT_SALT, data, hashlib.sha256).hexdigest()[:12]


@functools.lru_cache(maxsize=64)
def _text_forms(value: str | bytes) -> frozenset[str]:
    """The ways a secret can show up in text: itself, hex (either case), base64, repr."""
    if isinstance(value, str):
        return frozenset({value})
    forms = {value.hex(), value.hex().upper(), base64.b64encode(value).decode("ascii")}
    forms.add(repr(value)[2:-1])  # how f"{key!r}" or str(bytes) would print it
    return frozenset(f for f in forms if len(f) >= MIN_SECRET_CHARS)


def _chunks(data: bytes) -> list[bytes]:
    if len(data) < 2 * CHUNK_BYTES:
        return [data]
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data) - CHUNK_BYTES + 1, CHUNK_BYTES)]


_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_HEX_RUN = re.compile(rb"[0-9a-fA-F]{16,}")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-"
_TOKENIZE = bytes(b if b in _B64_ALPHABET else 0x20 for b in range(256))
_MIN_RUN = 11  # base64 of 8 bytes, the shortest byte secret
_BIT_RUN = re.compile(rb"[01]{64,}")
_URLSAFE = bytes.maketrans(b"-_", b"+/")


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
    """Values (str or bytes) no log line and no published payload may contain; thread-safe.

    Registrations are counted: a value stays registered until each is undone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str | bytes, int] = {}
        self._key_blocks: OrderedDict[bytes, None] = OrderedDict()
        # anchor length -> anchor -> the secrets having a text form that starts with it
        self._anchors: dict[int, dict[str, list[str | bytes]]] = {}
        # chunk length -> chunk -> fingerprint of the byte secret it belongs to
        self._chunks: dict[int, dict[bytes, str]] = {}

    def register(self, value: str | bytes) -> str:
        """Mask ``value`` in every later log line (and refuse bytes in every payload);
        its fingerprint."""
        if not isinstance(value, str | bytes):
            raise TypeError(f"only str or bytes secrets can be registered, got {type(value)}")
        chars = len(value) * (2 if isinstance(value, bytes) else 1)
        if chars < MIN_SECRET_CHARS or (isinstance(value, bytes) and len(value) < MIN_SECRET_BYTES):
            unit = "bytes" if isinstance(value, bytes) else "chars"
            raise ValueError(
                f"secret too short to mask safely ({len(value)} {unit}; need >= "
                f"{MIN_SECRET_CHARS} chars or {MIN_SECRET_BYTES} bytes)"
            )
        fp = fingerprint(value if isinstance(value, bytes) else value.encode())
        with self._lock:
            count = self._values.get(value, 0)
            self._values[value] = count + 1
            if count == 0:
                self._index(value, fp, add=True)
            if isinstance(value, bytes) and len(value) >= KEY_BLOCK_BYTES:
                self._key_blocks[value] = None
                self._key_blocks.move_to_end(value)
                while len(self._key_blocks) > MAX_KEY_BLOCKS:
                    oldest, _ = self._key_blocks.popitem(last=False)
                    self._values.pop(oldest, None)
                    self._index(oldest, fingerprint(oldest), add=False)
        return fp

    def unregister(self, value: str | bytes) -> None:
        """Undo one registration of ``value``; the last one stops masking and guarding it."""
        with self._lock:
            count = self._values.get(value, 0)
            if count == 0:
                return
            if count > 1:
                self._values[value] = count - 1
                return
            del self._values[value]
            self._index(value, fingerprint(value if isinstance(value, bytes) else b""), add=False)
            if isinstance(value, bytes):
                self._key_blocks.pop(value, None)

    def clear(self) -> None:
        """Forget every registered secret."""
        with self._lock:
            self._values.clear()
            self._key_blocks.clear()
            self._anchors.clear()
            self._chunks.clear()

    def __len__(self) -> int:
        return len(self._values)

    def _index(self, value: str | bytes, fp: str, *, add: bool) -> None:
        """Add or remove ``value`` in both indexes (lock held)."""
        for form in _text_forms(value):
            anchor = form[:ANCHOR_CHARS]
            table = self._anchors.setdefault(len(anchor), {})
            owners = table.setdefault(anchor, [])
            if add and value not in owners:
                owners.append(value)
            elif not add and value in owners:
                owners.remove(value)
            if not owners:
                del table[anchor]
            if not table:
                del self._anchors[len(anchor)]
        if not isinstance(value, bytes):
            return
        for chunk in _chunks(value):
            chunks = self._chunks.setdefault(len(chunk), {})
            if add:
                chunks[chunk] = fp
            elif chunks.get(chunk) == fp:
                del chunks[chunk]

    # -- log lines ---------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """``text`` with every registered secret replaced by ``MASK``."""
        with self._lock:  # the scan reads the index: registrations wait for one line
            spans = self._spans(text)
        if not spans:
            return text
        spans.sort()
        pieces, cursor = [], 0
        merged_start, merged_end = spans[0]
        for span_start, span_end in spans[1:]:
            if span_start < merged_end:  # overlapping forms: one mask over their union
                merged_end = max(merged_end, span_end)
                continue
            pieces += [text[cursor:merged_start], MASK]
            cursor, merged_start, merged_end = merged_end, span_start, span_end
        pieces += [text[cursor:merged_start], MASK, text[merged_end:]]
        return "".join(pieces)

    def _spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of the longest registered form starting at each anchor hit."""
        spans: list[tuple[int, int]] = []
        for size, table in self._anchors.items():
            for start in range(len(text) - size + 1):
                owners = table.get(text[start : start + size])
                if owners is None:
                    continue
                longest = max(
                    (
                        len(form)
                        for value in owners
                        for form in _text_forms(value)
                        if text.startswith(form, start)
                    ),
                    default=0,
                )
                if longest:
                    spans.append((start, start + longest))
        return spans

    # -- payloads ------------------------------------------------------------------------
    def find(self, payload: bytes) -> str | None:
        """Fingerprint of a registered byte secret found in ``payload``, or None."""
        if not self._chunks:
            return None
        candidates = _decoded_runs(payload)
        if _NOT_PRINTABLE.search(payload):
            candidates.append(payload)
        with self._lock:
            for data in candidates:
                for size, table in self._chunks.items():
                    for i in range(len(data) - size + 1):
                        fp = table.get(data[i : i + size])
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
    """The process-wide registry: the key store fills it, log handlers and publishers read it."""
    return _DEFAULT

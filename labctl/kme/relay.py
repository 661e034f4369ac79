"""Trusted-node key relay: the message one KME sends the next along a route of QKD links.

An SAE at node A asks A's KME for a key shared with an SAE at node C; A and C have no QKD
link, A-B and B-C do. The key is carried hop by hop under a one-time pad:

1. A's KME (allocator of A-B) picks ``k`` from the A-B pool (the end-to-end key, named by
   its A-B location like any key) and sends B the *location* of ``k`` (no pad, no bytes).
2. B's KME reads ``k`` from its own A-B store, picks ``p`` of the same size from the B-C pool
   (it is the allocator of B-C) and sends C ``c = k XOR p`` with ``p``'s location and a
   Wegman-Carter tag over the whole message, keyed by 32 more bytes of the B-C pool (16
   bytes of hash key, 16 of pad: :func:`labctl.qkd.auth.wegman_carter.one_time_tag`).
3. C's KME reads the tag key and ``p`` from its own B-C store, checks the tag, and reserves
   the key for the slave SAE as ``c`` plus the location of ``p`` (``k = c XOR p``, computed
   when the slave asks). Only after C's acknowledgement does B acknowledge A, and only then
   does A answer enc_keys.

Every byte used (``k``, ``p``, the tag key) is recorded consumed in the ledgers of both ends
of its link and is never served again by either link's KME. A failure anywhere answers 503
at A; the material allocated so far is wasted, never reused. ``c`` alone is uniform (it is
``k`` under a one-time pad); a flipped bit of ``c`` would flip the same bit of C's key,
which the tag catches with probability 1 - L/(2^127 - 2) (L: 15-byte chunks of the body).

A route longer than two hops repeats step 2 at every intermediate node. B sees ``k``: the
relay is secure only if every intermediate node is trusted.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from labctl.kme.ledger import Segment
from labctl.qkd.auth.wegman_carter import HASH_KEY_BYTES, PAD_BYTES, one_time_tag

RELAY_PATH = "/peer/v1/relay"
TAG_KEY_BITS = 8 * (HASH_KEY_BYTES + PAD_BYTES)
"""Key material one relay message's tag consumes (hash key and pad)."""


class RelayError(ValueError):
    """A relay message is malformed or fails authentication."""


@dataclass(frozen=True)
class RelayKey:
    """One key in a relay message: its end-to-end key_ID, size, hop location and pad."""

    key_id: str
    size_bits: int
    segments: tuple[Segment, ...]
    pad: bytes | None = field(default=None, repr=False)
    """``key XOR`` the bytes of ``segments`` (None on the first hop: the key is those bytes)."""

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "key_ID": self.key_id,
            "size": self.size_bits,
            "segments": [s.to_json() for s in self.segments],
        }
        if self.pad is not None:
            item["pad"] = base64.b64encode(self.pad).decode("ascii")
        return item

    @classmethod
    def from_json(cls, item: object) -> RelayKey:
        if not isinstance(item, dict):
            raise RelayError("relay: each key must be an object")
        key_id, size, segments, pad = (
            item.get("key_ID"),
            item.get("size"),
            item.get("segments"),
            item.get("pad"),
        )
        if not isinstance(key_id, str) or not key_id:
            raise RelayError("relay: key_ID must be a non-empty string")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or size % 8:
            raise RelayError(f"relay: size must be a positive multiple of 8, got {size!r}")
        if not isinstance(segments, list) or not segments:
            raise RelayError("relay: segments must be a non-empty list")
        try:
            segs = tuple(Segment.from_json(s) for s in segments)
        except ValueError as exc:
            raise RelayError(f"relay: {exc}") from None
        if sum(s.n_bytes for s in segs) * 8 != size:
            raise RelayError(f"relay: segments of {key_id} do not add up to {size} bits")
        raw: bytes | None = None
        if pad is not None:
            if not isinstance(pad, str):
                raise RelayError("relay: pad must be base64 text")
            try:
                raw = base64.b64decode(pad, validate=True)
            except ValueError:
                raise RelayError("relay: pad is not base64") from None
            if len(raw) * 8 != size:
                raise RelayError(f"relay: pad of {key_id} is not {size} bits")
        return cls(key_id, size, segs, raw)


@dataclass(frozen=True)
class RelayMessage:
    """What one KME sends the next along the route (see the module docstring)."""

    master: str
    slave: str
    keys: tuple[RelayKey, ...]
    tag_segments: tuple[Segment, ...] | None = None
    tag: bytes | None = field(default=None, repr=False)

    @property
    def padded(self) -> bool:
        """True past the first hop: the keys travel one-time-padded and the tag is required."""
        return any(k.pad is not None for k in self.keys)

    def body(self) -> bytes:
        """The bytes the tag covers: every field but the tag, canonical JSON."""
        data: dict[str, Any] = {
            "master_SAE_ID": self.master,
            "slave_SAE_ID": self.slave,
            "keys": [k.to_json() for k in self.keys],
        }
        if self.tag_segments is not None:
            data["tag_segments"] = [s.to_json() for s in self.tag_segments]
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body())
        if self.tag is not None:
            data["tag"] = base64.b64encode(self.tag).decode("ascii")
        return data

    @classmethod
    def from_json(cls, data: object) -> RelayMessage:
        """Parse a relay body; RelayError naming the bad field."""
        if not isinstance(data, dict):
            raise RelayError("relay: body must be an object")
        master, slave, keys = data.get("master_SAE_ID"), data.get("slave_SAE_ID"), data.get("keys")
        if not isinstance(master, str) or not isinstance(slave, str):
            raise RelayError("relay: master_SAE_ID and slave_SAE_ID must be strings")
        if not isinstance(keys, list) or not keys:
            raise RelayError("relay: keys must be a non-empty list")
        parsed = tuple(RelayKey.from_json(k) for k in keys)
        if len({k.key_id for k in parsed}) != len(parsed):
            raise RelayError("relay: a key_ID appears twice")
        tag_segments: tuple[Segment, ...] | None = None
        raw_segments = data.get("tag_segments")
        if raw_segments is not None:
            if not isinstance(raw_segments, list) or not raw_segments:
                raise RelayError("relay: tag_segments must be a non-empty list")
            try:
                tag_segments = tuple(Segment.from_json(s) for s in raw_segments)
            except ValueError as exc:
                raise RelayError(f"relay: {exc}") from None
            if sum(s.n_bytes for s in tag_segments) * 8 != TAG_KEY_BITS:
                raise RelayError(f"relay: tag_segments must add up to {TAG_KEY_BITS} bits")
        tag: bytes | None = None
        raw_tag = data.get("tag")
        if raw_tag is not None:
            try:
                tag = base64.b64decode(str(raw_tag), validate=True)
            except ValueError:
                raise RelayError("relay: tag is not base64") from None
        message = cls(master, slave, parsed, tag_segments, tag)
        if message.padded and (tag is None or tag_segments is None):
            raise RelayError("relay: padded keys need tag and tag_segments")
        return message


def sign(message: RelayMessage, tag_key: bytes) -> RelayMessage:
    """``message`` with its Wegman-Carter tag under ``tag_key`` (32 bytes, used once)."""
    tag, _ = one_time_tag(tag_key[:HASH_KEY_BYTES], tag_key[HASH_KEY_BYTES:], message.body())
    return RelayMessage(message.master, message.slave, message.keys, message.tag_segments, tag)


def verify(message: RelayMessage, tag_key: bytes) -> None:
    """RelayError unless ``message`` carries the tag of its body under ``tag_key``."""
    try:
        expected, _ = one_time_tag(
            tag_key[:HASH_KEY_BYTES], tag_key[HASH_KEY_BYTES:], message.body()
        )
    except ValueError as exc:
        raise RelayError(f"relay: {exc}") from None
    if message.tag is None or not hmac.compare_digest(expected, message.tag):
        raise RelayError("relay: the message fails authentication (Wegman-Carter tag)")


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two strings of the same length."""
    if len(a) != len(b):
        raise ValueError("xor: lengths differ")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")

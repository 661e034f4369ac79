"""Wegman-Carter authentication of the classical channel: information-theoretic MACs.

Tag of a message m (the frame body: sequence number, kind, payload) in one direction:

    tag = (P_k(m) + s) mod p,   p = 2^127 - 1 (a Mersenne prime),
    P_k(m) = c_1 k^L + c_2 k^(L-1) + ... + c_L k   (Horner, mod p)

where m is cut into L chunks of 15 bytes, each chunk read big-endian with a 0x01 byte in
front (so no chunk is 0 and chunks of different lengths differ: the encoding is injective
and a longer message has a nonzero leading coefficient), k is the direction's hash key
(uniform in Z_p, reused for every message) and s a fresh one-time pad per message (uniform in
Z_p, never reused). P_k is epsilon-almost-Delta-universal: for m != m' and any d,
Pr_k[P_k(m) - P_k(m') = d] <= L/(p-1) for k uniform in [1, p), as P_k(m) - P_k(m') - d is
a nonzero polynomial of degree <= L in k (for d = 0 its root k = 0 is excluded). With the
pad the family is epsilon-almost-strongly-universal, so an adversary who saw any number of
(message, tag) pairs forges a new one with probability at most eps_msg = L_max / (p - 1)
per attempt, L_max the chunk count of the longer message (Wegman and Carter, J. Comput.
Syst. Sci. 22, 265 (1981)). A tag is 16 bytes and costs 16 bytes of pad; eps over a session
is the sum over the messages tagged and checked (union bound), kept in
:attr:`DirectionAuth.eps_auth`.

Key material. Each direction (alice->bob, bob->alice) has its own hash key and pad pool so the
two ends consume pads in the same order without coordinating. :meth:`WegmanCarterKeys.from_psk`
seeds them from a pre-shared key of at least ``MIN_PSK_BYTES``: 16 bytes per hash key, the
rest split in half as the two pools. Pools are refilled with bits of generated key
(:meth:`WegmanCarterAuthenticator.refill`, the same bytes in the same order at both ends;
those bits must then not be used as key). An empty pool raises KeyPoolExhausted before a
byte is sent. Used pad bytes are overwritten in memory.

Cost: 16 bytes of key per message and direction; the hash runs in pure Python, far slower
than HMAC-SHA256 but microseconds for a message (benchmarks/README.md, "qkd auth").

Non-uniform corner cases are refused rather than folded into eps: a hash key or pad whose
127 bits equal p (probability 2^-127) is skipped (pad: the next 16 bytes are taken, at both
ends alike); a hash key of 0 is refused.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from labctl.qkd.errors import AuthenticationError

PRIME = (1 << 127) - 1
"""p = 2^127 - 1."""
TAG_BYTES = 16
PAD_BYTES = 16
HASH_KEY_BYTES = 16
CHUNK_BYTES = 15
MIN_PSK_BYTES = 2 * HASH_KEY_BYTES + 2 * 64 * PAD_BYTES
"""Two hash keys and 64 tags' worth of pad per direction (1056 bytes)."""
_MASK_127 = (1 << 127) - 1


class KeyPoolExhausted(AuthenticationError):
    """No pad left in a direction's pool: refill it from generated key (or a new PSK)."""


def poly_hash(key: int, message: bytes | memoryview) -> tuple[int, int]:
    """(P_k(message) mod p, L): the polynomial hash and the number of chunks L (>= 1)."""
    return poly_hash_in(key, message, PRIME, CHUNK_BYTES)


def poly_hash_in(
    key: int, message: bytes | memoryview, prime: int, chunk_bytes: int
) -> tuple[int, int]:
    """The same hash over Z_prime with ``chunk_bytes`` chunks (small fields for tests).

    Needs 2^(8 chunk_bytes + 1) <= prime so every encoded chunk is a distinct residue.
    """
    if not 0 < key < prime:
        raise ValueError("poly_hash: key must be in [1, p)")
    if 1 << (8 * chunk_bytes + 1) > prime:
        raise ValueError("poly_hash: chunks too wide for the field")
    acc = 0
    chunks = max(1, -(-len(message) // chunk_bytes))
    full_marker = 1 << (8 * chunk_bytes)
    whole = len(message) // chunk_bytes * chunk_bytes
    for start in range(0, whole, chunk_bytes):
        coefficient = full_marker | int.from_bytes(message[start : start + chunk_bytes], "big")
        acc = (acc + coefficient) * key % prime
    if whole < len(message) or not message:
        tail = message[whole:]
        # 0x01 before the bytes: tails of different lengths fall in disjoint ranges.
        acc = (acc + ((1 << (8 * len(tail))) | int.from_bytes(tail, "big"))) * key % prime
    return acc, chunks


def _element(data: bytes) -> int:
    """127 low bits of 16 bytes as an integer (uniform in [0, 2^127) for uniform bytes)."""
    return int.from_bytes(data, "big") & _MASK_127


def one_time_tag(hash_key: bytes, pad: bytes, message: bytes) -> tuple[bytes, int]:
    """(16-byte tag, chunk count L) of ``message`` under a fresh hash key and pad.

    For a channel whose every message gets its own 16-byte hash key and 16-byte pad (both
    uniform, used once): the forgery bound per message is L/(p-1) as above. A hash key of 0
    or p, or a pad of p (probability ~2^-126), raises ValueError: the caller takes fresh
    material rather than use a non-uniform key.
    """
    if len(hash_key) != HASH_KEY_BYTES or len(pad) != PAD_BYTES:
        raise ValueError(f"one_time_tag: needs {HASH_KEY_BYTES}+{PAD_BYTES} bytes of key")
    key, pad_value = _element(hash_key), _element(pad)
    if key in (0, PRIME) or pad_value == PRIME:
        raise ValueError("one_time_tag: degenerate key material (0 or p)")
    digest, chunks = poly_hash(key, message)
    return ((digest + pad_value) % PRIME).to_bytes(TAG_BYTES, "big"), chunks


@dataclass
class KeyPool:
    """One direction's one-time-pad bytes, consumed front to back, refillable."""

    name: str
    _data: bytearray = field(default_factory=bytearray, repr=False)
    consumed_bytes: int = 0

    def __repr__(self) -> str:
        return f"KeyPool({self.name}, available={len(self._data)}, consumed={self.consumed_bytes})"

    @property
    def available_bytes(self) -> int:
        """Pad bytes left."""
        return len(self._data)

    def refill(self, material: bytes) -> None:
        """Append fresh uniform bytes (the same bytes, in the same order, at both ends)."""
        self._data.extend(material)

    def take(self, n: int) -> bytes:
        """The next ``n`` pad bytes (removed and wiped here)."""
        if n > len(self._data):
            raise KeyPoolExhausted(
                f"authentication key pool {self.name} exhausted ({len(self._data)} of {n} "
                "bytes left): refill it from generated key"
            )
        out = bytes(self._data[:n])
        self._data[:n] = bytes(n)  # overwrite before dropping
        del self._data[:n]
        self.consumed_bytes += n
        return out

    def take_element(self) -> int:
        """A uniform element of Z_p (16 bytes; the rare value p is skipped)."""
        while True:
            value = _element(self.take(PAD_BYTES))
            if value != PRIME:
                return value


@dataclass
class DirectionAuth:
    """Hash key, pad pool and accounting of one direction."""

    hash_key: int = field(repr=False)
    pool: KeyPool
    messages: int = 0
    eps_auth: float = 0.0
    """Sum over messages of the forgery bound L/p (union bound over the session)."""

    def tag(self, body: bytes | memoryview) -> bytes:
        """16-byte tag of ``body`` (consumes one pad)."""
        digest, chunks = poly_hash(self.hash_key, body)
        pad = self.pool.take_element()
        self.messages += 1
        self.eps_auth += chunks / (PRIME - 1)
        return ((digest + pad) % PRIME).to_bytes(TAG_BYTES, "big")


@dataclass(frozen=True, repr=False)
class WegmanCarterKeys:
    """Both directions' hash keys and initial pools, the same at both ends."""

    alice_to_bob_key: int
    bob_to_alice_key: int
    alice_to_bob_pad: bytes
    bob_to_alice_pad: bytes

    def __repr__(self) -> str:
        return (
            f"WegmanCarterKeys(pads={len(self.alice_to_bob_pad)}+{len(self.bob_to_alice_pad)} "
            "bytes)"
        )

    @classmethod
    def from_psk(cls, psk: bytes) -> WegmanCarterKeys:
        """Split a uniform pre-shared key: two hash keys, then the two pools (halves)."""
        if len(psk) < MIN_PSK_BYTES:
            raise ValueError(
                f"Wegman-Carter needs a pre-shared key of >= {MIN_PSK_BYTES} bytes "
                f"(two hash keys + pads), got {len(psk)}"
            )
        keys = []
        for i in range(2):
            k = _element(psk[i * HASH_KEY_BYTES : (i + 1) * HASH_KEY_BYTES])
            if k in (0, PRIME):
                raise ValueError("Wegman-Carter: degenerate hash key in the pre-shared key")
            keys.append(k)
        rest = psk[2 * HASH_KEY_BYTES :]
        half = len(rest) // 2
        return cls(keys[0], keys[1], rest[:half], rest[half : 2 * half])


class WegmanCarterAuthenticator:
    """A ChannelAuthenticator (labctl.qkd.auth.channel) for one end: tags what it sends, checks what
    it receives, each direction with its own key and pool."""

    tag_bytes = TAG_BYTES

    def __init__(self, keys: WegmanCarterKeys, role: str) -> None:
        if role not in ("alice", "bob"):
            raise ValueError(f"WegmanCarterAuthenticator: role must be alice or bob, got {role!r}")
        ab = DirectionAuth(keys.alice_to_bob_key, KeyPool("alice->bob"))
        ba = DirectionAuth(keys.bob_to_alice_key, KeyPool("bob->alice"))
        ab.pool.refill(keys.alice_to_bob_pad)
        ba.pool.refill(keys.bob_to_alice_pad)
        self.role = role
        self.outgoing, self.incoming = (ab, ba) if role == "alice" else (ba, ab)

    def __repr__(self) -> str:
        return (
            f"WegmanCarterAuthenticator({self.role}, out={self.outgoing.pool!r}, "
            f"in={self.incoming.pool!r})"
        )

    @property
    def eps_auth(self) -> float:
        """Forgery bound accumulated over every message tagged or checked here."""
        return self.outgoing.eps_auth + self.incoming.eps_auth

    @property
    def consumed_bytes(self) -> int:
        """Pad bytes used, both directions."""
        return self.outgoing.pool.consumed_bytes + self.incoming.pool.consumed_bytes

    def refill(self, alice_to_bob: bytes, bob_to_alice: bytes) -> None:
        """Top up both pools with generated key (identical bytes at both ends)."""
        forward, backward = (
            (alice_to_bob, bob_to_alice) if self.role == "alice" else (bob_to_alice, alice_to_bob)
        )
        self.outgoing.pool.refill(forward)
        self.incoming.pool.refill(backward)

    def tag(self, body: bytes | memoryview) -> bytes:
        """Tag an outgoing frame body (one pad of the outgoing pool)."""
        return self.outgoing.tag(body)

    def verify(self, body: bytes | memoryview, tag: bytes) -> bool:
        """Check an incoming tag (one pad of the incoming pool, used even on failure)."""
        expected = self.incoming.tag(bytes(body))
        return hmac.compare_digest(expected, tag)

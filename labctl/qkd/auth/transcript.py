"""Wegman-Carter authentication of a channel's transcript from a persistent key pool.

What is authenticated. Every message a party sends on a channel is appended to that
direction's transcript (8-byte length, then the frame body: sequence number, kind,
payload: an injective encoding). At a *checkpoint* the sender tags the transcript since
its previous checkpoint and the receiver checks the tag against what it received; the key
generation protocol places checkpoints so that every message a key depends on is checked
before that key is stored (``labctl.link.nodes``). Per-message HMAC stays underneath
(``labctl.qkd.auth.channel``): it stops a tampered channel at the first bad frame, but the key's
security rests on these tags, which hold against an adversary with unbounded computing
power.

The tag (one construction, keys reused across checkpoints, pads never):

    h1(T)  = (P_{k_1}(T), ..., P_{k_4}(T))   four independent polynomial hashes mod
             p1 = 2^61 - 1 of the transcript T cut into 7-byte chunks (0x01 marker, as
             :func:`labctl.qkd.auth.wegman_carter.poly_hash_in`), keys k_j uniform in [1, p1)
    h2(x)  = P_k(x) mod p2 = 2^127 - 1 on the 32-byte digest x (3 chunks of 15 bytes)
    tag    = (h2(h1(T)) + s) mod p2,   s: a fresh 16-byte pad slot of the pool

h1 is eps1-almost-universal with eps1 = (L/(p1 - 1))^4 for transcripts of at most L chunks
(four independent keys must all collide; a degree-L polynomial has at most L roots), h2 is
eps2-almost-Delta-universal with eps2 = 3/(p2 - 1), so h2 o h1 is (eps1 + eps2)-almost-
Delta-universal (an almost-universal family followed by an almost-Delta-universal one:
D. R. Stinson, Des. Codes Cryptogr. 4, 369 (1994); in Z_p as with XOR). Adding a one-time pad
makes the family almost strongly universal and lets the hash keys be reused for every
checkpoint while each pad is used once (M. N. Wegman and J. L. Carter, J. Comput. Syst.
Sci. 22, 265 (1981); composable with key recycling: C. Portmann, IEEE Trans. Inf. Theory
60, 4383 (2014)). A pad slot's 127 bits equal p2 with probability 2^-127; that value is used
as is (it acts as 0), and its distance from uniform is added. Per checked tag, an adversary
who saw every earlier tag substitutes a transcript with probability at most

    EPS_PER_CHECK = (L_cap/(p1 - 1))^4 + 3/(p2 - 1) + 2^-127,

L_cap the chunk count of the longest transcript a checkpoint may cover
(``TRANSCRIPT_CAP_BYTES``, enforced at both ends). A run's eps_auth is the union bound:
EPS_PER_CHECK times the checkpoints tagged and checked.

The pool. Each direction (alice->bob, bob->alice) has its hash keys and a stream of pad
slots numbered from 0 for the pool's lifetime. The sender takes the next slot and names it
in the checkpoint; the receiver uses the slot named, only once (a slot below the session's
start, or already used, is refused: a replayed checkpoint), waiting up to the channel
timeout for a slot a refill has not brought yet. The pool is seeded once from the pre-shared
key and refilled from generated key: after each stored key block both ends append the same
bits (Bob names how many in ``key/stored``), which then never count as key. A sender with
no slot left raises KeyPoolExhausted before anything is sent.

At rest. The pool is a 0600 file beside the node's key store (``keys-alice.authpool``),
rewritten atomically; with a key store key (``storage.key_store_key_file``) it is sealed
with AES-256-GCM under that key (``labctl.sealing``), bound to the node's role. Before a
slot above the stored *floor* is used the floor is moved ``RESERVE_SLOTS`` ahead and written
first, so a node killed at any point restarts above every slot it may have used. A new
session (:meth:`AuthPool.begin_session`) starts both ends at the larger of their floors and
cuts the end that refilled more (Bob, when a ``key/stored`` was lost with the link) back to
the other's refills, after checking by key id that the common refills are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from labctl.qkd.auth._poly61_jit import horner
from labctl.qkd.auth.wegman_carter import PRIME, KeyPoolExhausted, poly_hash
from labctl.qkd.errors import AuthenticationError
from labctl.sealing import Sealer, SealError

__all__ = [
    "EPS_PER_CHECK",
    "AuthPool",
    "KeyPoolExhausted",
    "PoolStateError",
    "StreamHash",
    "TranscriptAuthenticator",
]

P61 = (1 << 61) - 1
"""p1 = 2^61 - 1."""
LANES = 4
CHUNK61 = 7
SLOT_BYTES = 16
TRANSCRIPT_CAP_BYTES = 1 << 34
"""Largest transcript one checkpoint covers (16 GiB; a 1e8-pulse block sends ~10 MB)."""
L_CAP = -(-(TRANSCRIPT_CAP_BYTES + 8) // CHUNK61)
EPS_PER_CHECK = (L_CAP / (P61 - 1)) ** LANES + 3 / (PRIME - 1) + 2.0**-127
"""Forgery bound of one checked tag (see the module docstring): about 1.3e-36."""
RESERVE_SLOTS = 16
"""Slots reserved on disk ahead of use (skipped after a crash, never reused)."""
HMAC_KEY_BYTES = 32
"""The pre-shared key's first bytes key the per-message HMAC; the rest seeds the pool."""
DIRECTION_KEY_BYTES = 8 * LANES + 16
MIN_SEED_SLOTS = 16
MIN_PSK_BYTES = HMAC_KEY_BYTES + 2 * DIRECTION_KEY_BYTES + 2 * MIN_SEED_SLOTS * SLOT_BYTES
"""640 bytes: HMAC key, two directions' hash keys, 16 pad slots per direction."""
MAX_AHEAD_SLOTS = 1 << 16
"""A checkpoint naming a slot this far beyond the pool is refused at once."""
_BUFFER_BYTES = 1 << 16
_PIECE_BYTES = 1 << 20
_RECENT_REFILLS = 64
_FORMAT = "labctl-wegman-carter-pool/1"
_SEALED = b"labctl-sealed-authpool/1\n"
"""How a sealed pool file starts (the rest: nonce, ciphertext and tag)."""
Direction = Literal["ab", "ba"]


class PoolStateError(AuthenticationError):
    """The two ends' pools cannot be brought into step (different seeds or refills)."""


def psk_parts(psk: bytes) -> tuple[bytes, bytes]:
    """(HMAC key, pool seed) of a pre-shared key: disjoint bytes, so that HMAC tags (which an
    unbounded adversary could invert) reveal nothing about the pads."""
    if len(psk) < MIN_PSK_BYTES:
        raise ValueError(
            f"Wegman-Carter authentication needs a pre-shared key of >= {MIN_PSK_BYTES} "
            f"uniformly random bytes, got {len(psk)} (e.g. head -c 4096 /dev/urandom > F)"
        )
    return psk[:HMAC_KEY_BYTES], psk[HMAC_KEY_BYTES:]


class StreamHash:
    """The four-lane polynomial hash mod 2^61 - 1 of a byte stream, fed piece by piece.

    Equals ``poly_hash_in(k_j, stream, P61, 7)`` per lane for the concatenated stream.
    """

    def __init__(self, keys: tuple[int, ...]) -> None:
        if len(keys) != LANES or not all(0 < k < P61 for k in keys):
            raise ValueError("StreamHash: needs four keys in [1, 2^61 - 1)")
        self._keys = np.array(keys, dtype=np.uint64)
        self._acc = np.zeros(LANES, dtype=np.uint64)
        self._pending = bytearray()
        self.chunks = 0
        self.total_bytes = 0

    def update(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the stream (hashed at most ``_PIECE_BYTES`` at a time: a
        message of tens of MB costs no copies of its size)."""
        self.total_bytes += len(data)
        view = memoryview(data)
        for at in range(0, len(view), _PIECE_BYTES):
            self._pending += view[at : at + _PIECE_BYTES]
            if len(self._pending) >= _BUFFER_BYTES:
                self._flush()

    def _flush(self) -> None:
        whole = len(self._pending) // CHUNK61 * CHUNK61
        if not whole:
            return
        n = whole // CHUNK61
        rows = np.zeros((n, 8), dtype=np.uint8)
        rows[:, 0] = 1  # the 0x01 marker in front of each 7-byte chunk
        rows[:, 1:] = np.frombuffer(bytes(self._pending[:whole]), dtype=np.uint8).reshape(n, 7)
        horner(self._acc, self._keys, rows.view(">u8").ravel().astype(np.uint64))
        del self._pending[:whole]
        self.chunks += n

    def digest(self) -> bytes:
        """The 32-byte digest (four lanes, big-endian) of the stream so far; then reset."""
        self._flush()
        acc = [int(a) for a in self._acc]
        tail = bytes(self._pending)
        if tail or self.chunks == 0:
            c = (1 << (8 * len(tail))) | int.from_bytes(tail, "big")
            acc = [(a + c) * int(k) % P61 for a, k in zip(acc, self._keys, strict=True)]
        self._acc[:] = 0
        self._pending.clear()
        self.chunks = 0
        self.total_bytes = 0
        return b"".join(a.to_bytes(8, "big") for a in acc)


@dataclass(frozen=True, repr=False)
class DirectionKeys:
    """One direction's reused hash keys: four lanes mod p1, one key mod p2."""

    lanes: tuple[int, ...]
    outer: int

    @classmethod
    def from_bytes(cls, data: bytes) -> DirectionKeys:
        """From DIRECTION_KEY_BYTES uniform bytes (a degenerate key is refused)."""
        lanes = tuple(int.from_bytes(data[8 * j : 8 * j + 8], "big") & P61 for j in range(LANES))
        outer = int.from_bytes(data[8 * LANES : 8 * LANES + 16], "big") & PRIME
        if any(k in (0, P61) for k in lanes) or outer in (0, PRIME):
            raise ValueError("Wegman-Carter: degenerate hash key in the seed")
        return cls(lanes, outer)

    def to_bytes(self) -> bytes:
        return b"".join(k.to_bytes(8, "big") for k in self.lanes) + self.outer.to_bytes(16, "big")


@dataclass
class PadStream:
    """One direction's pad slots: ``data`` holds slots [base, end); see AuthPool."""

    base: int = 0
    data: bytearray = field(default_factory=bytearray, repr=False)
    floor: int = 0
    """Every slot below it may have been used before: never used again (on disk)."""
    start: int = 0
    """This session's first slot (both ends alike)."""
    next: int = 0
    """Sender: the next slot to take."""
    used: set[int] = field(default_factory=set)
    """Receiver: slots used at or above ``low``."""
    low: int = 0
    """Receiver: every slot below it is used or skipped."""

    @property
    def end(self) -> int:
        return self.base + len(self.data) // SLOT_BYTES

    def slot(self, index: int) -> bytes:
        at = (index - self.base) * SLOT_BYTES
        pad = bytes(self.data[at : at + SLOT_BYTES])
        self.data[at : at + SLOT_BYTES] = bytes(SLOT_BYTES)  # wiped once used
        return pad

    def append(self, at: int, material: bytes) -> None:
        """Slots from ``at`` (>= end; the gap is never usable, below this session's start)."""
        self.data += bytes((at - self.end) * SLOT_BYTES)
        self.data += material

    def truncate(self, end: int) -> None:
        cut = max(end - self.base, 0) * SLOT_BYTES
        self.data[cut:] = bytes(len(self.data) - cut)
        del self.data[cut:]

    def compact(self, keep_from: int) -> None:
        drop = min(max(keep_from - self.base, 0), len(self.data) // SLOT_BYTES)
        del self.data[: drop * SLOT_BYTES]
        self.base += drop


class AuthPool:
    """A node's Wegman-Carter key pool (both directions), persisted in a 0600 file."""

    def __init__(
        self, path: Path, role: Literal["alice", "bob"], encryption_key: bytes | None = None
    ) -> None:
        self.path = Path(path)
        self.role = role
        self._sealer = None if encryption_key is None else Sealer(encryption_key)
        self.keys: dict[Direction, DirectionKeys] = {}
        self.streams: dict[Direction, PadStream] = {"ab": PadStream(), "ba": PadStream()}
        self.seed_id = ""
        self.refills = 0
        self.recent: list[dict[str, Any]] = []
        """The latest refills: number, key id and the slots each direction got."""
        self.checks_sent = 0
        self.checks_verified = 0
        self.slots_used = 0
        self.refill_bits = 0
        self._refilled = asyncio.Event()
        self._session = False

    def __repr__(self) -> str:
        ab, ba = self.streams["ab"], self.streams["ba"]
        return f"AuthPool({self.role}, ab={ab.end - ab.start} slots, ba={ba.end - ba.start} slots)"

    # ----- creation and persistence
    @classmethod
    def open(
        cls,
        path: Path,
        role: Literal["alice", "bob"],
        psk: bytes | None,
        encryption_key: bytes | None = None,
    ) -> AuthPool:
        """The pool at ``path``; a missing file is seeded from the pre-shared key (its bytes
        after the HMAC key; refused when None). With ``encryption_key`` the file is sealed
        (a pool written in clear is then refused, as a sealed one is without the key)."""
        pool = cls(path, role, encryption_key)
        if pool.path.exists():
            pool._load()
            if psk is not None and pool.seed_id != _seed_id(psk_parts(psk)[0]):
                raise PoolStateError(
                    f"authentication pool {pool.path} was seeded from another pre-shared key"
                )
            return pool
        if psk is None:
            raise PoolStateError(
                f"authentication pool {pool.path} is missing and there is no pre-shared key "
                "to seed it"
            )
        hmac_key, seed = psk_parts(psk)
        pool._seed(seed)
        pool.seed_id = _seed_id(hmac_key)
        pool.save()
        return pool

    def _seed(self, seed: bytes) -> None:
        self.keys["ab"] = DirectionKeys.from_bytes(seed[:DIRECTION_KEY_BYTES])
        self.keys["ba"] = DirectionKeys.from_bytes(
            seed[DIRECTION_KEY_BYTES : 2 * DIRECTION_KEY_BYTES]
        )
        rest = seed[2 * DIRECTION_KEY_BYTES :]
        half = len(rest) // 2 // SLOT_BYTES * SLOT_BYTES
        self.streams["ab"].append(0, rest[:half])
        self.streams["ba"].append(0, rest[half : 2 * half])

    def save(self) -> None:
        """Write the pool atomically (0600 from its creation), compacting used slots."""
        for d, s in self.streams.items():
            s.compact(self._first_usable(d))
        state = {
            "format": _FORMAT,
            "role": self.role,
            "seed_id": self.seed_id,
            "refills": self.refills,
            "recent": self.recent,
            "keys": {d: k.to_bytes().hex() for d, k in self.keys.items()},
            "streams": {
                d: {"base": s.base, "floor": s.floor, "pads": s.data.hex()}
                for d, s in self.streams.items()
            },
        }
        data = json.dumps(state).encode()
        if self._sealer is not None:
            data = _SEALED + self._sealer.seal(data, self._aad())
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _sync_directory(self.path.parent)

    def _load(self) -> None:
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PoolStateError(
                f"authentication pool {self.path} is open to group or others "
                f"(mode {mode:o}): chmod 600 it"
            )
        raw = self.path.read_bytes()
        if raw.startswith(_SEALED) != (self._sealer is not None):
            raise PoolStateError(
                f"authentication pool {self.path} is sealed; set storage.key_store_key_file "
                "to its key file"
                if raw.startswith(_SEALED)
                else f"authentication pool {self.path} is in clear while a key store key is "
                "set: it cannot be sealed afterwards (start a new store and pool)"
            )
        if self._sealer is not None:
            try:
                raw = self._sealer.open(raw[len(_SEALED) :], self._aad())
            except SealError:
                raise PoolStateError(
                    f"authentication pool {self.path}: the key file does not open it "
                    "(another key, or the file was altered)"
                ) from None
        try:
            state = json.loads(raw)
            if state.get("format") != _FORMAT or state.get("role") != self.role:
                raise ValueError(f"not a {self.role} pool of format {_FORMAT}")
            self.seed_id = str(state["seed_id"])
            self.refills = int(state["refills"])
            self.recent = list(state["recent"])
            for d in ("ab", "ba"):
                self.keys[d] = DirectionKeys.from_bytes(bytes.fromhex(state["keys"][d]))
                raw = state["streams"][d]
                base, floor = int(raw["base"]), int(raw["floor"])
                s = PadStream(base=base, data=bytearray.fromhex(raw["pads"]), floor=floor)
                # Until a session starts, nothing below the floor is usable.
                s.start = s.next = s.low = max(floor, base)
                self.streams[d] = s
        except (ValueError, KeyError, TypeError) as exc:
            raise PoolStateError(f"authentication pool {self.path}: unreadable ({exc})") from None

    def _aad(self) -> bytes:
        return f"labctl authpool {self.role}".encode()

    def _first_usable(self, d: Direction) -> int:
        s = self.streams[d]
        return max(s.next, s.start) if self._sends(d) else max(s.low, s.start)

    def _sends(self, d: Direction) -> bool:
        return (d == "ab") == (self.role == "alice")

    # ----- sessions
    def state(self) -> dict[str, Any]:
        """What the peer needs to start a session with this pool (no secrets)."""
        last = self.recent[-1]["key_id"] if self.recent else None
        return {
            "mode": "wegman-carter",
            "seed_id": self.seed_id,
            "refills": self.refills,
            "last_refill": last,
            "floor": {d: max(s.floor, s.start) for d, s in self.streams.items()},
        }

    def begin_session(self, alice: Mapping[str, Any], bob: Mapping[str, Any]) -> None:
        """Both ends call this with both ends' :meth:`state` (taken before either call)."""
        mine, theirs = (alice, bob) if self.role == "alice" else (bob, alice)
        if theirs.get("mode") != "wegman-carter":
            raise PoolStateError(
                f"the peer authenticates with {theirs.get('mode')!r}, this node with "
                "wegman-carter: set the same qkd.auth at both ends"
            )
        if theirs.get("seed_id") != self.seed_id:
            raise PoolStateError(
                "the two nodes' authentication pools come from different pre-shared keys"
            )
        common = min(int(mine["refills"]), int(theirs["refills"]))
        if self.refills > common:
            self._cut_to(common, theirs.get("last_refill"))
        elif int(theirs["refills"]) == self.refills and mine.get("last_refill") != theirs.get(
            "last_refill"
        ):
            raise PoolStateError("authentication pools refilled from different keys")
        for d in ("ab", "ba"):
            s = self.streams[d]
            start = max(int(alice["floor"][d]), int(bob["floor"][d]), s.floor, s.base)
            s.start = s.next = s.low = start
            s.used.clear()
            s.floor = max(s.floor, start)
        self._session = True
        self.save()

    def _cut_to(self, refills: int, their_last: Any) -> None:
        kept = [r for r in self.recent if int(r["n"]) <= refills]
        dropped = [r for r in self.recent if int(r["n"]) > refills]
        if len(dropped) != self.refills - refills or (
            refills > 0 and (not kept or kept[-1]["key_id"] != their_last)
        ):
            raise PoolStateError(
                f"authentication pools out of step: this node has {self.refills} refills, "
                f"the peer {refills}, and the difference cannot be undone"
            )
        for d in ("ab", "ba"):
            self.streams[d].truncate(int(dropped[0]["slots"][d][0]))
        self.recent = kept
        self.refills = refills

    # ----- slots
    def _reserve(self, s: PadStream, index: int) -> None:
        if index >= s.floor:
            s.floor = index + RESERVE_SLOTS
            self.save()  # on disk before the slot is used

    def take(self, d: Direction) -> tuple[int, bytes]:
        """Sender: (slot, pad) of the next slot of direction ``d``."""
        self._check_session()
        s = self.streams[d]
        index = max(s.next, s.start)
        if index >= s.end:
            raise KeyPoolExhausted(
                f"authentication key pool {d} exhausted at slot {index} (refilled up to "
                f"{s.end}): no key is stored until it is refilled"
            )
        self._reserve(s, index)
        s.next = index + 1
        self.slots_used += 1
        return index, s.slot(index)

    async def take_named(self, d: Direction, index: int, timeout_s: float) -> bytes:
        """Receiver: the pad of slot ``index`` (once), waiting for a refill up to ``timeout_s``."""
        self._check_session()
        s = self.streams[d]
        if index < s.start or index < s.low or index in s.used:
            raise AuthenticationError(
                f"checkpoint names pad slot {index} of {d}, already used or before this "
                f"session (from {s.start}): a replayed checkpoint"
            )
        if index >= s.end + MAX_AHEAD_SLOTS:
            raise KeyPoolExhausted(
                f"checkpoint names pad slot {index} of {d}, far beyond the pool (up to {s.end})"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while index >= s.end:
            left = deadline - loop.time()
            event = self._refilled
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                raise KeyPoolExhausted(
                    f"authentication key pool {d}: checkpoint names slot {index}, the pool "
                    f"holds up to {s.end} after {timeout_s:g} s: exhausted or out of step"
                ) from None
        self._reserve(s, index)
        s.used.add(index)
        while s.low in s.used:
            s.used.remove(s.low)
            s.low += 1
        self.slots_used += 1
        return s.slot(index)

    def _check_session(self) -> None:
        if not self._session:
            raise PoolStateError("authentication pool used before a session was started")

    def available(self, d: Direction) -> int:
        """Slots not yet used in direction ``d``."""
        return self.streams[d].end - self._first_usable(d)

    def refill_request(self, target_slots: int, key_bits: int) -> dict[str, int]:
        """Bob: slots per direction to top both up to ``target_slots`` from a key of
        ``key_bits`` (at least one byte of the key is left as key)."""
        budget = max((key_bits - 8) // (8 * SLOT_BYTES), 0)
        want = {d: max(target_slots - self.available(d), 0) for d in ("ab", "ba")}
        ab = min(want["ab"], budget)
        return {"ab": ab, "ba": min(want["ba"], budget - ab)}

    def refill(self, key_id: str, slots: Mapping[str, int], material: bytes) -> None:
        """Append ``material`` (slots["ab"] then slots["ba"] slots of generated key)."""
        n_ab, n_ba = int(slots.get("ab", 0)), int(slots.get("ba", 0))
        if len(material) != (n_ab + n_ba) * SLOT_BYTES:
            raise ValueError("AuthPool.refill: material does not match the slot counts")
        if n_ab + n_ba == 0:
            return
        self.refills += 1
        record: dict[str, Any] = {"n": self.refills, "key_id": key_id, "slots": {}}
        offset = 0
        counts: tuple[tuple[Direction, int], ...] = (("ab", n_ab), ("ba", n_ba))
        for d, n in counts:
            s = self.streams[d]
            at = max(s.end, s.start)
            s.append(at, material[offset : offset + n * SLOT_BYTES])
            record["slots"][d] = [at, n]
            offset += n * SLOT_BYTES
        self.recent = [*self.recent, record][-_RECENT_REFILLS:]
        self.refill_bits += 8 * len(material)
        self.save()
        self._refilled.set()
        self._refilled = asyncio.Event()

    @property
    def eps_auth(self) -> float:
        """Union bound over the checkpoints tagged and checked by this end this session."""
        return (self.checks_sent + self.checks_verified) * EPS_PER_CHECK


def _sync_directory(directory: Path) -> None:
    """The rename of the pool file reaches the disk too (a new floor must survive a power
    loss; best effort where directories cannot be opened). labctl.store imports
    labctl.qkd, so its atomic-write helper is not used here."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def seed_id_of(psk: bytes) -> str:
    """The public name of the pool a pre-shared key seeds (see :meth:`AuthPool.state`)."""
    return _seed_id(psk_parts(psk)[0])


def _seed_id(hmac_key: bytes) -> str:
    """A public name of the pre-shared key, from its HMAC part only: the pool's bytes must
    not feed anything an unbounded adversary sees."""
    return hmac.new(hmac_key, b"labctl auth pool id", hashlib.sha256).hexdigest()[:16]


def _element(pad: bytes) -> int:
    return int.from_bytes(pad, "big") & PRIME


class TranscriptAuthenticator:
    """One channel end's transcripts (sent, received) and checkpoint tags over a pool."""

    def __init__(self, pool: AuthPool) -> None:
        self.pool = pool
        self._out: Direction = "ab" if pool.role == "alice" else "ba"
        self._in: Direction = "ba" if pool.role == "alice" else "ab"
        self.sent = StreamHash(pool.keys[self._out].lanes)
        self.received = StreamHash(pool.keys[self._in].lanes)

    def __repr__(self) -> str:
        return f"TranscriptAuthenticator({self.pool!r})"

    @staticmethod
    def _feed(stream: StreamHash, body: bytes | memoryview) -> None:
        if stream.total_bytes + 8 + len(body) > TRANSCRIPT_CAP_BYTES:
            raise AuthenticationError(
                f"transcript exceeds {TRANSCRIPT_CAP_BYTES} bytes without a checkpoint"
            )
        stream.update(len(body).to_bytes(8, "big"))
        stream.update(body)

    def on_send(self, body: bytes | memoryview) -> None:
        """A frame body about to be sent."""
        self._feed(self.sent, body)

    def on_receive(self, body: bytes | memoryview) -> None:
        """A frame body received (its HMAC checked)."""
        self._feed(self.received, body)

    def checkpoint(self) -> bytes:
        """The checkpoint payload: slot (8 bytes) and tag (16 bytes) of the sent transcript."""
        digest, _ = poly_hash(self.pool.keys[self._out].outer, self.sent.digest())
        index, pad = self.pool.take(self._out)
        self.pool.checks_sent += 1
        tag = (digest + _element(pad)) % PRIME
        return index.to_bytes(8, "big") + tag.to_bytes(16, "big")

    async def check(self, payload: bytes, timeout_s: float) -> None:
        """Check a checkpoint against the received transcript (AuthenticationError if not)."""
        if len(payload) != 24:
            raise AuthenticationError(f"checkpoint of {len(payload)} bytes (expected 24)")
        index = int.from_bytes(payload[:8], "big")
        digest, _ = poly_hash(self.pool.keys[self._in].outer, self.received.digest())
        pad = await self.pool.take_named(self._in, index, timeout_s)
        self.pool.checks_verified += 1
        expected = ((digest + _element(pad)) % PRIME).to_bytes(16, "big")
        if not hmac.compare_digest(expected, payload[8:]):
            raise AuthenticationError(
                "Wegman-Carter checkpoint failed: the transcript received differs from the one sent"
            )


def pool_path(key_store: Path) -> Path:
    """The pool file beside a node's key store: ``keys-alice.sqlite`` -> ``keys-alice.authpool``."""
    return Path(key_store).with_suffix(".authpool")


def open_local_pair(
    alice_store: Path, bob_store: Path, encryption_key: bytes | None = None
) -> tuple[AuthPool, AuthPool]:
    """Both ends' pools in one process (the main job), a session begun.

    The first run seeds both from one fresh random pre-shared key (the two ends share this
    process's memory); later runs continue from the files. One file without the other is
    an error: seeding again would reuse pads.
    """
    paths = (pool_path(alice_store), pool_path(bob_store))
    present = [p.exists() for p in paths]
    if any(present) and not all(present):
        missing = paths[present.index(False)]
        raise PoolStateError(
            f"authentication pool {missing} is missing while its peer's exists: remove both "
            "to start over with a new pre-shared key"
        )
    psk = None if all(present) else os.urandom(4096)
    alice = AuthPool.open(paths[0], "alice", psk, encryption_key)
    bob = AuthPool.open(paths[1], "bob", psk, encryption_key)
    a_state, b_state = alice.state(), bob.state()
    alice.begin_session(a_state, b_state)
    bob.begin_session(a_state, b_state)
    return alice, bob

"""What Alice's and Bob's nodes share: message helpers, the block result, the node base.

See :mod:`labctl.link.nodes` for the per-block protocol.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from labctl.link.pipeline import CommitSequencer
from labctl.link.profile import StageProfile, TimedChannel
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.channel import AuthenticatedChannel
from labctl.qkd.auth.transcript import SLOT_BYTES, AuthPool, TranscriptAuthenticator
from labctl.qkd.errors import MessageFormatError
from labctl.qkd.estimation.finite_key import DecoyProtocol
from labctl.qkd.secret import SecretBits
from labctl.qkd.sifting import SiftedKey
from labctl.runner.heap import HeapTrimmer
from labctl.store.keystore import KeyStore

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

HEAP = HeapTrimmer()
"""One per process, shared by every node in it: the C heap is given back after blocks
(without it RSS grew 6-19 MB per 1e8-pulse block of configs/sim.yaml, see heap.py)."""


class AliceSource(Protocol):
    """Alice's own record of what she sent: any pulse's basis, bit and intensity class."""

    def choices(self, pulse_index: I64) -> tuple[U8, U8, U8]:
        """(basis, bit, intensity class) of each pulse; intensity NOT_SENT for a pulse that
        carried no state (its detection is a dark count and is discarded)."""
        ...

    def intensities(self) -> list[tuple[float, float]]:
        """(mean photon number, probability) of each intensity class, by class code."""
        ...

    def one_shot(self, first_pulse: int, pulses: int) -> bool:
        """True when every state of the block was played once (a repeat is no secret)."""
        ...

    def release(self, first_pulse: int, pulses: int) -> None:
        """The block is served: its states need not be kept."""
        ...


@dataclass(frozen=True)
class BlockResult:
    """What one block produced (no key material): the per-block event payload."""

    block: int
    status: str
    """'key' (stored), 'no-key' (discarded by threshold or bounds) or 'failed'."""
    reason: str
    pulses: int
    detections: int
    sifted_bits: int
    key_basis_bits: int
    test_basis_bits: int
    qber_z: float | None
    qber_x: float | None
    disclosed_bits: int
    ec_efficiency: float | None
    round_trips: int
    channel_uses: int
    secret_bits: int
    key_id: str | None
    acquired_s: float
    phi_x: float | None = None
    auth_key_bits: int = 0
    """Bits of this block's key moved to the authentication pool (not stored as key)."""
    detections_by_class: tuple[int, ...] = ()
    """Bob's detections per intensity class code (from Alice's sift reply; () if unknown)."""

    def event(self) -> dict[str, Any]:
        """The JSON-able per-block event (rates included)."""
        data = asdict(self)
        data["key_rate_per_pulse"] = self.secret_bits / self.pulses if self.pulses else 0.0
        data["secret_key_rate_bps"] = self.secret_bits / self.acquired_s if self.acquired_s else 0.0
        return data


def to_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, allow_nan=False).encode()


def parse_json(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageFormatError(f"{what}: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise MessageFormatError(f"{what}: expected a JSON object")
    return data


def pack_bits(bits: U8) -> bytes:
    return bytes(np.packbits(bits).tobytes())


def unpack_bits(data: bytes, n: int, what: str) -> U8:
    if len(data) != (n + 7) // 8:
        raise MessageFormatError(f"{what}: {len(data)} bytes do not hold {n} bits")
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n)


def decoy_protocol(intensities: Sequence[tuple[float, float]]) -> tuple[DecoyProtocol, list[int]]:
    """Lim et al.'s protocol (mu1 > mu2 > mu3) and the class codes in that order."""
    if len(intensities) != 3:
        raise ValueError(
            f"finite-key estimation needs three intensity classes, got {len(intensities)}"
        )
    order = sorted(range(3), key=lambda k: -intensities[k][0])
    mus = tuple(intensities[k][0] for k in order)
    probs = tuple(intensities[k][1] for k in order)
    return DecoyProtocol((mus[0], mus[1], mus[2]), (probs[0], probs[1], probs[2])), order


class NodeBase:
    """A party's channel, store and settings; counts messages and profiles stages."""

    def __init__(
        self,
        channel: AuthenticatedChannel,
        store: KeyStore,
        settings: KeygenSettings,
        run_id: str | None,
        sequencer: CommitSequencer | None = None,
    ) -> None:
        self.profile = StageProfile()
        # Typed as the channel it wraps: Cascade's link code takes an AuthenticatedChannel.
        self.channel = cast(AuthenticatedChannel, TimedChannel(channel, self.profile))
        self.store = store
        self.settings = settings
        self.run_id = run_id
        self.sequencer = sequencer
        """Shared by the nodes of one party when several blocks are in flight (workers)."""
        self.messages = 0
        transcript = getattr(channel, "transcript", None)
        self.pool: AuthPool | None = (
            transcript.pool if isinstance(transcript, TranscriptAuthenticator) else None
        )
        """The Wegman-Carter key pool (None: HMAC only)."""

    async def send(self, kind: str, payload: bytes) -> None:
        await self.channel.send(kind, payload)
        self.messages += 1

    async def recv(self, kind: str) -> bytes:
        message = await self.channel.recv(expect=kind, timeout_s=self.settings.channel_timeout_s)
        self.messages += 1
        return message.payload

    async def commit_turn(self, seq: int | None) -> None:
        """Wait until every earlier block is stored or ended (no-op without a sequence)."""
        if seq is not None and self.sequencer is not None:
            await self.sequencer.wait_turn(seq)

    def block_done(self, seq: int | None) -> None:
        """This block is stored, ended without key, or failed: later blocks may commit."""
        if seq is not None and self.sequencer is not None:
            self.sequencer.done(seq)
        self.profile.end_block()
        HEAP.maybe_trim()


def split_for_pool(final: SecretBits, slots: dict[str, int]) -> tuple[bytes, SecretBits]:
    """(pool material, key to store): the first slots["ab"] + slots["ba"] pad slots of a
    block's final key go to the authentication pool, the rest is key."""
    n_bits = 8 * SLOT_BYTES * (int(slots.get("ab", 0)) + int(slots.get("ba", 0)))
    if not 0 <= n_bits < len(final):
        raise MessageFormatError(
            f"key/stored: {n_bits} bits for the authentication pool leave no key of "
            f"{len(final)} bits"
        )
    bits = final.bits
    material = bytes(np.packbits(bits[:n_bits]).tobytes())
    return material, SecretBits.adopt(bits[n_bits:].copy())


def parse_slots(data: dict[str, Any]) -> dict[str, int]:
    """The ``auth_slots`` of a key/stored message ({} when absent)."""
    raw = data.get("auth_slots") or {}
    if not isinstance(raw, dict):
        raise MessageFormatError("key/stored: auth_slots must be an object")
    out: dict[str, int] = {}
    for d in ("ab", "ba"):
        n = raw.get(d, 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise MessageFormatError(f"key/stored: auth_slots.{d} must be an integer >= 0")
        out[d] = n
    return out


def key_and_test(sifted: SiftedKey, key_basis: int) -> tuple[SiftedKey, SiftedKey]:
    """A sifted block's key-basis bits (reconciled into key) and test-basis bits (the QBER
    estimate), each a copy: ``sifted`` can be let go."""
    in_key = sifted.basis == key_basis
    return sifted.select(in_key), sifted.select(~in_key)


def intensity_counts(
    key: SiftedKey, test: SiftedKey, bob_test: U8, order: list[int]
) -> tuple[
    tuple[float, float, float], tuple[tuple[float, float, float], tuple[float, float, float]], float
]:
    """Key-basis detections and test-basis (detections, errors) per intensity, in Lim order."""
    key_n = np.bincount(key.intensity, minlength=3)
    test_n = np.bincount(test.intensity, minlength=3)
    errors = test.bits.bits != bob_test
    test_e = np.bincount(test.intensity[errors], minlength=3)
    qber_x = float(errors.mean()) if errors.size else 0.0

    def ordered(values: npt.NDArray[np.int64]) -> tuple[float, float, float]:
        return (float(values[order[0]]), float(values[order[1]]), float(values[order[2]]))

    return ordered(key_n), (ordered(test_n), ordered(test_e)), qber_x

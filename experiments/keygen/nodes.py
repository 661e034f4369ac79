"""Alice and Bob nodes: one block of post-processing, message by message, over the channel.

The two nodes share nothing but an :class:`~labctl.qkd.auth.AuthenticatedChannel`, so the
same code runs in one process (memory transport) or in two (TCP). Bob drives. Per block:

1. ``block/start`` (B->A) block number and window; ``sift/announce`` (B->A) indices and bases;
   ``sift/reply`` (A->B) basis match and intensity class of each detection.
2. ``estimate/test-bits`` (B->A): Bob's test-basis bits (public, discarded afterwards);
   ``estimate/result`` (A->B): per-intensity counts, test-basis QBER, go / no-go.
3. ``cascade/schedule`` (B->A) seed and QBER estimate, then Cascade (cascade_link).
4. ``verify/tag`` (A->B) Toeplitz hash tag; ``verify/result`` (B->A) match and corrections.
5. ``pa/seed`` (A->B) key id, secret length from the finite-key bound, Toeplitz seed — or
   ``pa/none`` with the reason; ``key/stored`` (B->A) once Bob's store holds the key, then
   Alice stores it: both stores hold the same bits under the same UUID.

Safety: a block whose QBER passes ``qber_max``, or whose bounds leave no key, ends at
step 2 or 5 with no key stored. An AuthenticationError propagates: the caller stops key
output for good (the channel refuses all further traffic).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from experiments.keygen.acquisition import RawBlock
from experiments.keygen.settings import KeygenSettings
from labctl.qkd import cascade_link
from labctl.qkd.auth import AuthenticatedChannel
from labctl.qkd.cascade_schedule import CascadeSchedule
from labctl.qkd.entropy import binary_entropy
from labctl.qkd.errors import MessageFormatError
from labctl.qkd.finite_key import BasisCounts, DecoyProtocol, secret_key_length
from labctl.qkd.privacy import privacy_amplify, random_seed, seed_length
from labctl.qkd.sifting import BasisAnnouncement, SiftedKey, SiftReply, answer, sift_alice, sift_bob
from labctl.qkd.verification import VerificationTag, make_tag, tags_match
from labctl.store.keystore import KeyStore

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


class AliceSource(Protocol):
    """Alice's own record of what she sent: any pulse's basis, bit and intensity class."""

    def choices(self, pulse_index: I64) -> tuple[U8, U8, U8]:
        """(basis, bit, intensity class) of each pulse."""
        ...

    def intensities(self) -> list[tuple[float, float]]:
        """(mean photon number, probability) of each intensity class, by class code."""
        ...


class WorldSource:
    """AliceSource of a simulated station: the world's counter-based pulse pattern."""

    def __init__(self, world: Any) -> None:
        self._world = world

    def choices(self, pulse_index: I64) -> tuple[U8, U8, U8]:
        """(basis, bit, intensity class) of each pulse."""
        pattern = self._world.alice_pattern(pulse_index)
        return pattern.basis, pattern.bit, pattern.intensity

    def intensities(self) -> list[tuple[float, float]]:
        """(mu, probability) per class; mu scaled by the laser power Alice set."""
        source = self._world.optics.source
        mus = [float(m) for m in source.mu]
        return [
            (mu, float(c.probability))
            for mu, c in zip(mus, source.settings.intensities, strict=True)
        ]


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

    def event(self) -> dict[str, Any]:
        """The JSON-able per-block event (rates included)."""
        data = asdict(self)
        data["key_rate_per_pulse"] = self.secret_bits / self.pulses if self.pulses else 0.0
        data["secret_key_rate_bps"] = self.secret_bits / self.acquired_s if self.acquired_s else 0.0
        return data


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, allow_nan=False).encode()


def _parse(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageFormatError(f"{what}: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise MessageFormatError(f"{what}: expected a JSON object")
    return data


def _pack(bits: U8) -> bytes:
    return bytes(np.packbits(bits).tobytes())


def _unpack(data: bytes, n: int, what: str) -> U8:
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


class _Node:
    def __init__(
        self,
        channel: AuthenticatedChannel,
        store: KeyStore,
        settings: KeygenSettings,
        run_id: str | None,
    ) -> None:
        self.channel = channel
        self.store = store
        self.settings = settings
        self.run_id = run_id
        self.messages = 0

    async def send(self, kind: str, payload: bytes) -> None:
        await self.channel.send(kind, payload)
        self.messages += 1

    async def recv(self, kind: str) -> bytes:
        message = await self.channel.recv(expect=kind, timeout_s=self.settings.channel_timeout_s)
        self.messages += 1
        return message.payload


class BobNode(_Node):
    """Bob: drives each block from his detections."""

    def __init__(
        self,
        channel: AuthenticatedChannel,
        store: KeyStore,
        settings: KeygenSettings,
        run_id: str | None = None,
    ) -> None:
        super().__init__(channel, store, settings, run_id)
        self.qber_estimate: float | None = None

    async def process(self, raw: RawBlock) -> BlockResult:
        """Post-process one block with Alice; stores the key when there is one."""
        start_messages = self.messages
        det = raw.detections
        await self.send(
            "block/start",
            _json(
                {
                    "block": raw.block,
                    "first_pulse": raw.first_pulse,
                    "pulses": raw.pulses,
                    "run_id": self.run_id,
                }
            ),
        )
        announcement = BasisAnnouncement(det.pulse_index, det.basis)
        await self.send("sift/announce", announcement.to_bytes())
        reply = SiftReply.from_bytes(await self.recv("sift/reply"))
        sifted = await asyncio.to_thread(sift_bob, det, reply)
        key_mask = sifted.basis == self.settings.key_basis
        key, test = sifted.select(key_mask), sifted.select(~key_mask)
        await self.send("estimate/test-bits", _pack(test.bits.bits))
        estimate = _parse(await self.recv("estimate/result"), "estimate/result")
        base: dict[str, Any] = dict(
            block=raw.block,
            pulses=raw.pulses,
            detections=len(det),
            sifted_bits=len(sifted),
            key_basis_bits=len(key),
            test_basis_bits=len(test),
            qber_x=estimate.get("qber_x"),
            acquired_s=raw.acquired_s,
        )
        if not estimate["proceed"]:
            return self._no_key(base, str(estimate["reason"]), start_messages)
        qber_guess = (
            self.qber_estimate if self.qber_estimate is not None else float(estimate["qber_x"])
        )
        seed = secrets.randbelow(2**63)
        qber_guess = min(max(qber_guess, 0.0), 0.25)
        await self.send("cascade/schedule", _json({"seed": seed, "qber": qber_guess}))
        schedule = CascadeSchedule.create(len(key), qber_guess, seed, self.settings.cascade)  # type: ignore[arg-type]
        outcome = await cascade_link.run_bob(self.channel, key.bits, schedule)
        self.messages += 2 * outcome.stats.round_trips + 1
        stats = outcome.stats
        qber_z = stats.corrected_bits / len(key) if len(key) else 0.0
        tag = VerificationTag.from_bytes(await self.recv("verify/tag"))
        match = await asyncio.to_thread(tags_match, outcome.key, tag)
        verdict = {
            "match": match,
            "corrected_bits": stats.corrected_bits,
            "disclosed_bits": stats.disclosed_bits,
        }
        await self.send("verify/result", _json(verdict))
        self.qber_estimate = qber_z
        h = binary_entropy(qber_z) if 0.0 < qber_z < 0.5 else 0.0
        base.update(
            qber_z=qber_z,
            disclosed_bits=stats.disclosed_bits,
            ec_efficiency=stats.disclosed_bits / (len(key) * h) if h > 0 else None,
            round_trips=stats.round_trips,
        )
        if not match:
            return self._no_key(
                base, "verification failed: keys differ after Cascade", start_messages
            )
        decision = await self.recv_decision()
        if decision is None:
            return self._no_key(base, str(self._last_reason), start_messages)
        key_id, secret_bits, pa_seed, phi_x = decision
        final = await asyncio.to_thread(privacy_amplify, outcome.key, secret_bits, pa_seed)
        self.store.add(final, key_id=key_id, run_id=self.run_id, block=raw.block)
        await self.send("key/stored", _json({"key_id": key_id}))
        return BlockResult(
            **base,
            status="key",
            reason="stored",
            channel_uses=self.messages - start_messages,
            secret_bits=secret_bits,
            key_id=key_id,
            phi_x=phi_x,
        )

    _last_reason: str = ""

    async def recv_decision(self) -> tuple[str, int, U8, float] | None:
        """Alice's privacy-amplification decision: (key id, length, seed, phi_x) or None."""
        message = await self.channel.recv(timeout_s=self.settings.channel_timeout_s)
        self.messages += 1
        if message.kind == "pa/none":
            self._last_reason = str(_parse(message.payload, "pa/none")["reason"])
            return None
        if message.kind != "pa/seed":
            raise MessageFormatError(f"expected pa/seed or pa/none, got {message.kind!r}")
        head_len = int.from_bytes(message.payload[:4], "big")
        head = _parse(message.payload[4 : 4 + head_len], "pa/seed")
        n_seed = int(head["seed_bits"])
        seed = _unpack(message.payload[4 + head_len :], n_seed, "pa/seed")
        return str(uuid.UUID(head["key_id"])), int(head["secret_bits"]), seed, float(head["phi_x"])

    def _no_key(self, base: dict[str, Any], reason: str, start_messages: int) -> BlockResult:
        values: dict[str, Any] = dict(
            qber_z=None, disclosed_bits=0, ec_efficiency=None, round_trips=0, phi_x=None
        )
        values.update(base)
        return BlockResult(
            **values,
            status="no-key",
            reason=reason,
            channel_uses=self.messages - start_messages,
            secret_bits=0,
            key_id=None,
        )

    async def close(self) -> None:
        """Tell Alice there are no more blocks."""
        await self.send("link/close", b"")


class AliceNode(_Node):
    """Alice: answers Bob from her own record of the pulses she sent."""

    def __init__(
        self,
        channel: AuthenticatedChannel,
        store: KeyStore,
        settings: KeygenSettings,
        source: AliceSource,
        run_id: str | None = None,
    ) -> None:
        super().__init__(channel, store, settings, run_id)
        self.source = source

    async def serve(self) -> list[BlockResult]:
        """Serve blocks until Bob closes the link; returns Alice's view of every block."""
        results: list[BlockResult] = []
        while True:
            message = await self.channel.recv(timeout_s=self.settings.channel_timeout_s)
            self.messages += 1
            if message.kind == "link/close":
                return results
            if message.kind != "block/start":
                raise MessageFormatError(f"expected block/start, got {message.kind!r}")
            results.append(await self.serve_block(_parse(message.payload, "block/start")))

    async def serve_block(self, start: dict[str, Any]) -> BlockResult:
        """Alice's side of one block (after ``block/start``)."""
        start_messages = self.messages - 1
        announcement = BasisAnnouncement.from_bytes(await self.recv("sift/announce"))
        idx = announcement.pulse_index
        first, pulses = int(start["first_pulse"]), int(start["pulses"])
        if idx.size and (int(idx[0]) < first or int(idx[-1]) >= first + pulses):
            raise MessageFormatError("sift/announce: a pulse index lies outside the block window")
        basis, bit, intensity = await asyncio.to_thread(self.source.choices, idx)
        reply = answer(announcement, basis, intensity)
        await self.send("sift/reply", reply.to_bytes())
        sifted = sift_alice(announcement, reply, bit)
        key_mask = sifted.basis == self.settings.key_basis
        key, test = sifted.select(key_mask), sifted.select(~key_mask)
        bob_test = _unpack(await self.recv("estimate/test-bits"), len(test), "estimate/test-bits")
        protocol, order = decoy_protocol(self.source.intensities())
        key_counts, test_counts, qber_x = _counts(key, test, bob_test, order)
        proceed, reason = True, "ok"
        if len(key) < 2 or len(test) == 0:
            proceed, reason = False, f"too few sifted bits (key {len(key)}, test {len(test)})"
        elif qber_x > self.settings.qber_max:
            proceed, reason = (
                False,
                f"test-basis QBER {qber_x:.4f} above qber_max {self.settings.qber_max}",
            )
        await self.send(
            "estimate/result", _json({"proceed": proceed, "reason": reason, "qber_x": qber_x})
        )
        base: dict[str, Any] = dict(
            block=int(start["block"]),
            pulses=pulses,
            detections=len(idx),
            sifted_bits=len(sifted),
            key_basis_bits=len(key),
            test_basis_bits=len(test),
            qber_x=qber_x,
            acquired_s=0.0,
        )
        if not proceed:
            return self._result(base, "no-key", reason, start_messages)
        plan = _parse(await self.recv("cascade/schedule"), "cascade/schedule")
        schedule = CascadeSchedule.create(
            len(key),
            float(plan["qber"]),
            int(plan["seed"]),
            self.settings.cascade,  # type: ignore[arg-type]
        )
        served = await cascade_link.serve_alice(self.channel, key.bits, schedule)
        self.messages += 2 * served + 1
        tag = make_tag(key.bits, self.settings.eps_cor)
        await self.send("verify/tag", tag.to_bytes())
        verdict = _parse(await self.recv("verify/result"), "verify/result")
        corrected = int(verdict["corrected_bits"])
        qber_z = corrected / len(key)
        base.update(qber_z=qber_z, round_trips=served)
        if not verdict["match"]:
            return await self._refuse(
                base, "verification failed: keys differ after Cascade", start_messages
            )
        if qber_z > self.settings.qber_max:
            return await self._refuse(
                base,
                f"key-basis QBER {qber_z:.4f} above qber_max {self.settings.qber_max}",
                start_messages,
            )
        # Bob counted the parity bits that crossed the channel (authenticated, so trusted).
        disclosed = int(verdict["disclosed_bits"])
        result = secret_key_length(
            BasisCounts(key_counts),
            BasisCounts(test_counts[0], test_counts[1]),
            protocol,
            eps_sec=self.settings.eps_sec,
            eps_cor=self.settings.eps_cor,
            leak_ec_bits=float(disclosed),
        )
        base.update(disclosed_bits=disclosed, phi_x=result.phi_x)
        if result.secret_bits <= 0:
            return await self._refuse(
                base,
                f"finite-key bound leaves no key (l = {result.raw_length:.0f})",
                start_messages,
            )
        key_id = str(uuid.uuid4())
        pa_seed = random_seed(seed_length(len(key), result.secret_bits))
        head = _json(
            {
                "key_id": key_id,
                "secret_bits": result.secret_bits,
                "seed_bits": int(pa_seed.size),
                "phi_x": result.phi_x,
            }
        )
        await self.send("pa/seed", len(head).to_bytes(4, "big") + head + _pack(pa_seed))
        final = await asyncio.to_thread(privacy_amplify, key.bits, result.secret_bits, pa_seed)
        stored = _parse(await self.recv("key/stored"), "key/stored")
        if stored.get("key_id") != key_id:
            raise MessageFormatError("key/stored: Bob acknowledged a different key id")
        # A remote Alice (labctl node alice) has no run of her own: she files keys under Bob's.
        run_id = self.run_id if self.run_id is not None else start.get("run_id")
        self.store.add(
            final,
            key_id=key_id,
            run_id=None if run_id is None else str(run_id),
            block=int(start["block"]),
        )
        out = self._result(base, "key", "stored", start_messages)
        return BlockResult(**{**asdict(out), "secret_bits": result.secret_bits, "key_id": key_id})

    async def _refuse(self, base: dict[str, Any], reason: str, start_messages: int) -> BlockResult:
        await self.send("pa/none", _json({"reason": reason}))
        return self._result(base, "no-key", reason, start_messages)

    def _result(
        self, base: dict[str, Any], status: str, reason: str, start_messages: int
    ) -> BlockResult:
        values: dict[str, Any] = dict(
            qber_z=None, disclosed_bits=0, ec_efficiency=None, round_trips=0, phi_x=None
        )
        values.update(base)
        return BlockResult(
            **values,
            status=status,
            reason=reason,
            channel_uses=self.messages - start_messages,
            secret_bits=0,
            key_id=None,
        )


def _counts(
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

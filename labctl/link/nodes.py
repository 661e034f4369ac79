"""Alice and Bob nodes: one block of post-processing, message by message, over the channel.

The two nodes share nothing but an :class:`~labctl.qkd.auth.channel.AuthenticatedChannel`, so the
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

Several blocks may be in flight on separate channels (``labctl.link.workers``):
``block/start`` then carries the block's commit sequence number and both parties store
keys in that order. Each node charges its CPU per stage to ``node.profile``
(``labctl.link.profile``).

Safety: a block whose QBER passes ``qber_max``, or whose bounds leave no key, ends at
step 2 or 5 with no key stored. An AuthenticationError propagates: the caller stops key
output for good (the channel refuses all further traffic).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import uuid
from typing import Any, Protocol

from labctl.interfaces.pattern import NOT_SENT
from labctl.link.alice import AliceNode
from labctl.link.block import RawBlock
from labctl.link.node_base import (
    U8,
    AliceSource,
    BlockResult,
    NodeBase,
    decoy_protocol,
    pack_bits,
    parse_json,
    split_for_pool,
    to_json,
    unpack_bits,
)
from labctl.link.pipeline import CommitSequencer
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.channel import AuthenticatedChannel
from labctl.qkd.cascade import link as cascade_link
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import MessageFormatError
from labctl.qkd.estimation.entropy import binary_entropy
from labctl.qkd.privacy.amplify import privacy_amplify
from labctl.qkd.secret import SecretBits
from labctl.qkd.sifting import BasisAnnouncement, Detections, SiftReply, class_counts, split_bob
from labctl.qkd.verification import VerificationTag, tags_match
from labctl.store.keystore import KeyStore

__all__ = [
    "AliceNode",
    "AliceSource",
    "BlockResult",
    "BobNode",
    "decoy_protocol",
]


class KeyGate(Protocol):
    """Decides, just before a block's key would be stored, whether it may be."""

    def verdict(self, result: BlockResult) -> str | None:
        """Why the key of ``result``'s block (its statistics so far) must not be stored,
        or None to store it."""
        ...


class BobNode(NodeBase):
    """Bob: drives each block from his detections."""

    def __init__(
        self,
        channel: AuthenticatedChannel,
        store: KeyStore,
        settings: KeygenSettings,
        run_id: str | None = None,
        sequencer: CommitSequencer | None = None,
    ) -> None:
        super().__init__(channel, store, settings, run_id, sequencer)
        self.qber_estimate: float | None = None
        self.key_gate: KeyGate | None = None
        """Asked before each key is stored; a reason means neither party stores it."""

    async def process(self, raw: RawBlock, seq: int | None = None) -> BlockResult:
        """Post-process one block with Alice; stores the key when there is one.

        ``seq`` (several blocks in flight) is the block's place in the commit order: its key
        is stored after every earlier block's, and Alice is told the same number.
        """
        try:
            return await self._process(raw, seq)
        finally:
            self.block_done(seq)

    async def _process(self, raw: RawBlock, seq: int | None) -> BlockResult:
        stage = self.profile.stage
        start_messages = self.messages
        # Sifting and estimation in their own frame, on detections taken from the block:
        # the per-detection arrays are freed before reconciliation, which runs beside the
        # next block's acquisition.
        base, estimate, key, n_test = await self._sift_and_estimate(raw, seq, raw.take_detections())
        if not estimate["proceed"]:
            return self._no_key(base, str(estimate["reason"]), start_messages)
        qber_x = float(estimate["qber_x"])
        qber_guess = self.qber_estimate if self.qber_estimate is not None else qber_x
        # The last block's estimate is the sharper guess, unless this block's test bits say
        # the link changed (an attack ended, a drift): Cascade then costs round trips.
        spread = 3.0 * math.sqrt(max(qber_x * (1.0 - qber_x), 1e-6) / max(n_test, 1))
        if abs(qber_guess - qber_x) > max(spread, 0.005):
            qber_guess = qber_x
        seed = secrets.randbelow(2**63)
        qber_guess = min(max(qber_guess, 0.0), 0.25)
        with stage("cascade"):
            await self.send("cascade/schedule", to_json({"seed": seed, "qber": qber_guess}))
            schedule = CascadeSchedule.create(len(key), qber_guess, seed, self.settings.cascade)
            outcome = await cascade_link.run_bob(self.channel, key, schedule)
        self.messages += 2 * outcome.stats.round_trips + 1
        stats = outcome.stats
        qber_z = stats.corrected_bits / len(key) if len(key) else 0.0
        with stage("verification"):
            tag_bytes = await self.recv("verify/tag")
            with stage("serialization"):
                tag = VerificationTag.from_bytes(tag_bytes)
            match = await asyncio.to_thread(tags_match, outcome.key, tag)
            verdict = {
                "match": match,
                "corrected_bits": stats.corrected_bits,
                "disclosed_bits": stats.disclosed_bits,
            }
            await self.send("verify/result", to_json(verdict))
            # Everything Bob sent so far (his detections' bases, test bits, parities, the
            # verdict) is checked by Alice before she decides on privacy amplification.
            await self.channel.send_checkpoint()
        self.qber_estimate = qber_z
        h = binary_entropy(qber_z) if 0.0 < qber_z < 0.5 else 0.0
        base.update(
            qber_z=qber_z,
            disclosed_bits=stats.disclosed_bits,
            ec_efficiency=stats.disclosed_bits / (len(key) * h) if h > 0 else None,
            round_trips=stats.round_trips,
        )
        if not match:
            # Alice answers a failed verification with pa/none: read it, or it would be
            # taken for the next block's first reply (the channel would fall out of step).
            if await self.recv_decision() is not None:
                raise MessageFormatError("pa/seed after a failed verification")
            return self._no_key(
                base, "verification failed: keys differ after Cascade", start_messages
            )
        with stage("pa"):
            decision = await self.recv_decision()
            if decision is None:
                return self._no_key(base, str(self._last_reason), start_messages)
            key_id, secret_bits, pa_seed, phi_x = decision
            # Everything Alice sent (her replies, Cascade parities, the seed) is checked
            # before a key depends on it.
            await self.channel.recv_checkpoint(self.settings.channel_timeout_s)
            judged = {**base, "phi_x": phi_x}
            held = None
            if self.key_gate is not None:
                held = self.key_gate.verdict(self._no_key(judged, "", start_messages))
            if held is not None:
                # Alice waits for key/stored or key/dropped: dropped, she keeps nothing either.
                await self.send("key/dropped", to_json({"seq": seq}))
                return self._no_key(judged, f"key output stopped: {held}", start_messages)
            final = await asyncio.to_thread(privacy_amplify, outcome.key, secret_bits, pa_seed)
        await self.commit_turn(seq)
        slots: dict[str, int] = {}
        material = b""
        if self.pool is not None:
            slots = self.pool.refill_request(self.settings.auth_pool_slots, len(final))
            material, final = split_for_pool(final, slots)
        with stage("key store"):
            self.store.add(final, key_id=key_id, run_id=self.run_id, block=raw.block)
        await self.send("key/stored", to_json({"key_id": key_id, "auth_slots": slots}))
        if self.pool is not None:
            # key/stored is checked by Alice before she stores; the refill comes after this
            # checkpoint's slot is taken, at both ends at the same point of the stream.
            await self.channel.send_checkpoint()
            self.pool.refill(key_id, slots, material)
        return BlockResult(
            **base,
            status="key",
            reason="stored",
            channel_uses=self.messages - start_messages,
            secret_bits=secret_bits,
            key_id=key_id,
            phi_x=phi_x,
            auth_key_bits=8 * len(material),
        )

    async def _sift_and_estimate(
        self, raw: RawBlock, seq: int | None, det: Detections
    ) -> tuple[dict[str, Any], dict[str, Any], SecretBits, int]:
        """Announce, sift and send the test bits: (result so far, Alice's estimate, key bits,
        test-basis bits)."""
        stage = self.profile.stage
        with stage("sifting"):
            with stage("serialization"):
                start = to_json(
                    {
                        "block": raw.block,
                        "first_pulse": raw.first_pulse,
                        "pulses": raw.window,
                        "sent": raw.pulses,
                        "run_id": self.run_id,
                        "seq": seq,
                    }
                )
                announce = BasisAnnouncement(det.pulse_index, det.basis).to_bytes()
            # Announced: the pulse indices (8 bytes a detection) are let go while Alice
            # answers, which overlaps the next block's acquisition.
            basis, bit, detections = det.basis, det.bit, len(det)
            del det
            await self.send("block/start", start)
            await self.send("sift/announce", announce)
            del announce
            reply_bytes = await self.recv("sift/reply")
            with stage("serialization"):
                reply = SiftReply.from_bytes(reply_bytes)
            del reply_bytes
            key, test = await asyncio.to_thread(
                split_bob, basis, bit, reply, self.settings.key_basis
            )
            detections_by_class = class_counts(reply.intensity, skip=NOT_SENT)
            del basis, bit, reply
            n_sifted = len(key) + len(test)
        with stage("estimation"):
            with stage("serialization"):
                test_bytes = pack_bits(test.bits)
            await self.send("estimate/test-bits", test_bytes)
            estimate_bytes = await self.recv("estimate/result")
            with stage("serialization"):
                estimate = parse_json(estimate_bytes, "estimate/result")
        base: dict[str, Any] = dict(
            block=raw.block,
            pulses=raw.pulses,
            detections=detections,
            sifted_bits=n_sifted,
            key_basis_bits=len(key),
            test_basis_bits=len(test),
            qber_x=estimate.get("qber_x"),
            acquired_s=raw.acquired_s,
            detections_by_class=detections_by_class,
        )
        return base, estimate, key, len(test)

    _last_reason: str = ""

    async def recv_decision(self) -> tuple[str, int, U8, float] | None:
        """Alice's privacy-amplification decision: (key id, length, seed, phi_x) or None."""
        message = await self.channel.recv(timeout_s=self.settings.channel_timeout_s)
        self.messages += 1
        with self.profile.stage("serialization"):
            if message.kind == "pa/none":
                self._last_reason = str(parse_json(message.payload, "pa/none")["reason"])
                return None
            if message.kind != "pa/seed":
                raise MessageFormatError(f"expected pa/seed or pa/none, got {message.kind!r}")
            head_len = int.from_bytes(message.payload[:4], "big")
            head = parse_json(message.payload[4 : 4 + head_len], "pa/seed")
            n_seed = int(head["seed_bits"])
            seed = unpack_bits(message.payload[4 + head_len :], n_seed, "pa/seed")
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

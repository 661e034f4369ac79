"""Alice's node: answers Bob, block by block, from her own record of the pulses she sent.

The protocol is described in :mod:`labctl.link.nodes` (Bob drives).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from labctl.interfaces.pattern import NOT_SENT
from labctl.link.node_base import (
    AliceSource,
    BlockResult,
    NodeBase,
    decoy_protocol,
    intensity_counts,
    key_and_test,
    pack_bits,
    parse_json,
    parse_slots,
    split_for_pool,
    to_json,
    unpack_bits,
)
from labctl.link.pipeline import CommitSequencer
from labctl.link.settings import KeygenSettings
from labctl.qkd.auth.channel import AuthenticatedChannel, Message
from labctl.qkd.cascade import link as cascade_link
from labctl.qkd.cascade.schedule import CascadeSchedule
from labctl.qkd.errors import AuthenticationError, ChannelClosed, MessageFormatError
from labctl.qkd.estimation.finite_key import BasisCounts, DecoyProtocol, secret_key_length
from labctl.qkd.privacy.amplify import privacy_amplify, random_seed, seed_length
from labctl.qkd.secret import SecretBits
from labctl.qkd.sifting import BasisAnnouncement, SiftReply, answer, sift_alice
from labctl.qkd.verification import make_tag
from labctl.store.keystore import KeyStore


class AliceNode(NodeBase):
    """Alice: answers Bob from her own record of the pulses she sent."""

    def __init__(
        self,
        channel: AuthenticatedChannel,
        store: KeyStore,
        settings: KeygenSettings,
        source: AliceSource,
        run_id: str | None = None,
        sequencer: CommitSequencer | None = None,
    ) -> None:
        super().__init__(channel, store, settings, run_id, sequencer)
        self.source = source

    async def serve(self, stop: asyncio.Event | None = None) -> list[BlockResult]:
        """Serve blocks until Bob closes the link; returns Alice's view of every block.

        Once ``stop`` is set (Ctrl-C/SIGTERM on Alice) no new block is taken: the block in
        hand is finished (each message within the channel timeout), then the channel is
        closed, which Bob sees as a failure of his next block on it: that block and every
        later one are dropped at both ends (``labctl.link.workers``).
        """
        results: list[BlockResult] = []
        while True:
            try:
                message = await self._next_message(stop)
            except ChannelClosed:
                if stop is not None and stop.is_set():
                    return results  # Bob closed first after Alice stopped: a clean end
                raise
            if message is None:  # stopped between blocks
                await self.channel.close()
                return results
            self.messages += 1
            if message.kind == "link/close":
                return results
            if message.kind != "block/start":
                raise MessageFormatError(f"expected block/start, got {message.kind!r}")
            results.append(await self.serve_block(parse_json(message.payload, "block/start")))

    async def _next_message(self, stop: asyncio.Event | None) -> Message | None:
        """Bob's next message between blocks, or None once ``stop`` is set."""
        timeout_s = self.settings.channel_timeout_s
        if stop is None:
            return await self.channel.recv(timeout_s=timeout_s)
        if stop.is_set():
            return None
        receiving = asyncio.ensure_future(self.channel.recv(timeout_s=timeout_s))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait((receiving, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not receiving.done():
                receiving.cancel()  # the channel is closed next: nothing on it is read again
        if stop.is_set():
            if receiving.done() and not receiving.cancelled():
                receiving.exception()  # retrieved: the channel is closed regardless
            return None
        return receiving.result()

    async def serve_block(self, start: dict[str, Any]) -> BlockResult:
        """Alice's side of one block (after ``block/start``)."""
        seq = start.get("seq")
        seq = None if seq is None else int(seq)
        try:
            return await self._serve_block(start, seq)
        finally:
            self.source.release(int(start.get("first_pulse", 0)), int(start.get("pulses", 0)))
            self.block_done(seq)

    async def _serve_block(self, start: dict[str, Any], seq: int | None) -> BlockResult:
        stage = self.profile.stage
        start_messages = self.messages - 1
        # Sifting and estimation in their own frame: the block's per-detection arrays are
        # freed before reconciliation, which runs beside the next block's acquisition.
        estimated = await self._sift_and_estimate(start)
        base = estimated.base
        if not estimated.proceed:
            return self._result(base, "no-key", estimated.reason, start_messages)
        key = estimated.key_bits
        n_key = len(key)
        with stage("cascade"):
            plan = parse_json(await self.recv("cascade/schedule"), "cascade/schedule")
            schedule = CascadeSchedule.create(
                n_key,
                float(plan["qber"]),
                int(plan["seed"]),
                self.settings.cascade,
            )
            served = await cascade_link.serve_alice(self.channel, key, schedule)
        self.messages += 2 * served + 1
        with stage("verification"):
            tag = make_tag(key, self.settings.eps_cor)
            await self.send("verify/tag", tag.to_bytes())
            verdict = parse_json(await self.recv("verify/result"), "verify/result")
            await self.channel.recv_checkpoint(self.settings.channel_timeout_s)
        corrected = int(verdict["corrected_bits"])
        qber_z = corrected / n_key
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
        with stage("finite key"):
            result = secret_key_length(
                BasisCounts(estimated.key_counts),
                BasisCounts(*estimated.test_counts),
                estimated.protocol,
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
        with stage("pa"):
            key_id = str(uuid.uuid4())
            pa_seed = random_seed(seed_length(n_key, result.secret_bits))
            with stage("serialization"):
                head = to_json(
                    {
                        "key_id": key_id,
                        "secret_bits": result.secret_bits,
                        "seed_bits": int(pa_seed.size),
                        "phi_x": result.phi_x,
                    }
                )
                seed_msg = len(head).to_bytes(4, "big") + head + pack_bits(pa_seed)
            await self.send("pa/seed", seed_msg)
            await self.channel.send_checkpoint()
            final = await asyncio.to_thread(privacy_amplify, key, result.secret_bits, pa_seed)
        # Bob's answer: key/stored (he holds the key: Alice stores it, whatever happens
        # next) or key/dropped (an earlier block failed: neither side keeps this key).
        ack = await self.channel.recv(timeout_s=self.settings.channel_timeout_s)
        self.messages += 1
        if ack.kind == "key/dropped":
            return self._result(base, "no-key", "dropped: an earlier block failed", start_messages)
        if ack.kind != "key/stored":  # as AuthenticatedChannel.recv(expect=...) treats it
            raise AuthenticationError(
                f"unexpected message kind {ack.kind!r}, expected 'key/stored' or 'key/dropped'"
            )
        await self.channel.recv_checkpoint(self.settings.channel_timeout_s)
        stored = parse_json(ack.payload, "key/stored")
        if stored.get("key_id") != key_id:
            raise MessageFormatError("key/stored: Bob acknowledged a different key id")
        slots = parse_slots(stored)
        material = b""
        if self.pool is not None:
            material, final = split_for_pool(final, slots)
        elif any(slots.values()):
            raise MessageFormatError("key/stored: Bob refills a Wegman-Carter pool, Alice has none")
        # A remote Alice (labctl node alice) has no run of her own: she files keys under Bob's.
        run_id = self.run_id if self.run_id is not None else start.get("run_id")
        await self.commit_turn(seq)
        with stage("key store"):
            self.store.add(
                final,
                key_id=key_id,
                run_id=None if run_id is None else str(run_id),
                block=int(start["block"]),
            )
        if self.pool is not None:
            self.pool.refill(key_id, slots, material)
        out = self._result(base, "key", "stored", start_messages)
        return BlockResult(
            **{
                **asdict(out),
                "secret_bits": result.secret_bits,
                "key_id": key_id,
                "auth_key_bits": 8 * len(material),
            }
        )

    async def _sift_and_estimate(self, start: dict[str, Any]) -> _Estimated:
        """Answer Bob's announcement, sift, and judge the test bits he sends."""
        stage = self.profile.stage
        with stage("sifting"):
            announce_bytes = await self.recv("sift/announce")
            with stage("serialization"):
                announcement = BasisAnnouncement.from_bytes(announce_bytes)
            del announce_bytes
            idx = announcement.pulse_index
            first, pulses = int(start["first_pulse"]), int(start["pulses"])
            if idx.size and (int(idx[0]) < first or int(idx[-1]) >= first + pulses):
                raise MessageFormatError(
                    "sift/announce: a pulse index lies outside the block window"
                )
            basis, bit, intensity = await asyncio.to_thread(self.source.choices, idx)
            # Her states of the block (1 byte a pulse) answer this message only: let them go
            # now, not after reconciliation, while the next block is being acquired.
            one_shot = self.source.one_shot(first, pulses)
            self.source.release(first, pulses)
            reply = answer(announcement, basis, intensity)
            sent = intensity != NOT_SENT
            if not sent.all():  # pulses that carried no state: their detections are darks
                reply = SiftReply(reply.match & sent, intensity)
            with stage("serialization"):
                reply_bytes = reply.to_bytes()
            await self.send("sift/reply", reply_bytes)
            sifted = sift_alice(announcement, reply, bit)
            detections = len(idx)
            # Bob sifts meanwhile and the next block is acquired: keep only the sifted bits.
            del announcement, idx, reply, basis, bit, intensity, sent
            key, test = key_and_test(sifted, self.settings.key_basis)
            n_sifted = len(sifted)
            del sifted
        with stage("estimation"):
            test_bytes = await self.recv("estimate/test-bits")
            with stage("serialization"):
                bob_test = unpack_bits(test_bytes, len(test), "estimate/test-bits")
            protocol, order = decoy_protocol(self.source.intensities())
            key_counts, test_counts, qber_x = intensity_counts(key, test, bob_test, order)
            proceed, reason = True, "ok"
            if not one_shot:
                proceed, reason = (
                    False,
                    "demonstration: the transmitter repeated states within the block",
                )
            elif len(key) < 2 or len(test) == 0:
                proceed, reason = False, f"too few sifted bits (key {len(key)}, test {len(test)})"
            elif qber_x > self.settings.qber_max:
                proceed, reason = (
                    False,
                    f"test-basis QBER {qber_x:.4f} above qber_max {self.settings.qber_max}",
                )
            await self.send(
                "estimate/result",
                to_json({"proceed": proceed, "reason": reason, "qber_x": qber_x}),
            )
        base: dict[str, Any] = dict(
            block=int(start["block"]),
            pulses=int(start.get("sent", pulses)),
            detections=detections,
            sifted_bits=n_sifted,
            key_basis_bits=len(key),
            test_basis_bits=len(test),
            qber_x=qber_x,
            acquired_s=0.0,
        )
        return _Estimated(base, proceed, reason, key.bits, protocol, key_counts, test_counts)

    async def _refuse(self, base: dict[str, Any], reason: str, start_messages: int) -> BlockResult:
        await self.send("pa/none", to_json({"reason": reason}))
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


@dataclass(frozen=True)
class _Estimated:
    """What reconciliation and the finite-key bound need of a sifted, estimated block."""

    base: dict[str, Any]
    proceed: bool
    reason: str
    key_bits: SecretBits
    protocol: DecoyProtocol
    key_counts: tuple[float, float, float]
    test_counts: tuple[tuple[float, float, float], tuple[float, float, float]]

"""The KME's rules, apart from HTTP: who may ask for what, and what each answer holds.

Roles (ETSI GS QKD 014): a *master* SAE asks its KME for keys to share with a *slave* SAE
(enc_keys), hands the key_IDs to the slave itself, and the slave asks its own KME for the
same keys by key_ID (dec_keys). Here the two KMEs are the two ends of one QKD link.

Why no key is served twice or to a third SAE:

- Only the allocator KME picks key material, from a cursor that only moves forward and is
  leased durably ahead (:mod:`labctl.kme.pool`); both KMEs also record every allocated byte
  range and refuse a range that overlaps one recorded before (:mod:`labctl.kme.ledger`).
- Before a master SAE sees a key, the slave's KME holds a reservation of its key_ID for
  exactly the named slave SAE (allocator as master's KME: it sends the reservation to the
  peer KME over mutual TLS and waits for the acknowledgement; the other KME as master's KME:
  it asks the allocator, which records the reservation on its side before answering). A
  peer failure answers 503 and the allocated bytes are never used.
- dec_keys serves only reserved key_IDs, only to the SAE they were reserved for, and deletes
  the reservation durably before the answer leaves; a second ask finds none.
- Only locations travel between KMEs, never key bytes; each KME reads the bytes from its own
  store, where the same ids hold the same bits.

Each delivery is logged at DEBUG (counts, sizes, SAE IDs; never a key): a busy KME answers
hundreds of requests a second. Refusals go back to the caller; the pool's low-water mark is
a WARNING.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from labctl.kme.commit import GroupCommit
from labctl.kme.config import KmeConfig
from labctl.kme.errors import KmeError, bad_request, server_error, unauthorized
from labctl.kme.ledger import Ledger, LedgerError, Reservation, Segment
from labctl.kme.messages import KeyRequest, Limits
from labctl.kme.pool import KeyPool, PoolError, key_id_for
from labctl.kme.relay import TAG_KEY_BITS, RelayError, RelayKey, RelayMessage, sign, verify, xor

log = logging.getLogger(__name__)


class PeerLink(Protocol):
    """The channel to the other KME of the link (see :mod:`labctl.kme.peer`)."""

    async def reserve(self, reservations: list[Reservation]) -> None:
        """Have the peer hold ``reservations`` for their slave SAEs (KmeError 503 if not)."""

    async def allocate(
        self, master: str, slaves: list[str], number: int, size_bits: int
    ) -> list[Reservation]:
        """Have the allocator pick and reserve keys for slaves on its side."""

    async def relay(self, message: RelayMessage) -> None:
        """Hand the peer a relay message (see :mod:`labctl.kme.relay`); KmeError if refused."""


class RelayEvents(Protocol):
    """Told of each relay this KME takes part in (counts and IDs, never key bytes)."""

    def relayed(self, role: str, message: RelayMessage) -> None:
        """``role``: 'origin', 'hop' or 'end' of the route."""


@dataclass(frozen=True)
class Caller:
    """Who is asking: an SAE of this KME, or the peer KME."""

    name: str
    is_peer_kme: bool = False


class Kme:
    """One node's KME over its key pool and ledger."""

    def __init__(
        self,
        config: KmeConfig,
        node: str,
        pool: KeyPool,
        peer: PeerLink,
        *,
        remote_saes: Mapping[str, str] | None = None,
        kme_ids: Mapping[str, str] | None = None,
        forward: Callable[[str], Kme | None] | None = None,
        events: RelayEvents | None = None,
    ) -> None:
        """``remote_saes`` (sae_id -> node): SAEs reached over this link, the peer node's own
        unless a network routes more through it; ``kme_ids``: KME ID of every such node;
        ``forward(sae_id)``: this node's KME of the next link towards that SAE (relays)."""
        if node not in config.nodes:
            raise ValueError(f"node '{node}' is not one of kme.nodes {sorted(config.nodes)}")
        self.config = config
        self.node = node
        self.peer_node = config.peer_of(node)
        self.kme_id = config.nodes[node].kme_id
        self.peer_kme_id = config.nodes[self.peer_node].kme_id
        self.pool = pool
        self.ledger: Ledger = pool.ledger
        self.peer = peer
        self.is_allocator = config.allocator == node
        self.limits = Limits(
            key_size_bits=config.key_size_bits,
            min_key_size_bits=config.min_key_size_bits,
            max_key_size_bits=config.max_key_size_bits,
            max_key_per_request=config.max_key_per_request,
        )
        self._by_cn = {s.common_name: s.sae_id for s in config.saes if s.node == node}
        self._remote: dict[str, str] = (
            dict(remote_saes)
            if remote_saes is not None
            else {s.sae_id: s.node for s in config.saes if s.node == self.peer_node}
        )
        self._kme_ids = dict(kme_ids) if kme_ids is not None else {self.peer_node: self.peer_kme_id}
        self._forward = forward
        self._events = events
        self.relays = 0  # relay messages handled here (origin, hop or end)
        self._low = False
        self._commit = GroupCommit(pool.ledger)

    # --- who is asking -------------------------------------------------------------

    def identify(self, common_name: str | None) -> Caller:
        """The caller named by its certificate's CN (401 when nobody we serve)."""
        if common_name is None:
            raise unauthorized("a client certificate with a CN is required")
        if common_name == self.peer_kme_id:
            return Caller(common_name, is_peer_kme=True)
        sae = self._by_cn.get(common_name)
        if sae is None:
            raise unauthorized(f"certificate CN '{common_name}' is not an SAE of {self.kme_id}")
        return Caller(sae)

    def _as_sae(self, caller: Caller) -> str:
        if caller.is_peer_kme:
            raise unauthorized(f"{caller.name} is a KME, not an SAE")
        return caller.name

    def _peer_sae(self, sae_id: str, role: str) -> str:
        if sae_id not in self._remote:
            raise unauthorized(
                f"{role} '{sae_id}' is not an SAE reached through the peer KME {self.peer_kme_id}",
                **{role: sae_id},
            )
        return sae_id

    def _local_sae(self, sae_id: str) -> bool:
        binding = self.config.sae(sae_id)
        return binding is not None and binding.node == self.node

    # --- the spec's three calls ------------------------------------------------------

    def status(self, caller: Caller, slave: str) -> dict[str, Any]:
        """The Status object for keys from the caller (master) to ``slave``."""
        master = self._as_sae(caller)
        self._peer_sae(slave, "slave_SAE_ID")
        return {
            "source_KME_ID": self.kme_id,
            "target_KME_ID": self._kme_ids.get(self._remote[slave], self.peer_kme_id),
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": self.limits.key_size_bits,
            "stored_key_count": self.stored_key_count(),
            "max_key_count": self.config.max_key_count,
            "max_key_per_request": self.limits.max_key_per_request,
            "max_key_size": self.limits.max_key_size_bits,
            "min_key_size": self.limits.min_key_size_bits,
            "max_SAE_ID_count": self.limits.max_sae_id_count,
        }

    def stored_key_count(self) -> int:
        """Keys of the default size the pool can hand out now (at most max_key_count)."""
        self.pool.refresh()
        n = self.pool.available_bytes() // (self.limits.key_size_bits // 8)
        return min(n, self.config.max_key_count)

    async def enc_keys(self, caller: Caller, slave: str, request: KeyRequest) -> dict[str, Any]:
        """Keys for the caller (master) to share with ``slave``: the Key container."""
        master = self._as_sae(caller)
        self._peer_sae(slave, "slave_SAE_ID")
        for extra in request.additional_slaves:
            self._peer_sae(extra, "additional_slave_SAE_IDs")
        slaves = [slave, *request.additional_slaves]
        if request.number > self.config.max_key_count:
            raise bad_request(
                f"number {request.number} exceeds max_key_count {self.config.max_key_count}"
            )
        if self._remote[slave] != self.peer_node:
            return await self._relay_enc_keys(master, slave, request)
        if self.is_allocator:
            reservations = self._allocate(master, slaves, request, reserve_here=False)
            await self.peer.reserve(reservations)
        else:
            reservations = await self.peer.allocate(
                master, slaves, request.number, request.size_bits
            )
            reservations = self._accept(reservations, master, slaves, reserve_here=False)
        keys = [self._key_json(r) for r in reservations]
        self._check_low_water()
        log.debug(
            "enc_keys: %d key(s) of %d bits for %s -> %s",
            len(keys),
            request.size_bits,
            master,
            slave,
        )
        return {"keys": keys}

    async def dec_keys(self, caller: Caller, master: str, key_ids: list[str]) -> dict[str, Any]:
        """The keys reserved under ``key_ids`` for the caller (slave), once each."""
        slave = self._as_sae(caller)
        self._peer_sae(master, "master_SAE_ID")
        found = self.ledger.reservations(key_ids)
        missing = [k for k in key_ids if k not in found]
        if missing:
            delivered = self.ledger.was_delivered(missing)
            raise KmeError(
                400,
                "not all keys could be retrieved",
                [
                    {"key_ID": k, "reason": "already delivered" if k in delivered else "unknown"}
                    for k in missing
                ],
            )
        for key_id in key_ids:
            res = found[key_id]
            if slave not in res.slaves:
                raise unauthorized(f"key_ID {key_id} is not reserved for {slave}", key_ID=key_id)
            if res.master != master:
                raise bad_request(f"key_ID {key_id} was not issued to {master}", key_ID=key_id)
        keys = [self._key_json(found[k]) for k in key_ids]  # read before erasing
        try:
            self.ledger.deliver(key_ids)
        except LedgerError as exc:
            raise server_error(f"keys not delivered: {exc}") from None
        await self._commit.durable()  # erased on disk before the keys leave
        log.debug("dec_keys: %d key(s) for %s from %s", len(keys), slave, master)
        return {"keys": keys}

    # --- between the two KMEs ---------------------------------------------------------

    def peer_reserve(self, caller: Caller, reservations: list[Reservation]) -> None:
        """The allocator's reservations for slave SAEs of this KME."""
        self.require_peer(caller)
        for res in reservations:
            for slave in res.slaves:
                binding = self.config.sae(slave)
                if binding is None or binding.node != self.node:
                    raise bad_request(f"slave '{slave}' is not an SAE of {self.kme_id}")
            self._peer_sae(res.master, "master_SAE_ID")
        self._accept(reservations, None, None, reserve_here=True)

    def peer_allocate(
        self, caller: Caller, master: str, slaves: list[str], number: int, size_bits: int
    ) -> list[Reservation]:
        """Keys for a master SAE of the peer KME, reserved here for slaves of this KME."""
        self.require_peer(caller)
        if not self.is_allocator:
            raise bad_request(f"{self.kme_id} is not the allocator of the link")
        self._peer_sae(master, "master_SAE_ID")
        for slave in slaves:
            binding = self.config.sae(slave)
            if binding is None or binding.node != self.node:
                raise unauthorized(f"slave_SAE_ID '{slave}' is not an SAE of {self.kme_id}")
        if (
            not 0 < number <= self.limits.max_key_per_request
            or size_bits % 8
            or not (self.limits.min_key_size_bits <= size_bits <= self.limits.max_key_size_bits)
        ):
            raise bad_request(f"cannot allocate {number} key(s) of {size_bits} bits")
        request = KeyRequest(number, size_bits)
        reservations = self._allocate(master, slaves, request, reserve_here=True)
        self._check_low_water()
        return reservations

    # --- trusted-node relay (labctl.kme.relay) -----------------------------------------

    async def _relay_enc_keys(self, master: str, slave: str, request: KeyRequest) -> dict[str, Any]:
        """enc_keys for a slave beyond the peer: the first hop of a relay."""
        if request.additional_slaves:
            raise bad_request("additional_slave_SAE_IDs are not offered for relayed keys")
        if not self.is_allocator:
            raise bad_request(
                f"keys for {slave} are relayed over the link to {self.peer_kme_id}, whose "
                f"allocator ({self.config.allocator}) alone can start a relay"
            )
        reservations = self._allocate(master, [slave], request, reserve_here=False)
        message = RelayMessage(
            master,
            slave,
            tuple(RelayKey(r.key_id, r.size_bits, r.segments) for r in reservations),
        )
        await self.peer.relay(message)
        self.relays += 1
        if self._events is not None:
            self._events.relayed("origin", message)
        keys = [self._key_json(r) for r in reservations]
        self._check_low_water()
        log.debug("enc_keys: %d relayed key(s) for %s -> %s", len(keys), master, slave)
        return {"keys": keys}

    async def peer_relay(self, caller: Caller, message: RelayMessage) -> None:
        """A relay message from the peer KME: end it here or pass it on (all or nothing)."""
        self.require_peer(caller)
        self._peer_sae(message.master, "master_SAE_ID")
        final = self._local_sae(message.slave)
        onward = None
        if not final:
            onward = None if self._forward is None else self._forward(message.slave)
            if onward is None or onward is self:
                raise bad_request(f"slave '{message.slave}' is not reached through {self.kme_id}")
        # Where each key and the tag key lie in this node's store of the link.
        located = []
        for key in message.keys:
            try:
                segs = self.pool.localize(key.segments)
            except PoolError as exc:
                raise server_error(f"key material unknown here: {exc}") from None
            if key.pad is None and key_id_for(segs, key.size_bits) != key.key_id:
                raise server_error(f"key_ID {key.key_id} does not match its key material")
            located.append(
                Reservation(key.key_id, message.master, (message.slave,), key.size_bits, segs)
            )
        if message.padded:
            self._check_tag(message)
        elif final:
            raise bad_request("a relay message ending at its first hop is a reservation")
        if final:
            pads = {k.key_id: k.pad for k in message.keys}
            ends = [
                Reservation(r.key_id, r.master, r.slaves, r.size_bits, r.segments, pads[r.key_id])
                for r in located
            ]
            self._consume(ends, reserve_here=True)
            role = "end"
        else:
            assert onward is not None
            # Consumed before the key moves on: a failure further on wastes it, never reuses.
            self._consume(located, reserve_here=False)
            plain = []
            for key, res in zip(message.keys, located, strict=True):
                data = self._read(res.segments)
                plain.append(data if key.pad is None else xor(data, key.pad))
            await onward.relay_onward(message.master, message.slave, message.keys, plain)
            role = "hop"
        self.relays += 1
        if self._events is not None:
            self._events.relayed(role, message)

    def _check_tag(self, message: RelayMessage) -> None:
        """Consume the message's tag key here and check the tag (401 when it fails)."""
        assert message.tag_segments is not None
        try:
            tag_segs = self.pool.localize(message.tag_segments)
        except PoolError as exc:
            raise server_error(f"tag key unknown here: {exc}") from None
        tag_key = Reservation(
            key_id_for(tag_segs, TAG_KEY_BITS),
            message.master,
            (message.slave,),
            TAG_KEY_BITS,
            tag_segs,
        )
        self._consume([tag_key], reserve_here=False)
        try:
            verify(message, self._read(tag_segs))
        except RelayError as exc:
            log.warning("%s: relay message refused: %s", self.kme_id, exc)
            raise unauthorized(str(exc)) from None

    async def relay_onward(
        self, master: str, slave: str, keys: tuple[RelayKey, ...], plain: list[bytes]
    ) -> None:
        """Pad ``plain`` (the end-to-end keys) with key of this link and send it on, signed."""
        if not self.is_allocator:
            raise server_error(
                f"cannot relay over the link to {self.peer_kme_id}: "
                f"its allocator is {self.config.allocator}"
            )
        size_bits = keys[0].size_bits
        if any(k.size_bits != size_bits for k in keys):
            raise bad_request("relayed keys of one message must have one size")
        hop = self._allocate(master, [slave], KeyRequest(len(keys), size_bits), reserve_here=False)
        tag_key = self._allocate(master, [slave], KeyRequest(1, TAG_KEY_BITS), reserve_here=False)
        padded = tuple(
            RelayKey(key.key_id, size_bits, res.segments, xor(data, self._read(res.segments)))
            for key, res, data in zip(keys, hop, plain, strict=True)
        )
        message = RelayMessage(master, slave, padded, tag_key[0].segments)
        try:
            message = sign(message, self._read(tag_key[0].segments))
        except ValueError as exc:
            raise server_error(f"relay not signed: {exc}") from None
        await self.peer.relay(message)
        self._check_low_water()

    def require_peer(self, caller: Caller) -> None:
        if not caller.is_peer_kme:
            raise unauthorized(f"only the peer KME {self.peer_kme_id} may call this")

    # --- helpers ------------------------------------------------------------------------

    def _allocate(
        self, master: str, slaves: list[str], request: KeyRequest, *, reserve_here: bool
    ) -> list[Reservation]:
        size_bytes = request.size_bits // 8
        try:
            picked = self.pool.allocate(request.number, size_bytes)
        except PoolError as exc:
            raise server_error(f"not enough key material: {exc}") from None
        reservations = [
            Reservation(
                key_id_for(segs, request.size_bits), master, tuple(slaves), request.size_bits, segs
            )
            for segs in picked
        ]
        try:
            self.ledger.consume(reservations, reserve_here=reserve_here)
        except LedgerError as exc:
            raise server_error(f"key material refused: {exc}") from None
        return reservations

    def _accept(
        self,
        reservations: list[Reservation],
        master: str | None,
        slaves: list[str] | None,
        *,
        reserve_here: bool,
    ) -> list[Reservation]:
        """Check the allocator's reservations against this store and record them."""
        local = []
        for res in reservations:
            if master is not None and (res.master != master or list(res.slaves) != slaves):
                raise server_error("the allocator answered for other SAEs")
            try:
                segs = self.pool.localize(res.segments)
            except PoolError as exc:
                raise server_error(f"key material unknown here: {exc}") from None
            if key_id_for(segs, res.size_bits) != res.key_id:
                raise server_error(f"key_ID {res.key_id} does not match its key material")
            local.append(Reservation(res.key_id, res.master, res.slaves, res.size_bits, segs))
        try:
            self.ledger.consume(local, reserve_here=reserve_here)
        except LedgerError as exc:
            raise server_error(f"key material refused: {exc}") from None
        return local

    def _consume(self, reservations: list[Reservation], *, reserve_here: bool) -> None:
        try:
            self.ledger.consume(reservations, reserve_here=reserve_here)
        except LedgerError as exc:
            raise server_error(f"key material refused: {exc}") from None

    def _read(self, segments: tuple[Segment, ...]) -> bytes:
        try:
            return self.pool.read(segments)
        except PoolError as exc:
            raise server_error(f"key material unreadable: {exc}") from None

    def _key_json(self, res: Reservation) -> dict[str, str]:
        data = self._read(res.segments)
        if res.pad is not None:  # a relayed key: pad XOR this link's key (labctl.kme.relay)
            data = xor(data, res.pad)
        return {"key_ID": res.key_id, "key": base64.b64encode(data).decode("ascii")}

    def _check_low_water(self) -> None:
        count = self.pool.available_bytes() // (self.limits.key_size_bits // 8)
        low = count < self.config.low_water_keys
        if low and not self._low:
            log.warning(
                "%s: key pool below its low-water mark: %d keys of %d bits left (< %d)",
                self.kme_id,
                count,
                self.limits.key_size_bits,
                self.config.low_water_keys,
            )
        self._low = low

"""One node's KME assembled: key store + ledger + pool + peer link + HTTPS server.

``async with KmeService.open(config, node, key_store) as service`` serves until the block
ends; ``service.url`` is where it listens (a ``listen`` port of 0 takes a free one). The
peer KME's URL comes from the config, or is set later with :meth:`KmeService.set_peer_url`
(tests start both ends on free ports).

:class:`NetworkKmeService` is the same for a node of a trusted-node network
(:mod:`labctl.kme.network`): one address, one pool and ledger per link, relays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from labctl.interfaces.errors import ConfigError
from labctl.kme.config import KmeConfig, node_ledger_path, split_address
from labctl.kme.engine import Kme
from labctl.kme.ledger import Ledger, Synchronous
from labctl.kme.network import NetworkConfig, NodeKme
from labctl.kme.peer import HttpPeer
from labctl.kme.pool import KeyPool
from labctl.kme.relay import RelayMessage
from labctl.kme.server import RunningServer, build_app, start_server
from labctl.kme.tls import client_context, server_context
from labctl.store.keystore import KeyStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class KmeService:
    """A running KME of one node (use :meth:`open`)."""

    def __init__(
        self,
        kme: Kme,
        server: RunningServer,
        store: KeyStore,
        ledger: Ledger,
        peer: HttpPeer,
    ) -> None:
        self.kme = kme
        self.server = server
        self._store = store
        self._ledger = ledger
        self.peer = peer

    @classmethod
    async def open(
        cls,
        config: KmeConfig,
        node: str,
        key_store: Path,
        *,
        listen: str | None = None,
        synchronous: Synchronous = "FULL",
    ) -> KmeService:
        """Open the node's store and ledger and start serving."""
        entry = config.nodes[node]
        peer_node = config.peer_of(node)
        host, port = split_address(listen or entry.listen)
        server_ssl = server_context(config.certs_dir, entry.kme_id)
        peer_ssl = client_context(config.certs_dir, entry.kme_id)
        store = KeyStore(key_store)
        ledger = Ledger(node_ledger_path(config.ledger, node), synchronous=synchronous)
        peer = HttpPeer(
            config.nodes[peer_node].peer_url(),
            peer_ssl,
            peer_kme_id=config.nodes[peer_node].kme_id,
            timeout_s=config.peer_timeout_s,
        )
        try:
            kme = Kme(config, node, KeyPool(store, ledger, lease_bytes=config.lease_bytes), peer)
            server = await start_server(build_app(kme), host, port, server_ssl)
        except BaseException:
            ledger.close()
            store.close()
            raise
        log.info(
            "KME %s of node %s serving on %s (store %s, %d keys of %d bits available)",
            kme.kme_id,
            node,
            server.url,
            key_store,
            kme.stored_key_count(),
            config.key_size_bits,
        )
        return cls(kme, server, store, ledger, peer)

    @property
    def url(self) -> str:
        """Where this KME listens."""
        return self.server.url

    def set_peer_url(self, url: str) -> None:
        """Reach the peer KME at ``url`` from now on."""
        self.peer.base_url = url.rstrip("/")

    async def close(self) -> None:
        """Stop serving and close the files."""
        await self.server.close()
        await self.peer.close()
        self._ledger.close()
        self._store.close()

    async def __aenter__(self) -> KmeService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class LinkMetricSink(Protocol):
    """Where link metrics go (an :class:`labctl.stream.publisher.MqttPublisher`)."""

    def publish_link_metric(
        self, link_id: str, metric: str, values: Mapping[str, Any], ts: float | None = None
    ) -> None:
        """Publish ``link/{link_id}/{metric}``."""
        ...


class LinkCounters:
    """Relays seen on one link, by role (counts and sizes, never keys)."""

    def __init__(self) -> None:
        self.keys = 0
        self.bits = 0
        self.by_role: dict[str, int] = {"origin": 0, "hop": 0, "end": 0}

    def relayed(self, role: str, message: RelayMessage) -> None:
        self.keys += len(message.keys)
        self.bits += sum(k.size_bits for k in message.keys)
        self.by_role[role] = self.by_role.get(role, 0) + len(message.keys)
        log.info(
            "relay %s: %d key(s) %s -> %s", role, len(message.keys), message.master, message.slave
        )


@dataclass
class _LinkEnd:
    link_id: str
    neighbour: str
    kme: Kme
    store: KeyStore
    ledger: Ledger
    peer: HttpPeer
    counters: LinkCounters
    last_total_bytes: int = -1
    last_relayed: int = -1


class NetworkKmeService:
    """One node's KME of a trusted-node network (use :meth:`open`), one address for all links.

    With a ``sink`` it publishes, every ``metrics_interval_s`` and per link, the link's
    status (GS QKD 015 qkdl_status: ACTIVE while its store grows, PASSIVE otherwise), its key
    pool level and its relay counters; never key material.
    """

    def __init__(self, node_kme: NodeKme, server: RunningServer, ends: list[_LinkEnd]) -> None:
        self.node_kme = node_kme
        self.server = server
        self.ends = ends
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        config: NetworkConfig,
        node: str,
        *,
        listen: str | None = None,
        synchronous: Synchronous = "FULL",
        sink: LinkMetricSink | None = None,
        metrics_interval_s: float = 1.0,
    ) -> NetworkKmeService:
        """Open the node's stores and ledgers (one per link) and start serving."""
        if node not in config.nodes:
            raise ConfigError(
                f"'{node}' is not one of network.nodes {sorted(config.nodes)}", field="--node"
            )
        entry = config.nodes[node]
        node_kme = NodeKme(config, node)
        host, port = split_address(listen or entry.listen)
        server_ssl = server_context(config.certs_dir, entry.kme_id)
        peer_ssl = client_context(config.certs_dir, entry.kme_id)
        ends: list[_LinkEnd] = []
        try:
            for link in config.links_of(node):
                neighbour = link.other(node)
                link_config = config.link_config(link)
                store = KeyStore(link.stores[node])
                ledger = Ledger(node_ledger_path(link_config.ledger, node), synchronous=synchronous)
                peer = HttpPeer(
                    config.nodes[neighbour].peer_url(),
                    peer_ssl,
                    peer_kme_id=config.nodes[neighbour].kme_id,
                    timeout_s=config.peer_timeout_s,
                )
                counters = LinkCounters()
                pool = KeyPool(store, ledger, lease_bytes=config.lease_bytes)
                kme = Kme(
                    link_config,
                    node,
                    pool,
                    peer,
                    remote_saes=node_kme.remote_saes(neighbour),
                    kme_ids=node_kme.kme_ids(),
                    forward=node_kme.forward_to_sae,
                    events=counters,
                )
                node_kme.add_link(neighbour, kme)
                ends.append(_LinkEnd(link.id, neighbour, kme, store, ledger, peer, counters))
            server = await start_server(build_app(node_kme), host, port, server_ssl)
        except BaseException:
            for end in ends:
                await end.peer.close()
                end.ledger.close()
                end.store.close()
            raise
        service = cls(node_kme, server, ends)
        for end in ends:
            log.info(
                "KME %s of node %s serving on %s: link %s, %d keys of %d bits available",
                entry.kme_id,
                node,
                server.url,
                end.link_id,
                end.kme.stored_key_count(),
                config.key_size_bits,
            )
        if sink is not None:
            service._task = asyncio.create_task(service._publish(sink, metrics_interval_s))
        return service

    @property
    def url(self) -> str:
        """Where this KME listens."""
        return self.server.url

    def set_peer_url(self, neighbour: str, url: str) -> None:
        """Reach the KME of ``neighbour`` at ``url`` from now on."""
        for end in self.ends:
            if end.neighbour == neighbour:
                end.peer.base_url = url.rstrip("/")

    def publish_metrics(self, sink: LinkMetricSink) -> None:
        """Publish each link's status, key pool level and relay counters once."""
        for end in self.ends:
            stored = end.kme.stored_key_count()
            total = end.kme.pool.total_bytes
            grew = end.last_total_bytes >= 0 and total > end.last_total_bytes
            status = "ACTIVE" if grew or (end.last_total_bytes < 0 and total > 0) else "PASSIVE"
            end.last_total_bytes = total
            sink.publish_link_metric(end.link_id, "status", {"status": status})
            sink.publish_link_metric(
                end.link_id,
                "key_pool",
                {
                    "stored_key_count": stored,
                    "max_key_count": end.kme.config.max_key_count,
                    "key_size_bits": end.kme.limits.key_size_bits,
                },
            )
            if end.counters.keys != end.last_relayed:
                end.last_relayed = end.counters.keys
                sink.publish_link_metric(
                    end.link_id,
                    "relay",
                    {
                        "relayed_keys_count": end.counters.keys,
                        "relayed_bits": end.counters.bits,
                        "origin_keys_count": end.counters.by_role["origin"],
                        "hop_keys_count": end.counters.by_role["hop"],
                        "end_keys_count": end.counters.by_role["end"],
                    },
                )

    async def _publish(self, sink: LinkMetricSink, interval_s: float) -> None:
        while True:
            try:
                self.publish_metrics(sink)
            except Exception as exc:  # metrics must never stop the KME
                log.warning("KME metrics not published: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        """Stop serving and close the files."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.server.close()
        for end in self.ends:
            await end.peer.close()
            end.ledger.close()
            end.store.close()

    async def __aenter__(self) -> NetworkKmeService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def run_event_loop(main: Coroutine[Any, Any, T], *, uvloop_if_installed: bool = True) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed (the ``kme`` extra).

    A KME spends most of its CPU in the event loop and the socket and TLS calls around each
    request; uvloop's loop (libuv) does that part in C (benchmarks/README.md "kme").
    """
    if uvloop_if_installed:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)

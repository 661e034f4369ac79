"""One node's KME assembled: key store + ledger + pool + peer link + HTTPS server.

``async with KmeService.open(config, node, key_store) as service`` serves until the block
ends; ``service.url`` is where it listens (a ``listen`` port of 0 takes a free one). The
peer KME's URL comes from the config, or is set later with :meth:`KmeService.set_peer_url`
(tests start both ends on free ports).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from labctl.kme.config import KmeConfig, node_ledger_path, split_address
from labctl.kme.engine import Kme
from labctl.kme.ledger import Ledger, Synchronous
from labctl.kme.peer import HttpPeer
from labctl.kme.pool import KeyPool
from labctl.kme.server import RunningServer, build_app, start_server
from labctl.kme.tls import client_context, server_context
from labctl.store.keystore import KeyStore

log = logging.getLogger(__name__)


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

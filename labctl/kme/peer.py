"""The channel between the two KMEs of a link: reservations over mutual TLS (aiohttp client).

``POST {peer}/peer/v1/reserve`` hands the peer the allocator's reservations for its slave
SAEs; ``POST {peer}/peer/v1/allocate`` asks the allocator for keys for a master SAE of this
KME; ``POST {peer}/peer/v1/relay`` carries a relayed key one hop on (labctl.kme.relay,
one-time-padded and authenticated past the first hop). Otherwise only locations in the
stores travel (store key ids, offsets, lengths), never key bytes. The connection
is kept open between calls. Any failure is a 503 for the SAE that asked.

Reservations made while one is on its way travel together in the next call (one round trip
for many enc_keys under load, none delayed when the link is idle); the peer records a call
all or nothing, so every enc_keys of a batch gets the batch's answer.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp

from labctl.kme.errors import server_error
from labctl.kme.ledger import Reservation
from labctl.kme.relay import RELAY_PATH, RelayMessage

RESERVE_PATH = "/peer/v1/reserve"
ALLOCATE_PATH = "/peer/v1/allocate"


class HttpPeer:
    """The other KME, reached over HTTPS with this KME's certificate."""

    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext | None,
        *,
        peer_kme_id: str,
        timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.peer_kme_id = peer_kme_id
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._pending: list[tuple[list[Reservation], asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.calls = 0  # HTTP calls made (reservations of a batch share one)
        self._headers = headers  # only the benchmark's plain-HTTP baseline names itself so

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl if self._ssl is not None else False, limit=16
                ),
                timeout=self._timeout,
                headers=self._headers,
            )
        return self._session

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        self.calls += 1
        try:
            # TLS checks the server's certificate against the peer KME's ID (a DNS name of
            # the KME certificates): any other holder of a CA certificate is refused.
            hostname = None if self._ssl is None else self.peer_kme_id
            async with self._client().post(
                self.base_url + path, json=body, server_hostname=hostname
            ) as reply:
                data = await reply.json(content_type=None)
                if reply.status != 200:
                    message = data.get("message") if isinstance(data, dict) else None
                    raise server_error(
                        f"peer KME {self.peer_kme_id} refused ({reply.status}): {message}"
                    )
                return data
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise server_error(
                f"peer KME {self.peer_kme_id} unreachable: {type(exc).__name__}: {exc}"
            ) from None

    async def reserve(self, reservations: list[Reservation]) -> None:
        """Have the peer hold ``reservations`` for its slave SAEs (batched, see above)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((reservations, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_batches())
        await done

    async def _send_batches(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            items = [r.to_json() for reservations, _ in batch for r in reservations]
            try:
                await self._post(RESERVE_PATH, {"reservations": items})
            except Exception as exc:  # every waiter of the batch gets the failure
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def allocate(
        self, master: str, slaves: list[str], number: int, size_bits: int
    ) -> list[Reservation]:
        """Ask the allocator for ``number`` keys reserved on its side for ``slaves``."""
        data = await self._post(
            ALLOCATE_PATH,
            {"master_SAE_ID": master, "slave_SAE_IDs": slaves, "number": number, "size": size_bits},
        )
        try:
            items = data["reservations"]
            if not isinstance(items, list) or len(items) != number:
                raise ValueError(f"expected {number} reservations")
            return [Reservation.from_json(item) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise server_error(f"peer KME {self.peer_kme_id} answered badly: {exc}") from None

    async def relay(self, message: RelayMessage) -> None:
        """Hand the peer a relay message; returns once the route's last KME holds the keys."""
        await self._post(RELAY_PATH, message.to_json())

    async def close(self) -> None:
        """Close the kept-open connection."""
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=self._timeout.total)
        if self._session is not None:
            await self._session.close()

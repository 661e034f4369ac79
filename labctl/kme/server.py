"""The KME's HTTPS server (aiohttp): the ETSI GS QKD 014 routes plus the peer-KME routes.

``/api/v1/keys/{slave_SAE_ID}/status`` (GET), ``/api/v1/keys/{slave_SAE_ID}/enc_keys``
(GET, POST), ``/api/v1/keys/{master_SAE_ID}/dec_keys`` (GET, POST) answer JSON; every
refusal is the spec's Error object with 400, 401 or 503. The caller is the subject CN of
its client certificate, read from the TLS connection of each request (the TLS layer has
already checked it against the CA). Nothing a request sends can stop the server: an
unexpected fault is logged (type and message, never a key) and answered 503.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from labctl.kme import messages
from labctl.kme.engine import Caller
from labctl.kme.errors import KmeError, bad_request, server_error
from labctl.kme.ledger import Reservation
from labctl.kme.messages import KeyRequest, Limits
from labctl.kme.peer import ALLOCATE_PATH, RESERVE_PATH
from labctl.kme.relay import RELAY_PATH, RelayError, RelayMessage
from labctl.kme.tls import common_name

log = logging.getLogger(__name__)


class KmeApi(Protocol):
    """What the server asks of a KME: one link's (labctl.kme.engine.Kme) or a node's of a
    network (labctl.kme.network.NodeKme)."""

    @property
    def limits(self) -> Limits:
        """Sizes and counts the KME offers."""
        ...

    def identify(self, common_name: str | None) -> Caller:
        """The caller named by its certificate's CN (401 when unknown)."""
        ...

    def require_peer(self, caller: Caller) -> None:
        """401 unless the caller is a peer KME."""
        ...

    def status(self, caller: Caller, slave: str) -> dict[str, Any]:
        """The Status object."""
        ...

    async def enc_keys(self, caller: Caller, slave: str, request: KeyRequest) -> dict[str, Any]:
        """The Key container for a master SAE."""
        ...

    async def dec_keys(self, caller: Caller, master: str, key_ids: list[str]) -> dict[str, Any]:
        """The Key container for a slave SAE."""
        ...

    def peer_reserve(self, caller: Caller, reservations: list[Reservation]) -> None:
        """Reservations from the allocator KME."""
        ...

    def peer_allocate(
        self, caller: Caller, master: str, slaves: list[str], number: int, size_bits: int
    ) -> list[Reservation]:
        """Keys picked for a master SAE of the peer KME."""
        ...

    async def peer_relay(self, caller: Caller, message: RelayMessage) -> None:
        """A relayed key from the peer KME."""
        ...


KME_KEY = web.AppKey("kme", KmeApi)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CallerName = Callable[[web.Request], str | None]
NAME_KEY: web.AppKey[CallerName] = web.AppKey("caller_name")


def certificate_cn(request: web.Request) -> str | None:
    """The subject CN of the client certificate of the request's TLS connection."""
    transport = request.transport
    return None if transport is None else common_name(transport.get_extra_info("peercert"))


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """KmeError -> its Error object; aiohttp's own refusals and faults -> Error objects too."""
    try:
        return await handler(request)
    except KmeError as exc:
        return _json(exc.body(), exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # 404/405/413 from routing keep their code; the body follows the spec's format.
        return _json({"message": f"{exc.reason}: {request.method} {request.path}"}, exc.status)
    except Exception as exc:  # a request must never take the KME down
        log.error("KME fault on %s %s: %s", request.method, request.path, type(exc).__name__)
        return _json(server_error("internal error of the KME").body(), 503)


def _caller(request: web.Request) -> Caller:
    return request.app[KME_KEY].identify(request.app[NAME_KEY](request))


async def _body(request: web.Request) -> Any:
    return messages.parse_json_body(await request.read())


async def status(request: web.Request) -> web.Response:
    kme = request.app[KME_KEY]
    caller = _caller(request)
    return _json(kme.status(caller, request.match_info["sae_id"]))


async def enc_keys(request: web.Request) -> web.Response:
    kme = request.app[KME_KEY]
    caller = _caller(request)
    if request.method == "POST":
        req = messages.key_request_from_body(await _body(request), kme.limits)
    else:
        req = messages.key_request_from_query(request.query, kme.limits)
    return _json(await kme.enc_keys(caller, request.match_info["sae_id"], req))


async def dec_keys(request: web.Request) -> web.Response:
    kme = request.app[KME_KEY]
    caller = _caller(request)
    if request.method == "POST":
        ids = messages.key_ids_from_body(await _body(request), kme.limits)
    else:
        ids = messages.key_ids_from_query(request.query, kme.limits)
    return _json(await kme.dec_keys(caller, request.match_info["sae_id"], ids))


async def peer_reserve(request: web.Request) -> web.Response:
    kme = request.app[KME_KEY]
    caller = _caller(request)
    kme.require_peer(caller)
    body = await _body(request)
    items = body.get("reservations") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise bad_request("reservations must be a non-empty array")
    try:
        reservations = [Reservation.from_json(item) for item in items]
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    kme.peer_reserve(caller, reservations)
    return _json({"reserved": len(reservations)})


async def peer_allocate(request: web.Request) -> web.Response:
    kme = request.app[KME_KEY]
    caller = _caller(request)
    kme.require_peer(caller)
    body = await _body(request)
    if not isinstance(body, dict):
        raise bad_request("allocate request must be an object")
    master, slaves = body.get("master_SAE_ID"), body.get("slave_SAE_IDs")
    number, size = body.get("number"), body.get("size")
    if (
        not isinstance(master, str)
        or not isinstance(slaves, list)
        or not slaves
        or not all(isinstance(s, str) for s in slaves)
        or not isinstance(number, int)
        or not isinstance(size, int)
        or isinstance(number, bool)
        or isinstance(size, bool)
    ):
        raise bad_request("allocate needs master_SAE_ID, slave_SAE_IDs, number and size")
    reservations = kme.peer_allocate(caller, master, slaves, number, size)
    return _json({"reservations": [r.to_json() for r in reservations]})


async def peer_relay(request: web.Request) -> web.Response:
    kme = request.app[KME_KEY]
    caller = _caller(request)
    kme.require_peer(caller)
    try:
        message = RelayMessage.from_json(await _body(request))
    except RelayError as exc:
        raise bad_request(str(exc)) from None
    await kme.peer_relay(caller, message)
    return _json({"relayed": len(message.keys)})


def build_app(kme: KmeApi, caller_name: CallerName = certificate_cn) -> web.Application:
    """The aiohttp application of one KME.

    ``caller_name`` tells who asks; the KME uses the client certificate's CN. Another
    function (a header read on plain HTTP) exists only for the benchmark's no-TLS baseline.
    """
    app = web.Application(middlewares=[_errors], client_max_size=1 << 20)
    app[KME_KEY] = kme
    app[NAME_KEY] = caller_name
    app.router.add_get("/api/v1/keys/{sae_id}/status", status)
    app.router.add_route("GET", "/api/v1/keys/{sae_id}/enc_keys", enc_keys)
    app.router.add_route("POST", "/api/v1/keys/{sae_id}/enc_keys", enc_keys)
    app.router.add_route("GET", "/api/v1/keys/{sae_id}/dec_keys", dec_keys)
    app.router.add_route("POST", "/api/v1/keys/{sae_id}/dec_keys", dec_keys)
    app.router.add_post(RESERVE_PATH, peer_reserve)
    app.router.add_post(ALLOCATE_PATH, peer_allocate)
    app.router.add_post(RELAY_PATH, peer_relay)
    return app


@dataclass
class RunningServer:
    """A KME listening: its runner and the address it got (port 0 resolved)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        """``https://host:port`` of this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    async def close(self) -> None:
        """Stop listening and close open connections."""
        await self.runner.cleanup()


async def start_server(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None
) -> RunningServer:
    """Serve ``app`` on host:port (TLS when ``ssl_context`` is given; None only in tests)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0]
    return RunningServer(runner, str(bound[0]), int(bound[1]))

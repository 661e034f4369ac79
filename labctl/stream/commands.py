"""Remote commands on ``cmd/{pause|resume|abort|recalibrate}``, authorised, with replies.

Request payload (JSON): ``{"request_id": str, "args": {...}}`` plus, by ``CommandAuth.mode``:

* ``token``: ``"token": <shared token>`` (use over TLS only: the token travels as is);
* ``hmac``: ``"ts": <unix seconds>, "hmac": hex HMAC-SHA256(secret, action \\n request_id \\n
  ts \\n canonical JSON of args)``; requests older than ``max_skew_s`` or with a
  ``request_id`` already seen are refused (no replays).

Every request gets a reply on ``cmd/{action}/reply``: ``{"request_id", "action", "ok",
"error", "result", "ts"}``. A malformed or unauthorised request gets ``ok: false`` and a
log line (never the token) and never reaches the run; a callback that fails or times out
is reported the same way, so nothing a remote client sends can raise into the runner.

Anything may arrive on ``cmd/+``: payloads over 16 KiB, invalid UTF-8, non-JSON, JSON
nested deeper than ``_MAX_DEPTH``, wrong types, non-ASCII or lone surrogates in any string,
NaN or infinite ``ts``. Each is refused with a reply naming the field; an unforeseen error
in handling one message is answered ``internal error`` (and logged with its traceback), and
a reply that cannot be published is logged: the listener always goes on to the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

import aiomqtt

from labctl.interfaces.errors import ConfigError
from labctl.stream.client import make_client, unique_client_id
from labctl.stream.payloads import dumps
from labctl.stream.settings import CommandAuth, MqttSettings
from labctl.stream.topics import COMMAND_ACTIONS, Topics

log = logging.getLogger(__name__)

CommandCallback = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any] | None]]
"""``async def on_pause(args) -> optional result dict``."""

_MAX_PAYLOAD = 16 * 1024
_MAX_DEPTH = 32
"""JSON nesting allowed in a request (deeper is refused before parsing)."""


def _utf8(text: str) -> bytes:
    """UTF-8 of a decoded JSON string (lone surrogates, which JSON allows, kept as such)."""
    return text.encode("utf-8", "surrogatepass")


def _json_depth(payload: bytes) -> int:
    """Deepest nesting of [ and { outside strings (a cheap scan; json.loads recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _mac(secret: str, action: str, request_id: str, ts: float, args: Mapping[str, Any]) -> str:
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"))
    message = _utf8(f"{action}\n{request_id}\n{ts!r}\n{canonical}")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def make_request(
    auth: CommandAuth,
    action: str,
    request_id: str,
    args: Mapping[str, Any] | None = None,
    ts: float | None = None,
) -> bytes:
    """The payload a remote client sends to ``cmd/{action}``."""
    body: dict[str, Any] = {"request_id": request_id, "args": dict(args or {})}
    if auth.mode == "hmac":
        body["ts"] = time.time() if ts is None else ts
        body["hmac"] = _mac(auth.secret, action, request_id, body["ts"], body["args"])
    else:
        body["token"] = auth.secret
    return dumps(body)


class CommandRejected(Exception):
    """A request that is malformed or not authorised (the message goes into the reply)."""


class CommandListener:
    """Subscribes to ``cmd/+`` and calls the registered async callback of each action."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        lab: str,
        node: str,
        auth: CommandAuth,
        callback_timeout_s: float = 10.0,
    ) -> None:
        if auth.mode not in ("token", "hmac") or len(auth.secret) < 16:
            raise ConfigError(
                "command auth needs mode token|hmac and a secret of >= 16 characters",
                field="mqtt.commands",
            )
        self.settings = settings
        self.topics = Topics(lab, node)
        self.auth = auth
        self.callback_timeout_s = callback_timeout_s
        self._callbacks: dict[str, CommandCallback] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.handled = 0
        self.rejected = 0

    def register(self, action: str, callback: CommandCallback) -> None:
        """Call ``callback(args)`` for authorised requests on ``cmd/{action}``."""
        if action not in COMMAND_ACTIONS:
            raise ConfigError(
                f"unknown command {action!r}; allowed: {', '.join(COMMAND_ACTIONS)}",
                field="action",
            )
        self._callbacks[action] = callback

    # -- validation --------------------------------------------------------------------
    def _authorise(self, action: str, request: Mapping[str, Any]) -> None:
        if self.auth.mode == "token":
            token = request.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(
                _utf8(token), self.auth.secret.encode()
            ):
                raise CommandRejected("unauthorised: bad or missing token")
            return
        ts, mac = request.get("ts"), request.get("hmac")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not isinstance(mac, str):
            raise CommandRejected("unauthorised: hmac mode needs numeric 'ts' and string 'hmac'")
        if not math.isfinite(ts) or abs(time.time() - ts) > self.auth.max_skew_s:
            raise CommandRejected(f"unauthorised: ts is more than {self.auth.max_skew_s} s off")
        expected = _mac(self.auth.secret, action, request["request_id"], ts, request["args"])
        # Bytes, not str: compare_digest refuses str with non-ASCII characters (TypeError).
        if not hmac.compare_digest(_utf8(mac), expected.encode()):
            raise CommandRejected("unauthorised: bad hmac")
        if request["request_id"] in self._seen:
            raise CommandRejected("unauthorised: request_id already used (replay)")
        self._seen[request["request_id"]] = ts
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)

    @staticmethod
    def _parse(payload: bytes) -> dict[str, Any]:
        if len(payload) > _MAX_PAYLOAD:
            raise CommandRejected(f"malformed: payload over {_MAX_PAYLOAD} bytes")
        if _json_depth(payload) > _MAX_DEPTH:
            raise CommandRejected(f"malformed: JSON nested deeper than {_MAX_DEPTH}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CommandRejected(f"malformed: not UTF-8 (byte {exc.start})") from None
        try:
            request = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CommandRejected(f"malformed: not JSON ({str(exc)[:80]})") from None
        if not isinstance(request, dict):
            raise CommandRejected("malformed: payload must be a JSON object")
        rid = request.get("request_id")
        if not isinstance(rid, str) or not 1 <= len(rid) <= 128 or not rid.isprintable():
            raise CommandRejected(
                "malformed: 'request_id' must be a string of 1-128 printable chars"
            )
        try:
            rid.encode("utf-8")
        except UnicodeEncodeError:
            raise CommandRejected("malformed: 'request_id' is not valid Unicode") from None
        request.setdefault("args", {})
        if not isinstance(request["args"], dict):
            raise CommandRejected("malformed: 'args' must be an object")
        return request

    async def handle(self, action: str, payload: bytes) -> dict[str, Any]:
        """Validate, authorise and execute one request; return the reply (never raises)."""
        reply: dict[str, Any] = {"request_id": None, "action": action, "ok": False}
        try:
            request = self._parse(payload)
            reply["request_id"] = request["request_id"]
            if action not in COMMAND_ACTIONS:
                raise CommandRejected(f"unknown command {action!r}")
            self._authorise(action, request)
            callback = self._callbacks.get(action)
            if callback is None:
                raise CommandRejected(f"command {action!r} is not available on this node")
            try:
                result = await asyncio.wait_for(callback(request["args"]), self.callback_timeout_s)
            except TimeoutError:
                raise CommandRejected(
                    f"{action} did not finish within {self.callback_timeout_s} s"
                ) from None
            except Exception as exc:
                raise CommandRejected(f"{action} failed: {type(exc).__name__}: {exc}") from None
            reply.update(ok=True, error=None, result=dict(result) if result else None)
            self.handled += 1
            log.info("command %s (request %s) done", action, request["request_id"])
        except CommandRejected as exc:
            self.rejected += 1
            reply.update(error=str(exc), result=None)
            log.warning("command %s rejected (request %s): %s", action, reply["request_id"], exc)
        except Exception as exc:  # a bug here must not stop the listener
            self.rejected += 1
            reply.update(error=f"internal error: {type(exc).__name__}", result=None)
            log.exception("command %s: internal error (request %s)", action, reply["request_id"])
        reply["ts"] = time.time()
        return reply

    def _reply_payload(self, reply: dict[str, Any]) -> bytes:
        """The reply as JSON; a result that is not JSON-able becomes an error reply."""
        try:
            return dumps(reply)
        except (TypeError, ValueError, UnicodeEncodeError) as exc:
            log.warning("command %s: reply not serialisable: %s", reply.get("action"), exc)
            safe = {
                "request_id": reply.get("request_id"),
                "action": reply.get("action"),
                "ok": False,
                "error": f"internal error: reply not serialisable ({type(exc).__name__})",
                "result": None,
                "ts": reply.get("ts"),
            }
            try:
                return dumps(safe)
            except (TypeError, ValueError, UnicodeEncodeError):
                safe.update(request_id=None, action=None)
                return dumps(safe)

    # -- connection --------------------------------------------------------------------
    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topics.cmd_filter, qos=1)
        self.connected.set()
        async for message in client.messages:
            action = message.topic.value.rsplit("/", 1)[-1]
            raw = message.payload
            payload = raw if isinstance(raw, bytes | bytearray) else str(raw).encode()
            reply = await self.handle(action, bytes(payload))
            topic = f"{self.topics.base}/cmd/{action}/reply"
            if action not in COMMAND_ACTIONS:
                topic = f"{self.topics.base}/cmd/invalid/reply"
                reply["action"] = None
            await client.publish(topic, self._reply_payload(reply), qos=1)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff."""
        # Unique per process: two processes of one node both listen (an abort reaches
        # both) instead of evicting each other.
        ident = unique_client_id(f"labctl-{self.topics.lab}-{self.topics.node}-cmd")
        backoff_s = 0.1
        while True:
            try:
                async with make_client(self.settings, ident) as client:
                    backoff_s = 0.1
                    await self._serve(client)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning("command listener: %s", exc)
            await asyncio.sleep(backoff_s)
            backoff_s = min(2.0, backoff_s * 2)

    async def __aenter__(self) -> CommandListener:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="mqtt-commands")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

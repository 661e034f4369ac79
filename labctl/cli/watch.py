"""``labctl watch``: a live terminal dashboard of a broker's labctl nodes (or JSON lines).

Without ``--lab``/``--node`` it finds the nodes from their retained ``$meta``: one node is
watched, several are listed and all watched (one panel each). A broker that refuses the
connection (nothing listens there) is an error exit (1) with the reason at once; one that
accepts but is slow to answer (the embedded broker of a run shares the run's event loop,
which computation can hold for seconds) is tried again until ``--timeout``, then the same
error exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
from rich.console import Console, Group
from rich.live import Live

from labctl.cli.grammar import add_duration, add_timeout, duration_of
from labctl.interfaces.errors import ConfigError
from labctl.stream.client import make_client, unique_client_id
from labctl.stream.dashboard import DashboardModel
from labctl.stream.settings import MqttSettings, TlsSettings, parse_url
from labctl.stream.topics import ROOT, Topics

log = logging.getLogger(__name__)

REFRESH_HZ = 4.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``watch`` sub-command."""
    p = subparsers.add_parser("watch", help="live dashboard of a node's MQTT stream")
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--lab", help="lab to watch (default: found from the nodes' $meta)")
    p.add_argument("--node", help="node to watch (default: every node of the lab)")
    p.add_argument("--json", action="store_true", help="print every message as a JSON line")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path)
    p.add_argument("--ca-file", type=Path, help="CA certificate for mqtts://")
    add_duration(p, "stop after this long")
    add_timeout(p, "how long to wait for a broker slow to answer", f"{CONNECT_WAIT_S:g}s")
    p.set_defaults(func=run_watch)


def _settings(args: argparse.Namespace) -> MqttSettings:
    host, port, tls = parse_url(args.broker, "--broker")
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.password_file}: {exc.strerror}") from None
    return MqttSettings(
        host=host,
        port=port,
        username=args.username,
        password=password,
        tls=TlsSettings(ca_file=args.ca_file) if tls else None,
    )


def _json_line(topic: str, payload: bytes) -> str:
    try:
        body: object = json.loads(payload)
    except ValueError:
        body = payload.decode(errors="replace")
    return json.dumps({"topic": topic, "payload": body}, ensure_ascii=False)


DISCOVER_S = 1.5
"""How long retained ``$meta`` messages are collected when lab or node is not given."""
CONNECT_WAIT_S = 30.0
"""Default ``--timeout``: how long a broker that accepts but does not answer is retried."""


class BrokerUnreachable(Exception):
    """The first connection to the broker failed."""


def _reap(client: aiomqtt.Client) -> None:
    """Read aiomqtt's connection futures so a failed connect leaves no "Future exception
    was never retrieved" traceback behind at exit."""
    for name in ("_connected", "_disconnected"):
        future = getattr(client, name, None)
        if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
            future.exception()


def _refused(exc: BaseException) -> bool:
    """True when nothing listens at the address (retrying cannot help)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "connection refused" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def discover(
    settings: MqttSettings,
    lab: str | None,
    node: str | None,
    wait_s: float = DISCOVER_S,
    connect_wait_s: float = CONNECT_WAIT_S,
) -> list[Topics]:
    """Nodes announced by a retained ``$meta`` (filtered by lab/node when given).

    A refused connection raises BrokerUnreachable at once; a broker that does not answer
    is tried again until ``connect_wait_s`` has passed.
    """
    give_up = time.monotonic() + connect_wait_s
    while True:
        try:
            return await _discover_once(settings, lab, node, wait_s)
        except BrokerUnreachable as exc:
            if _refused(exc) or time.monotonic() >= give_up:
                raise
            await asyncio.sleep(0.5)


async def _discover_once(
    settings: MqttSettings, lab: str | None, node: str | None, wait_s: float
) -> list[Topics]:
    pattern = f"{ROOT}/{lab or '+'}/{node or '+'}/$meta"
    found: dict[tuple[str, str], Topics] = {}
    client = make_client(settings, unique_client_id("labctl-watch-find"))
    try:
        async with client:
            await client.subscribe(pattern, qos=1)
            deadline = time.monotonic() + wait_s
            while (left := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(left):
                        message = await anext(client.messages)
                except TimeoutError:
                    break
                parts = message.topic.value.split("/")
                if len(parts) == 5 and message.payload:
                    with contextlib.suppress(ConfigError):
                        found[(parts[2], parts[3])] = Topics(parts[2], parts[3])
    except aiomqtt.MqttError as exc:
        _reap(client)
        raise BrokerUnreachable(f"cannot reach broker {settings.url}: {exc}") from exc
    return [found[k] for k in sorted(found)]


async def _watch(
    settings: MqttSettings, nodes: list[Topics], as_json: bool, duration_s: float | None
) -> None:
    models = {t.base: DashboardModel(t) for t in nodes}
    deadline = None if duration_s is None else time.monotonic() + duration_s
    console = Console()

    def render() -> Any:
        return Group(*(m.render() for m in models.values()))

    live = (
        None
        if as_json
        else Live(render(), console=console, refresh_per_second=REFRESH_HZ, screen=False)
    )

    def model_of(topic: str) -> DashboardModel | None:
        for base, model in models.items():
            if topic.startswith(base + "/"):
                return model
        return None

    clients: list[aiomqtt.Client] = []

    async def receive() -> None:
        while True:
            client = make_client(settings, unique_client_id("labctl-watch"))
            clients.append(client)
            del clients[:-2]  # the ones before were reaped when they failed
            try:
                async with client:
                    for topics in nodes:
                        await client.subscribe(topics.everything, qos=1)
                    async for message in client.messages:
                        raw = message.payload
                        payload = raw if isinstance(raw, bytes) else str(raw).encode()
                        if as_json:
                            print(_json_line(message.topic.value, payload), flush=True)
                        elif (model := model_of(message.topic.value)) is not None:
                            model.apply(message.topic.value, payload)
            except aiomqtt.MqttError as exc:
                _reap(client)
                for model in models.values():
                    model.alarms.append(f"broker: {exc}")
                await asyncio.sleep(1.0)

    task = asyncio.ensure_future(receive())
    try:
        if live is not None:
            live.start()
        while deadline is None or time.monotonic() < deadline:
            if live is not None:
                live.update(render())
            await asyncio.sleep(1.0 / REFRESH_HZ)
            if task.done():
                task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # A broker that went away as the run ended (the embedded one stops with its run)
        # leaves its error on the client's futures: read it so none is logged at exit.
        await asyncio.sleep(0)
        for client in clients:
            _reap(client)
        if live is not None:
            live.stop()


def _quiet_abandoned_connections(loop: asyncio.AbstractEventLoop) -> None:
    """Drop asyncio's "Future exception was never retrieved" for aiomqtt errors.

    A connection attempt given up on (timed out, then retried) can still have its error
    set later by aiomqtt, on a future nobody holds any more; that error was already
    reported (or retried) here, and a traceback at exit would only alarm the operator.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        unretrieved = "never retrieved" in str(context.get("message", ""))
        if unretrieved and isinstance(context.get("exception"), aiomqtt.MqttError):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def _find_and_watch(args: argparse.Namespace, settings: MqttSettings) -> int:
    _quiet_abandoned_connections(asyncio.get_running_loop())
    duration_s = duration_of(args)
    connect_wait_s = duration_of(args, "timeout") or CONNECT_WAIT_S
    if args.lab is not None and args.node is not None:
        nodes = [Topics(args.lab, args.node)]
        # The broker is reachable (wait_s=0: nothing to collect).
        await discover(settings, args.lab, args.node, 0.0, connect_wait_s)
    else:
        nodes = await discover(settings, args.lab, args.node, DISCOVER_S, connect_wait_s)
        if not nodes:
            print(
                f"labctl watch: no labctl node on {settings.url} (no retained $meta"
                f"{f' for lab {args.lab}' if args.lab else ''}); give --lab and --node",
                file=sys.stderr,
            )
            return 1
        if len(nodes) > 1:
            names = ", ".join(f"{t.lab}/{t.node}" for t in nodes)
            print(f"labctl watch: {len(nodes)} nodes on {settings.url}: {names}", file=sys.stderr)
    await _watch(settings, nodes, args.json, duration_s)
    return 0


def run_watch(args: argparse.Namespace) -> int:
    """Entry point of ``labctl watch``."""
    try:
        settings = _settings(args)
        if args.lab is not None:
            Topics(args.lab, args.node or "x")
        if args.node is not None:
            Topics(args.lab or "x", args.node)
        duration_of(args)
        duration_of(args, "timeout")
    except ConfigError as exc:
        print(f"labctl watch: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_find_and_watch(args, settings))
    except BrokerUnreachable as exc:
        print(f"labctl watch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0

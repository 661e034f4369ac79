"""``labctl watch``: a live terminal dashboard of one node's MQTT tree (or JSON lines)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import aiomqtt
from rich.console import Console
from rich.live import Live

from labctl.interfaces.errors import ConfigError
from labctl.stream.client import make_client, unique_client_id
from labctl.stream.dashboard import DashboardModel
from labctl.stream.settings import MqttSettings, TlsSettings, parse_url
from labctl.stream.topics import Topics

log = logging.getLogger(__name__)

REFRESH_HZ = 4.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``watch`` sub-command."""
    p = subparsers.add_parser("watch", help="live dashboard of a node's MQTT stream")
    p.add_argument("--broker", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--lab", required=True)
    p.add_argument("--node", required=True)
    p.add_argument("--json", action="store_true", help="print every message as a JSON line")
    p.add_argument("--username")
    p.add_argument("--password-file", type=Path)
    p.add_argument("--ca-file", type=Path, help="CA certificate for mqtts://")
    p.add_argument("--duration-s", type=float, default=None, help="stop after this long")
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


async def _watch(
    settings: MqttSettings, topics: Topics, as_json: bool, duration_s: float | None
) -> None:
    model = DashboardModel(topics)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    console = Console()
    live = (
        None
        if as_json
        else Live(model.render(), console=console, refresh_per_second=REFRESH_HZ, screen=False)
    )

    async def receive() -> None:
        while True:
            try:
                async with make_client(settings, unique_client_id("labctl-watch")) as client:
                    await client.subscribe(topics.everything, qos=1)
                    async for message in client.messages:
                        raw = message.payload
                        payload = raw if isinstance(raw, bytes) else str(raw).encode()
                        if as_json:
                            print(_json_line(message.topic.value, payload), flush=True)
                        else:
                            model.apply(message.topic.value, payload)
            except aiomqtt.MqttError as exc:
                model.alarms.append(f"broker: {exc}")
                await asyncio.sleep(1.0)

    task = asyncio.ensure_future(receive())
    try:
        if live is not None:
            live.start()
        while deadline is None or time.monotonic() < deadline:
            if live is not None:
                live.update(model.render())
            await asyncio.sleep(1.0 / REFRESH_HZ)
            if task.done():
                task.result()
    finally:
        task.cancel()
        if live is not None:
            live.stop()


def run_watch(args: argparse.Namespace) -> int:
    """Entry point of ``labctl watch``."""
    try:
        settings = _settings(args)
        topics = Topics(args.lab, args.node)
    except ConfigError as exc:
        print(f"labctl watch: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_watch(settings, topics, args.json, args.duration_s))
    except KeyboardInterrupt:
        return 0
    return 0

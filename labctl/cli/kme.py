"""``labctl kme certs|serve|network``: key delivery to applications (ETSI GS QKD 014, mTLS).

``labctl kme certs DIR --sae alice-sae --sae bob-sae`` writes a test CA, a certificate per
KME (``--kme``, default kme-alice and kme-bob; server and client use, valid for ``--host``
names, default localhost, 127.0.0.1, ::1) and a client certificate per SAE (CN = SAE ID).
Private keys are 0600.

``labctl kme serve CONFIG --node alice|bob`` serves the KME of one node over that node's key
store (``storage.key_store`` with ``-alice``/``-bob``, as ``labctl node`` and ``labctl run``
write it), with the settings of the config's ``kme:`` section (see labctl.kme.config). It
prints ``kme serve: listening on https://HOST:PORT`` and serves until Ctrl-C or SIGTERM.

``labctl kme network NETWORK --node b [--mqtt URL]`` serves one node's KME of a trusted-node
network (labctl.kme.network): every link of the node on one address, keys for SAEs beyond
the neighbours relayed; with ``--mqtt`` it publishes each link's status, key pool level and
relay counters (docs/asyncapi.yaml, never key material).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from labctl.cli.common import load_station_config
from labctl.interfaces.errors import ConfigError

# labctl.kme pulls in aiohttp and the key store (numpy, the qkd package): imported by the
# actions that need them, so that `labctl --help` and other commands stay quick.

LISTENING = "kme serve: listening on"


def register(subparsers: Any) -> None:
    """Add the ``kme`` command with ``certs`` and ``serve``."""
    parser = subparsers.add_parser(
        "kme",
        help="deliver keys to applications (ETSI GS QKD 014 over mutual TLS)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="kme_action", metavar="ACTION", required=True)
    certs = actions.add_parser("certs", help="make a test CA with KME and SAE certificates")
    certs.add_argument("dir", metavar="DIR", help="folder for ca.pem and NAME.pem / NAME.key")
    certs.add_argument("--sae", action="append", default=[], help="an SAE ID (repeat)")
    certs.add_argument(
        "--kme", action="append", default=None, help="a KME ID (repeat; default kme-alice, kme-bob)"
    )
    certs.add_argument(
        "--host",
        action="append",
        default=None,
        help="a name or address of the KMEs (repeat; default localhost, 127.0.0.1, ::1)",
    )
    certs.set_defaults(func=run_certs)
    serve = actions.add_parser("serve", help="serve one node's KME until Ctrl-C")
    serve.add_argument("config", metavar="CONFIG", help="station YAML file with a kme: section")
    serve.add_argument("--node", required=True, help="which node's KME (a key of kme.nodes)")
    serve.add_argument("--listen", default=None, help="HOST:PORT (default: kme.nodes.NODE.listen)")
    serve.set_defaults(func=run_serve)
    network = actions.add_parser(
        "network", help="serve one node's KME of a trusted-node network until Ctrl-C"
    )
    network.add_argument("config", metavar="NETWORK", help="network YAML file (configs/network-*)")
    network.add_argument("--node", required=True, help="which node's KME (a key of network.nodes)")
    network.add_argument("--listen", default=None, help="HOST:PORT (default: the node's listen)")
    network.add_argument(
        "--mqtt",
        default=None,
        metavar="URL",
        help="publish link status, key pool levels and relays to this broker (mqtt://host:port)",
    )
    network.set_defaults(func=run_network)


def run_certs(args: argparse.Namespace) -> int:
    """Entry point of ``labctl kme certs``."""
    from labctl.kme.certs import DEFAULT_HOSTS, make_certs

    if not args.sae:
        raise ConfigError("give at least one --sae", field="--sae")
    kmes = args.kme or ["kme-alice", "kme-bob"]
    try:
        issued = make_certs(
            Path(args.dir), kmes=kmes, saes=args.sae, hosts=args.host or DEFAULT_HOSTS
        )
    except ValueError as exc:
        raise ConfigError(str(exc), field="--sae/--kme") from None
    print(f"CA: {issued.ca}")
    for name, (cert, key) in issued.certs.items():
        print(f"{name}: {cert} (key {key}, mode 0600)")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Entry point of ``labctl kme serve``."""
    from labctl.kme.config import load_kme_config, split_address
    from labctl.kme.service import run_event_loop
    from labctl.store.keystore import KeyStoreError, node_store_path

    station = load_station_config(args, args.config)
    config = load_kme_config(station)
    if args.node not in config.nodes:
        raise ConfigError(
            f"'{args.node}' is not one of kme.nodes {sorted(config.nodes)}", field="--node"
        )
    if args.listen is not None:
        try:
            split_address(args.listen)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--listen") from None
    store = node_store_path(station.storage.key_store, args.node)
    if not store.is_file():
        raise ConfigError(
            f"no key store at {store} (run `labctl run` or `labctl node` first)",
            file=station.file,
            field="storage.key_store",
        )
    try:
        run_event_loop(_serve(config, args.node, store, args.listen))
    except (KeyStoreError, OSError) as exc:
        print(f"labctl: failed: {exc}", file=sys.stderr)
        return 1
    return 0


def run_network(args: argparse.Namespace) -> int:
    """Entry point of ``labctl kme network``."""
    from labctl.kme.config import split_address
    from labctl.kme.network import load_network
    from labctl.kme.service import run_event_loop
    from labctl.store.keystore import KeyStoreError

    config = load_network(args.config)
    if args.node not in config.nodes:
        raise ConfigError(
            f"'{args.node}' is not one of network.nodes {sorted(config.nodes)}", field="--node"
        )
    if args.listen is not None:
        try:
            split_address(args.listen)
        except ValueError as exc:
            raise ConfigError(str(exc), field="--listen") from None
    for link in config.links_of(args.node):
        store = link.stores[args.node]
        if not store.is_file():
            raise ConfigError(
                f"no key store at {store} (generate key on link {link.id} first)",
                file=args.config,
                field=f"network.links.{config.links.index(link)}.stores.{args.node}",
            )
    for gap in config.relay_gaps():
        print(f"kme network: no relay for {gap}", file=sys.stderr)
    try:
        run_event_loop(_serve_network(config, args.node, args.listen, args.mqtt))
    except (KeyStoreError, OSError) as exc:
        print(f"labctl: failed: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve_network(config: Any, node: str, listen: str | None, mqtt: str | None) -> None:
    from labctl.kme.service import NetworkKmeService

    stop = _stop_event()
    async with contextlib.AsyncExitStack() as stack:
        sink = None
        if mqtt is not None:
            from labctl.stream.publisher import MqttPublisher
            from labctl.stream.settings import MqttSettings

            outbox = config.ledger_dir / f"mqtt-outbox-{node}"
            sink = await stack.enter_async_context(
                MqttPublisher(
                    MqttSettings.from_url(mqtt),
                    lab=config.lab,
                    node=node,
                    outbox_dir=outbox,
                    owns_state=False,
                )
            )
        service = await NetworkKmeService.open(config, node, listen=listen, sink=sink)
        stack.push_async_callback(service.close)
        print(f"{LISTENING} {service.url}", flush=True)
        await stop.wait()
    print("kme network: stopped", flush=True)


def _stop_event() -> asyncio.Event:
    """Set by SIGINT or SIGTERM (handlers stay for the life of the process)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve(config: Any, node: str, store: Path, listen: str | None) -> None:
    from labctl.kme.service import KmeService

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        async with await KmeService.open(config, node, store, listen=listen) as service:
            print(f"{LISTENING} {service.url}", flush=True)
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    print("kme serve: stopped", flush=True)

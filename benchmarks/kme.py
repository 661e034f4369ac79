"""KME key delivery: enc_keys at Alice + dec_keys at Bob per second, 256-bit keys, mutual TLS.

    python benchmarks/kme.py [--pairs 3000] [--concurrency 8] [--synchronous FULL|NORMAL]
                             [--relays 600] [--loop uvloop|asyncio]

Alice's and Bob's KMEs (labctl.kme, aiohttp) run in two server processes, both pinned to
one core; the SAE clients (aiohttp, one kept-open TLS connection per SAE and worker) run in
this process on the other core. A *pair* is POST enc_keys (number 1, size 256) at Alice, then
GET dec_keys with its key_ID at Bob, the bytes checked equal; each enc_keys also costs the
KME-to-KME reservation (Alice -> Bob, mutual TLS). Measured twice: sequentially (one pair at a
time: p50/p99 latency) and with ``--concurrency`` workers (throughput). The same server
code is then run on plain HTTP (the caller named by a header instead of a certificate) as a
same-machine baseline, before and after: ``tls_vs_plain`` is the ratio of the throughputs.
Each server process reports its CPU time: ``kme_cpu_ms_per_pair`` per KME,
``pairs_per_kme_core_s`` = pairs a second with one core per KME (as deployed, one KME per
node; the busier KME sets it), ``pairs_per_core_s_both_kmes_on_one`` with both KMEs sharing
one core. CPU figures do not depend much on what else the machine runs; wall-clock rates
do. The KMEs run on ``--loop`` (uvloop, as ``labctl kme serve`` when it is installed); the
mutual TLS run is repeated on asyncio's own loop in the same invocation
(``uvloop_vs_asyncio_kme_cpu``: the ratio of CPU per pair).

``relay``: a trusted-node network a - b - c (labctl.kme.network), one KME process per node,
all three pinned to one core. A *relayed pair* is enc_keys at a for sae-c (a picks the key
on link a-b, b reads it, pads it with b-c key, signs it with a Wegman-Carter tag and sends
it to c) and dec_keys at c with its key_ID, the bytes checked equal. Reported as relayed
pairs a second (wall, ``--concurrency`` workers), p50/p99 latency, CPU per relayed pair per
KME and ``relayed_pairs_per_core_s_all_kmes_on_one``. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.kme.certs import make_certs  # noqa: E402
from labctl.kme.config import KmeConfig, node_ledger_path, parse_kme_section  # noqa: E402
from labctl.kme.engine import Kme  # noqa: E402
from labctl.kme.ledger import Ledger, Synchronous  # noqa: E402
from labctl.kme.network import parse_network  # noqa: E402
from labctl.kme.peer import HttpPeer  # noqa: E402
from labctl.kme.pool import KeyPool  # noqa: E402
from labctl.kme.server import RunningServer, build_app, start_server  # noqa: E402
from labctl.kme.service import NetworkKmeService, run_event_loop  # noqa: E402
from labctl.kme.tls import client_context, server_context  # noqa: E402
from labctl.qkd.secret import SecretBits  # noqa: E402
from labctl.store.keystore import KeyStore  # noqa: E402

HEADER = "X-Bench-Caller"  # plain-HTTP baseline only: who is asking


def section(folder: Path) -> dict[str, Any]:
    return {
        "certs_dir": str(folder / "certs"),
        "ledger": str(folder / "ledger.sqlite"),
        "max_key_per_request": 128,
        "low_water_keys": 0,
        "nodes": {
            "alice": {"kme_id": "kme-alice", "listen": "127.0.0.1:0"},
            "bob": {"kme_id": "kme-bob", "listen": "127.0.0.1:0"},
        },
        "saes": [{"sae_id": "alice-sae", "node": "alice"}, {"sae_id": "bob-sae", "node": "bob"}],
    }


def prepare(folder: Path, n_bytes: int) -> None:
    """Certificates and two identical stores holding ``n_bytes`` of key."""
    make_certs(folder / "certs", kmes=["kme-alice", "kme-bob"], saes=["alice-sae", "bob-sae"])
    fill(folder, ("keys-alice.sqlite", "keys-bob.sqlite"), n_bytes)


def fill(folder: Path, names: tuple[str, str], n_bytes: int) -> None:
    """Two stores with the same fresh keys (``n_bytes`` or a little more)."""
    keys = []
    for _ in range(n_bytes // 8192 + 1):
        keys.append((str(uuid.uuid4()), SecretBits.from_bytes(os.urandom(8192), 8 * 8192)))
    for name in names:
        with KeyStore(folder / name) as store:
            for key_id, bits in keys:
                store.add(bits, key_id=key_id)


async def serve(folder: Path, mode: str, synchronous: Synchronous, node: str) -> None:
    """Server process of one node's KME: its URL on stdout, the peer's URL on stdin, then
    one line of CPU time per line read, until stdin closes."""
    config: KmeConfig = parse_kme_section(section(folder))
    tls = mode == "tls"
    entry, peer_id = config.nodes[node], config.nodes[config.peer_of(node)].kme_id
    ledger = Ledger(
        node_ledger_path(config.ledger, node).with_suffix(f".{mode}"), synchronous=synchronous
    )
    pool = KeyPool(KeyStore(folder / f"keys-{node}.sqlite"), ledger, lease_bytes=config.lease_bytes)
    peer = HttpPeer(
        "https://unset",
        client_context(config.certs_dir, entry.kme_id) if tls else None,
        peer_kme_id=peer_id,
        timeout_s=10,
        headers=None if tls else {HEADER: entry.kme_id},
    )
    kme = Kme(config, node, pool, peer)
    if tls:
        app = build_app(kme)
    else:
        app = build_app(kme, lambda request: request.headers.get(HEADER))
    ctx = server_context(config.certs_dir, entry.kme_id) if tls else None
    server: RunningServer = await start_server(app, "127.0.0.1", 0, ctx)
    print(f"{'https' if tls else 'http'}://127.0.0.1:{server.port}", flush=True)
    loop = asyncio.get_running_loop()
    peer.base_url = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(time.process_time(), flush=True)
    await server.close()
    await peer.close()


NET_NODES = ("a", "b", "c")


def network(folder: Path) -> dict[str, Any]:
    link = {"ab": ("a", "b"), "bc": ("b", "c")}
    return {
        "network": {
            "certs_dir": str(folder / "net-certs"),
            "ledger_dir": str(folder / "net-ledgers"),
            "max_key_per_request": 128,
            "low_water_keys": 0,
            "nodes": {n: {"kme_id": f"kme-{n}", "listen": "127.0.0.1:0"} for n in NET_NODES},
            "links": [
                {
                    "id": name,
                    "nodes": list(ends),
                    "allocator": ends[0],
                    "stores": {n: str(folder / f"keys-{name}-{n}.sqlite") for n in ends},
                }
                for name, ends in link.items()
            ],
            "saes": [{"sae_id": f"sae-{n}", "node": n} for n in NET_NODES],
        }
    }


async def serve_network(folder: Path, synchronous: Synchronous, node: str) -> None:
    """Server process of one network node's KME (same stdin/stdout protocol as serve;
    the peer line is JSON {neighbour: url})."""
    config = parse_network(network(folder))
    async with await NetworkKmeService.open(config, node, synchronous=synchronous) as service:
        print(service.url, flush=True)
        loop = asyncio.get_running_loop()
        urls = json.loads(await loop.run_in_executor(None, sys.stdin.readline))
        for neighbour, url in urls.items():
            service.set_peer_url(neighbour, url)
        while await loop.run_in_executor(None, sys.stdin.readline):
            print(time.process_time(), flush=True)


def sae_session(certs: Path, name: str, tls: bool) -> aiohttp.ClientSession:
    if tls:
        context = client_context(certs, name)
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context, limit=64))
    return aiohttp.ClientSession(headers={HEADER: name})


async def pairs(
    urls: list[str],
    folder: Path,
    tls: bool,
    n: int,
    concurrency: int,
    saes: tuple[str, str] = ("alice-sae", "bob-sae"),
    certs: str = "certs",
) -> dict[str, float]:
    if tls:
        alice = sae_session(folder / certs, saes[0], tls)
        bob = sae_session(folder / certs, saes[1], tls)
    else:
        alice, bob = sae_session(folder, saes[0], tls), sae_session(folder, saes[1], tls)
    latencies: list[float] = []
    enc_url = f"{urls[0]}/api/v1/keys/{saes[1]}/enc_keys"
    dec_url = f"{urls[1]}/api/v1/keys/{saes[0]}/dec_keys"

    async def one() -> None:
        t0 = time.perf_counter()
        async with alice.post(enc_url, json={"number": 1, "size": 256}) as reply:
            assert reply.status == 200, await reply.text()
            key = (await reply.json())["keys"][0]
        async with bob.get(dec_url, params={"key_ID": key["key_ID"]}) as reply:
            assert reply.status == 200, await reply.text()
            assert (await reply.json())["keys"][0] == key
        assert len(base64.b64decode(key["key"])) == 32
        latencies.append(time.perf_counter() - t0)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    for _ in range(20):  # warm up: connections open, caches filled
        await one()
    latencies.clear()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    await alice.close()
    await bob.close()
    latencies.sort()
    done = len(latencies)
    return {
        "pairs": done,
        "pairs_per_s": round(done / wall, 1),
        "p50_ms": round(1e3 * latencies[done // 2], 3),
        "p99_ms": round(1e3 * latencies[min(done - 1, int(0.99 * done))], 3),
    }


def run_relay(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Relayed pairs a -> c through b: three KME processes on one core."""
    servers = {
        node: subprocess.Popen(
            [sys.executable, __file__, "--serve", "relay", "--node", node, "--folder",
             str(folder), "--synchronous", args.synchronous, "--loop", args.loop],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for node in NET_NODES
    }  # fmt: skip

    def say(node: str, line: str) -> None:
        stdin = servers[node].stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def ask(node: str) -> float:
        say(node, "cpu")
        stdout = servers[node].stdout
        assert stdout is not None
        return float(stdout.readline())

    try:
        urls = {}
        for node, server in servers.items():
            assert server.stdout is not None
            urls[node] = server.stdout.readline().strip()
        neighbours = {"a": ["b"], "b": ["a", "c"], "c": ["b"]}
        for node in NET_NODES:
            say(node, json.dumps({n: urls[n] for n in neighbours[node]}))
        cpu0 = {node: ask(node) for node in NET_NODES}
        result: dict[str, Any] = asyncio.run(
            pairs(
                [urls["a"], urls["c"]],
                folder,
                True,
                args.relays,
                args.concurrency,
                saes=("sae-a", "sae-c"),
                certs="net-certs",
            )
        )
        done = result["pairs"] + 20
        cpu = {node: (ask(node) - cpu0[node]) / done for node in NET_NODES}
    finally:
        for server in servers.values():
            assert server.stdin is not None
            server.stdin.close()
        for server in servers.values():
            server.wait(30)
    return {
        "relayed_pairs": result["pairs"],
        "relayed_pairs_per_s": result["pairs_per_s"],
        "concurrency": args.concurrency,
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "kme_cpu_ms_per_relayed_pair": {n: round(1e3 * c, 3) for n, c in cpu.items()},
        "relayed_pairs_per_core_s_all_kmes_on_one": round(1 / sum(cpu.values()), 1),
        "relayed_pairs_per_kme_core_s": round(1 / max(cpu.values()), 1),
    }


def run_mode(
    folder: Path, mode: str, args: argparse.Namespace, loop: str | None = None
) -> dict[str, Any]:
    servers = {
        node: subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                mode,
                "--node",
                node,
                "--folder",
                str(folder),
                "--synchronous",
                args.synchronous,
                "--loop",
                loop or args.loop,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for node in ("alice", "bob")
    }

    def ask(node: str, line: str) -> str:
        server = servers[node]
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(line + "\n")
        server.stdin.flush()
        return server.stdout.readline().strip()

    urls = {}
    for node, server in servers.items():
        assert server.stdout is not None
        urls[node] = server.stdout.readline().strip()
    out: dict[str, Any] = {}
    try:
        for node, other in (("alice", "bob"), ("bob", "alice")):
            servers[node].stdin.write(urls[other] + "\n")  # type: ignore[union-attr]
            servers[node].stdin.flush()  # type: ignore[union-attr]
        for name, n, workers in (
            ("sequential", args.pairs // 3, 1),
            (f"concurrency_{args.concurrency}", args.pairs, args.concurrency),
        ):
            cpu0 = {node: float(ask(node, "cpu")) for node in servers}
            result: dict[str, Any] = asyncio.run(
                pairs([urls["alice"], urls["bob"]], folder, mode == "tls", n, workers)
            )
            done = result["pairs"] + 20  # + warm-up
            cpu = {node: (float(ask(node, "cpu")) - cpu0[node]) / done for node in servers}
            result["kme_cpu_ms_per_pair"] = {n: round(1e3 * c, 3) for n, c in cpu.items()}
            result["both_kmes_cpu_ms_per_pair"] = round(1e3 * sum(cpu.values()), 3)
            # One core per KME (as deployed: one per node); the busier one sets the rate.
            result["pairs_per_kme_core_s"] = round(1 / max(cpu.values()), 1)
            result["pairs_per_core_s_both_kmes_on_one"] = round(1 / sum(cpu.values()), 1)
            out[name] = result
    finally:
        for server in servers.values():
            assert server.stdin is not None
            server.stdin.close()
        for server in servers.values():
            server.wait(30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--relays", type=int, default=600, help="relayed pairs a -> c (0: none)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--serve", choices=["tls", "plain", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--node", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.serve:
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[0]})  # the KMEs: one core
        fast = args.loop == "uvloop"
        if args.serve == "relay":
            coro = serve_network(Path(args.folder), args.synchronous, args.node)
        else:
            coro = serve(Path(args.folder), args.serve, args.synchronous, args.node)
        run_event_loop(coro, uvloop_if_installed=fast)
        return
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))  # the SAE clients: the other core(s)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # enough key for warm-ups and both runs of both modes
        prepare(folder, 32 * (4 * (args.pairs + args.pairs // 3 + 100)))
        if args.relays:
            # each relayed key: 32 bytes of a-b, 32 + 32 (tag key) of b-c, + warm-up
            for name, ends in (("ab", "ab"), ("bc", "bc")):
                fill(folder, (f"keys-{name}-{ends[0]}.sqlite", f"keys-{name}-{ends[1]}.sqlite"),
                     64 * (args.relays + 40))  # fmt: skip
            make_certs(
                folder / "net-certs",
                kmes=[f"kme-{n}" for n in NET_NODES],
                saes=[f"sae-{n}" for n in NET_NODES],
            )
        out: dict[str, Any] = {
            "key_size_bits": 256,
            "ledger_synchronous": args.synchronous,
            "kme_processes": "alice and bob, each its own process, both pinned to one core",
        }
        # baseline first, then mutual TLS, then the baseline again: the machine is shared
        # and its load drifts, the two baseline runs show by how much
        plain = run_mode(folder, "plain", args)
        out["kme_event_loop"] = args.loop
        out["mtls"] = run_mode(folder, "tls", args)
        other = "asyncio" if args.loop == "uvloop" else "uvloop"
        out[f"mtls_{other}"] = run_mode(folder, "tls", args, loop=other)
        plain_after = run_mode(folder, "plain", args)
        out["plain_http_baseline"] = {"before": plain, "after": plain_after}
        if args.relays:
            out["relay"] = run_relay(folder, args)
    key = f"concurrency_{args.concurrency}"
    plain_rate = (plain[key]["pairs_per_s"] + plain_after[key]["pairs_per_s"]) / 2
    out["tls_vs_plain"] = round(out["mtls"][key]["pairs_per_s"] / plain_rate, 3)
    cpu = "both_kmes_cpu_ms_per_pair"
    plain_cpu = (plain[key][cpu] + plain_after[key][cpu]) / 2
    out["tls_vs_plain_kme_cpu"] = round(out["mtls"][key][cpu] / plain_cpu, 3)
    uv, aio = (out["mtls"], out["mtls_asyncio"]) if other == "asyncio" else (
        out["mtls_uvloop"], out["mtls"])  # fmt: skip
    out["uvloop_vs_asyncio_kme_cpu"] = round(uv[key][cpu] / aio[key][cpu], 3)
    out["load_average_before"] = [round(x, 2) for x in load_before]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

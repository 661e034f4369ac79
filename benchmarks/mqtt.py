"""MQTT streaming benchmark: sustained QoS 1 publish rate and acquisition with broker down/up.

Prints one JSON object. Starts its own Mosquitto with its default settings (no persistence,
no ``set_tcp_nodelay``: what a lab gets from a distribution package) on a free loopback port.

* publish: documents emitted into MqttPublisher (sliding window of ``--window`` QoS 1
  publishes in flight), timed until every PUBACK is in; baseline = a bare aiomqtt client
  with aiomqtt's defaults (``aiomqtt.Client(host, port)``: default socket options, paho's
  default in-flight limit of 20 QoS 1 messages) keeping ``--window`` publishes in flight in
  the same process, each the same bytes the publisher sends (``document_payload``, encoded
  before the clock starts) on a topic of the same length. The default ``--window`` is
  paho's in-flight default, so both sides have the same window on the wire, and
  ``ratio_vs_raw_aiomqtt`` is the cost of the outbox, guard and encoding. A second bare
  client sends fixed windows that wait for each other (the publisher's former scheme), to
  show what the sliding window gains. Rates per wall second and per CPU second of this
  process (the broker runs in another process and is not counted).
* acquisition: a loop that builds Documents and calls ``emit`` (yielding to the event loop
  every 100 documents, as a plan awaiting instruments does), with the broker reachable and
  with no broker listening; ``ratio_down_vs_up`` must stay >= 0.95 (acquisition never waits
  on MQTT); also per second of CPU time, which other jobs on the machine disturb less.
  Each figure is the best of ``--repeats`` to tame a shared machine.
* guard: cost of the key-material check per payload with 1 and with ``--keys`` keys
  registered (it must not grow with the number of keys a long run has generated).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import aiomqtt

from labctl.documents import Document
from labctl.secrets import SecretRegistry
from labctl.stream.mosquitto import Mosquitto, free_port
from labctl.stream.payloads import document_payload
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings


def document(seq: int) -> Document:
    data = {"counts": seq, "qber_z": 0.021, "delay_ps": 1234, "rate_hz": 1.5e5}
    return Document("event", "bench-run", seq, time.time(), "primary", data)


Rate = tuple[float, float]
"""(messages per wall second, messages per CPU second of this process)."""


def _rates(n: int, wall0: float, cpu0: float) -> Rate:
    return n / (time.perf_counter() - wall0), n / (time.process_time() - cpu0)


async def publish_rate(url: str, folder: Path, n: int, window: int) -> Rate:
    async with MqttPublisher(
        MqttSettings.from_url(url),
        lab="bench",
        node="pub",
        outbox_dir=folder,
        memory_capacity=n,
        window=window,
    ) as pub:
        if not await pub.wait_connected(30):
            raise RuntimeError(f"no broker at {url}")
        # The documents are the producer's, as the baseline's payloads are made untimed;
        # encoding, guard and outbox are timed.
        documents = [document(seq) for seq in range(n)]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for doc in documents:
            pub.emit(doc)
        if not await pub.flush(300):
            raise RuntimeError("publish benchmark did not drain")
        return _rates(n, wall0, cpu0)


async def raw_rate(url: str, n: int, window: int, *, sliding: bool) -> Rate:
    """A bare aiomqtt client: ``window`` publishes in flight (sliding) or fixed windows."""
    settings = MqttSettings.from_url(url)
    payloads = [document_payload(document(s)) for s in range(n)]
    topic = "labctl/v1/bench/raw/run/bench-run/primary"  # as long as the publisher's
    bare = aiomqtt.Client(settings.host, settings.port, identifier="bench-raw")
    # Only silences aiomqtt's warning about many pending calls (the check runs either way).
    bare.pending_calls_threshold = window + 16
    async with bare as client:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if sliding:
            room = asyncio.Semaphore(window)

            async def one(payload: bytes) -> None:
                try:
                    await client.publish(topic, payload, qos=1)
                finally:
                    room.release()

            tasks = []
            for p in payloads:
                await room.acquire()
                tasks.append(asyncio.ensure_future(one(p)))
            await asyncio.gather(*tasks)
        else:
            for i in range(0, n, window):
                await asyncio.gather(
                    *(client.publish(topic, p, qos=1) for p in payloads[i : i + window])
                )
        return _rates(n, wall0, cpu0)


async def acquisition_rate(url: str, folder: Path, n: int) -> tuple[float, float]:
    """Documents per second of wall time and per second of this process's CPU time."""
    async with MqttPublisher(
        MqttSettings.from_url(url), lab="bench", node="acq", outbox_dir=folder
    ) as pub:
        await pub.wait_connected(0.5)  # connected, or refused, before timing
        start, cpu = time.perf_counter(), time.process_time()
        for seq in range(n):
            pub.emit(document(seq))
            if seq % 100 == 99:
                await asyncio.sleep(0)
        wall_rate = n / (time.perf_counter() - start)
        cpu_rate = n / (time.process_time() - cpu)
        if pub.connected:
            await pub.flush(30)
        return wall_rate, cpu_rate


def guard_cost_us(keys: int, payloads: int = 20_000) -> float:
    """Microseconds to check one document payload against ``keys`` registered keys."""
    registry = SecretRegistry()
    for _ in range(keys):
        registry.register(os.urandom(128))
    blobs = [json.dumps(document(s).to_json_dict()).encode() for s in range(payloads)]
    start = time.perf_counter()
    for blob in blobs:
        registry.find(blob)
    return 1e6 * (time.perf_counter() - start) / payloads


async def main(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="labctl-bench-mqtt-"))
    with Mosquitto(tmp / "broker", stock=True) as broker:
        pub: list[Rate] = []
        raw: list[Rate] = []
        fixed: list[Rate] = []
        for i in range(args.repeats):  # interleaved, so machine load hits all alike
            raw.append(await raw_rate(broker.url, args.messages, args.window, sliding=True))
            fixed.append(await raw_rate(broker.url, args.messages, args.window, sliding=False))
            pub.append(await publish_rate(broker.url, tmp / f"p{i}", args.messages, args.window))
        up, down = [], []
        dead = f"mqtt://127.0.0.1:{free_port()}"
        for i in range(args.repeats):
            up.append(await acquisition_rate(broker.url, tmp / f"u{i}", args.documents))
            down.append(await acquisition_rate(dead, tmp / f"d{i}", args.documents))
    best_pub, best_raw, best_fixed = max(pub), max(raw), max(fixed)
    guard_1, guard_many = guard_cost_us(1), guard_cost_us(args.keys)
    return {
        "benchmark": "mqtt",
        "publish_qos1_msg_per_s": round(best_pub[0]),
        "publish_qos1_msg_per_cpu_s": round(max(c for _, c in pub)),
        "publish_target_msg_per_s": 5000,
        "publish_raw_aiomqtt_msg_per_s": round(best_raw[0]),
        "publish_raw_aiomqtt_msg_per_cpu_s": round(max(c for _, c in raw)),
        "ratio_vs_raw_aiomqtt": round(best_pub[0] / best_raw[0], 3),
        "ratio_vs_raw_aiomqtt_cpu": round(max(c for _, c in pub) / max(c for _, c in raw), 3),
        "ratio_target": 0.9,
        # Every repeat, in order (each publisher run right after its two baselines).
        "publish_qos1_msg_per_s_runs": [round(w) for w, _ in pub],
        "publish_raw_aiomqtt_msg_per_s_runs": [round(w) for w, _ in raw],
        "ratio_vs_raw_aiomqtt_runs": [round(p[0] / r[0], 3) for p, r in zip(pub, raw, strict=True)],
        "publish_raw_fixed_windows_msg_per_s": round(best_fixed[0]),
        "ratio_sliding_vs_fixed_windows_raw": round(best_raw[0] / best_fixed[0], 3),
        "acquisition_docs_per_s_broker_up": round(max(w for w, _ in up)),
        "acquisition_docs_per_s_broker_down": round(max(w for w, _ in down)),
        "ratio_down_vs_up": round(max(w for w, _ in down) / max(w for w, _ in up), 3),
        "acquisition_docs_per_cpu_s_broker_up": round(max(c for _, c in up)),
        "acquisition_docs_per_cpu_s_broker_down": round(max(c for _, c in down)),
        "ratio_down_vs_up_cpu": round(max(c for _, c in down) / max(c for _, c in up), 3),
        "ratio_down_vs_up_target": 0.95,
        "guard_us_per_payload_1_key": round(guard_1, 2),
        f"guard_us_per_payload_{args.keys}_keys": round(guard_many, 2),
        "guard_ratio_many_vs_1_key": round(guard_many / guard_1, 3),
        "messages": args.messages,
        "documents": args.documents,
        "window": args.window,
        "repeats": args.repeats,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "broker": "mosquitto, default settings",
        "publisher_tcp_nodelay": True,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--documents", type=int, default=50_000)
    parser.add_argument(
        "--window", type=int, default=20, help="QoS 1 publishes in flight (paho's default: 20)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keys", type=int, default=5000, help="keys registered with the guard")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))

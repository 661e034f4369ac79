"""A key-generating run with a real MQTT publisher: no key bit reaches the broker or the disk.

Everything the run published (recorded by a subscriber on a private Mosquitto) and every
file of its run folder (events.jsonl, run.log, summary.json, metadata, the qcodes database)
is scanned for every stored key in raw, hex, base64 and bit form. The publisher gets an
*empty* secret registry, so its own guard cannot hide a leak by the key-generation code:
whatever that code emits is published and scanned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.keygen.plan import generate_key
from labctl.runner.engine import RunEngine
from labctl.secrets import SecretRegistry
from labctl.station import Station, load_config
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import find_leaks, recording
from labctl.stream.settings import MqttSettings
from tests.experiments.keygen.keygen_helpers import store_rows, truth_clock_map, write_config

LAB, NODE = "sim-lab", "alice-bob"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


async def test_keygen_run_publishes_no_key_material(broker: Mosquitto, tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    settings = MqttSettings.from_url(broker.url)
    async with (
        recording(settings, "#", client_id="leak-scan") as rec,
        MqttPublisher(
            settings, lab=LAB, node=NODE, outbox_dir=tmp_path / "outbox", secrets=SecretRegistry()
        ) as publisher,
    ):
        station = Station.from_config(config)
        async with station:
            clock_map = truth_clock_map(station.world)

            async def plan(run: Any) -> Any:
                run.publisher = publisher  # per-block link metrics (generate_key looks for it)
                return await generate_key(run, clock_map)

            engine = RunEngine(station, runs_dir=Path(config.storage.runs_dir), sinks=[publisher])
            result = await engine.run(plan, plan_name="keygen-leak-scan", duration_s=1.5)
        assert result.status == "ok", result.reason
        assert await publisher.flush(10)
        run_id = result.path.name
        assert await rec.wait_for(
            lambda: any(d.get("kind") == "stop" for d in rec.runs.documents.get(run_id, [])), 10
        )
    assert publisher.refused == 0
    keys = [key for _, _, key in store_rows(tmp_path / "runs" / "keys-bob.sqlite")]
    assert len(keys) == 2 and keys == [
        key for _, _, key in store_rows(tmp_path / "runs" / "keys-alice.sqlite")
    ]
    # What was published: the run's documents with both per-block qkd events, and link metrics.
    topics = [topic for topic, _ in rec.messages]
    base = f"labctl/v1/{LAB}/{NODE}"
    assert topics.count(f"{base}/run/{run_id}/qkd") == 2
    for metric in ("qber", "skr", "sifted", "key_stored"):
        assert topics.count(f"{base}/link/alice-bob/{metric}") == 2, metric
    assert find_leaks(rec.messages, keys) == []
    # Every file the run left on disk.
    files = sorted(p for p in result.path.rglob("*") if p.is_file())
    names = {p.name for p in files}
    assert {"events.jsonl", "run.log", "summary.json"} <= names
    on_disk = [(str(p), p.read_bytes()) for p in files]
    assert find_leaks(on_disk, keys) == []
    # The scan is not vacuous: one key's hex, or a base64 slice of it, in a payload is found.
    import base64

    planted = [("planted/hex", keys[0].hex().encode()), ("planted/b64", base64.b64encode(keys[1]))]
    assert find_leaks(planted, keys) == ["planted/hex", "planted/b64"]

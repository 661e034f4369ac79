"""Publisher features against Mosquitto: retained state/meta, last will, telemetry, links,
and the key-material guard (with a scan of everything a key-generating run published)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from labctl.documents import Document
from labctl.interfaces.errors import ConfigError
from labctl.secrets import SecretLeakError, SecretRegistry, fingerprint
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import find_leaks, recording
from labctl.stream.settings import MqttSettings

NODE = "labctl/v1/lab/alice"


async def test_state_meta_telemetry_and_links(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    async with MqttPublisher(settings, lab="lab", node="alice", outbox_dir=tmp_path / "o") as pub:
        pub.set_meta({"labctl_version": "0.1.0", "simulated": True})
        pub.set_state("running")
        pub.publish_link_metric("alice-bob", "qber", {"qber_z": 0.02, "qber_x": 0.03}, ts=5.0)
        pub.publish_link_metric("alice-bob", "skr", {"skr_bps": 1200.5}, ts=5.0)
        assert await pub.flush(10)
        with pytest.raises(ConfigError, match="unit"):
            pub.publish_telemetry("laser", "power", 1.0)
        with pytest.raises(ConfigError, match="unknown link metric"):
            pub.publish_link_metric("alice-bob", "speed", {"x": 1})
        with pytest.raises(ConfigError, match="takes fields"):
            pub.publish_link_metric("alice-bob", "skr", {"skr_kbps": 1})
        with pytest.raises(ConfigError, match="state"):
            pub.set_state("lost")
        # A late subscriber gets the retained topics right away.
        async with recording(settings, f"{NODE}/#", client_id="late") as rec:
            assert await rec.wait_for(lambda: len(rec.messages) >= 4, 10)
            pub.publish_telemetry("det-0", "count_rate_hz", 1234.0, ts=7.0)
            assert await rec.wait_for(lambda: len(rec.messages) >= 5, 10)
    got = dict(rec.messages)
    assert got[f"{NODE}/$state"] == b"running"
    assert json.loads(got[f"{NODE}/$meta"])["simulated"] is True
    assert json.loads(got[f"{NODE}/link/alice-bob/qber"]) == {
        "ts": 5.0, "link_id": "alice-bob", "qber_z": 0.02, "qber_x": 0.03,
    }  # fmt: skip
    assert json.loads(got[f"{NODE}/tele/det-0/count_rate_hz"]) == {
        "ts": 7.0,
        "count_rate_hz": 1234.0,
    }


CHILD = """
import asyncio, sys
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings

async def main() -> None:
    pub = MqttPublisher(MqttSettings.from_url(sys.argv[1]), lab="lab", node="alice",
                        outbox_dir=sys.argv[2])
    await pub.start()
    pub.set_state("running")
    while pub.connected is False or pub.state != "running":
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    print("up", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_last_will_marks_a_dead_node_lost(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    async with recording(settings, f"{NODE}/$state") as rec:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, mosquitto.url, str(tmp_path / "o"),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"up"
        assert await rec.wait_for(lambda: (f"{NODE}/$state", b"running") in rec.messages, 10)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        assert await rec.wait_for(lambda: rec.messages[-1] == (f"{NODE}/$state", b"lost"), 10)


def keygen_like_run(run_id: str, key: bytes) -> list[Document]:
    """Documents around a key: ids, lengths, fingerprints, QBER, never the bits."""
    now = time.time()
    docs = [Document("start", run_id, 0, now, "primary", {"plan": "keygen"})]
    for block in range(1, 6):
        docs.append(
            Document("event", run_id, block, now, "qkd", {
                "block": block, "sifted_bits": 40_000, "qber_z": 0.021, "secret_bits": 8192,
                "key_id": f"k-{block}", "key_fingerprint": fingerprint(key),
            })
        )  # fmt: skip
    docs.append(Document("stop", run_id, 6, now, "primary", {"exit_status": "ok"}))
    return docs


async def test_no_key_material_reaches_the_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    key = bytes((i * 37 + 11) % 256 for i in range(128))
    registry = SecretRegistry()
    registry.register(key)  # what the key store does for every key it holds
    settings = MqttSettings.from_url(mosquitto.url)
    async with recording(settings, f"{NODE}/#") as rec:
        async with MqttPublisher(
            settings, lab="lab", node="alice", outbox_dir=tmp_path / "o", secrets=registry
        ) as pub:
            pub.set_state("running")
            for document in keygen_like_run("r-key", key):
                pub.emit(document)
            # A buggy plan that puts key bits into a document: refused, not published.
            pub.emit(Document("event", "r-key", 7, time.time(), "qkd", {"key_hex": key.hex()}))
            with pytest.raises(SecretLeakError):
                pub.publish_telemetry("kms", "state", "last key " + key[-48:].hex())
            with pytest.raises(SecretLeakError):
                pub.set_meta({"note": key[:40].hex()})
            assert pub.refused == 3  # the document, the telemetry, the meta
            assert await pub.flush(10)
        assert await rec.wait_for(lambda: len(rec.runs.seqs("r-key")) == 7, 10)
    assert rec.runs.seqs("r-key") == list(range(7))
    assert find_leaks(rec.messages, [key]) == []
    # The scan is not vacuous: the same payload, had it got past the guard, is found.
    planted = [*rec.messages, (f"{NODE}/run/r-key/qkd", json.dumps({"k": key.hex()}).encode())]
    assert find_leaks(planted, [key]) == [f"{NODE}/run/r-key/qkd"]

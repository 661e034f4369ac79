"""docs/asyncapi.yaml against what labctl actually publishes, field for field.

Everything a node publishes during key generation ($state, $meta as ``labctl run`` builds it,
a run document, telemetry, and the link metrics of the key generation plan plus the other
GS QKD 015 metrics) goes through a real publisher to Mosquitto; each payload a subscriber
receives is validated against the message schemas of the channel its topic matches. The
link and $meta schemas forbid fields they do not list, so an undocumented field fails, and
each link metric's documented fields must equal the fields the code accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from experiments.keygen.plan import _publish_link
from labctl.cli.runsetup import node_meta
from labctl.documents import Document
from labctl.link.nodes import BlockResult
from labctl.station.loader import load_config
from labctl.station.station import Station
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.payloads import LINK_METRICS, LINK_STATUSES
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "asyncapi.yaml"


def load() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DOC.read_text())
    return doc


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def channel_messages(doc: dict[str, Any], topic: str) -> tuple[str, dict[str, Any]]:
    """(channel name, {message name: message}) of the one channel whose address matches."""
    found = []
    for name, channel in doc["channels"].items():
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(channel["address"]))
        if re.fullmatch(pattern, topic):
            messages = {k: resolve(doc, v["$ref"]) for k, v in channel["messages"].items()}
            found.append((name, messages))
    assert len(found) == 1, (topic, found)
    return found[0]


def link_messages(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metric -> its message (messages of the link channel carry the metric as name)."""
    _, messages = channel_messages(doc, "labctl/v1/l/n/link/x/skr")
    return {m["name"]: m for m in messages.values()}


def test_link_metrics_documented_field_for_field() -> None:
    doc = load()
    messages = link_messages(doc)
    assert set(messages) == set(LINK_METRICS)
    assert set(doc["channels"]["link"]["parameters"]["metric"]["enum"]) == set(LINK_METRICS)
    for metric, fields in LINK_METRICS.items():
        payload = messages[metric]["payload"]
        assert set(payload["properties"]) == {"ts", "link_id"} | fields, metric
        assert payload["additionalProperties"] is False, metric
    status = messages["status"]["payload"]["properties"]["status"]
    assert tuple(status["enum"]) == LINK_STATUSES


def block(secret_bits: int) -> BlockResult:
    return BlockResult(
        block=3, status="key" if secret_bits else "no-key", reason="ok", pulses=10**8,
        detections=40_000, sifted_bits=20_000, key_basis_bits=18_000, test_basis_bits=2_000,
        qber_z=0.021, qber_x=0.034, disclosed_bits=2_500, ec_efficiency=1.1, round_trips=30,
        channel_uses=60, secret_bits=secret_bits, key_id=None, acquired_s=0.1,
    )  # fmt: skip


class Run:
    """What the plan's link publisher reads from a run: its publisher and log."""

    def __init__(self, publisher: MqttPublisher) -> None:
        import logging

        self.publisher = publisher
        self.log = logging.getLogger("test.asyncapi")


async def test_published_payloads_match_the_asyncapi_file(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    doc = load()
    config = load_config(REPO / "configs" / "sim.yaml")
    station = Station.from_config(config)
    settings = MqttSettings.from_url(mosquitto.url)
    base = f"labctl/v1/{config.lab}/{config.node}"
    async with recording(settings, f"{base}/#", client_id="asyncapi-check") as rec:
        async with MqttPublisher(
            settings, lab=config.lab, node=config.node, outbox_dir=tmp_path / "outbox"
        ) as pub:
            pub.set_meta(node_meta(config, station, "main"))
            pub.set_state("running")
            pub.emit(Document("event", "r-1", 0, 1.0, "qkd", {"qber_z": 0.02, "skr_bps": 10.0}))
            pub.publish_telemetry("detectors", "count_rate_hz", 1234.0, ts=1.0)
            run = Run(pub)
            _publish_link(run, "alice-bob", block(4096))  # what the key generation plan sends
            _publish_link(run, "alice-bob", block(0))
            pub.publish_link_metric("alice-bob", "attenuation", {"channel_att_db": 5.7}, ts=2.0)
            pub.publish_link_metric(
                "alice-bob",
                "skr",
                {"skr_bps": 900.0, "eskr_bps": 850.0, "expected_consumption_bps": 256.0},
                ts=2.0,
            )
            # The KME of a network node (tests/kme/test_kme_relay.py checks its own payloads).
            pub.publish_link_metric(
                "alice-bob",
                "key_pool",
                {"stored_key_count": 12, "max_key_count": 100000, "key_size_bits": 256},
            )
            pub.publish_link_metric(
                "alice-bob",
                "relay",
                {
                    "relayed_keys_count": 3,
                    "relayed_bits": 768,
                    "origin_keys_count": 3,
                    "hop_keys_count": 0,
                    "end_keys_count": 0,
                },
            )
            assert await pub.flush(10)
        assert await rec.wait_for(lambda: len(rec.messages) >= 18, 10), rec.messages
    seen_channels: set[str] = set()
    seen_metrics: set[str] = set()
    for topic, payload in rec.messages:
        channel, messages = channel_messages(doc, topic)
        seen_channels.add(channel)
        if channel == "state":
            if payload == b"":
                continue  # the retained state cleared when the publisher closed
            schema = messages["state"]["payload"]
            jsonschema.validate(payload.decode(), schema)
            continue
        data = json.loads(payload)
        if channel == "link":
            metric = topic.rsplit("/", 1)[1]
            seen_metrics.add(metric)
            jsonschema.validate(data, link_messages(doc)[metric]["payload"])
        else:
            (message,) = messages.values()
            jsonschema.validate(data, message["payload"])
            if channel == "meta":  # documented field for field both ways
                assert set(data) == set(message["payload"]["properties"])
    assert seen_channels >= {"state", "meta", "run", "tele", "link"}
    assert seen_metrics == set(LINK_METRICS)
    statuses = [json.loads(p)["status"] for t, p in rec.messages if t.endswith("/status")]
    assert statuses == ["ACTIVE", "PASSIVE"]


def test_link_payload_refuses_values_off_the_spec() -> None:
    import pytest

    from labctl.interfaces.errors import ConfigError
    from labctl.stream.payloads import link_payload

    with pytest.raises(ConfigError, match="not one of ACTIVE, PASSIVE, PENDING, OFF"):
        link_payload("l", "status", {"status": "UP"}, 1.0)
    with pytest.raises(ConfigError, match="must be a number"):
        link_payload("l", "attenuation", {"channel_att_db": "5"}, 1.0)
    with pytest.raises(ConfigError, match="takes fields"):
        link_payload("l", "attenuation", {"attenuation_db": 5.0}, 1.0)  # the pre-015 name
    assert json.loads(link_payload("l", "status", {"status": "OFF"}, 1.0))["status"] == "OFF"

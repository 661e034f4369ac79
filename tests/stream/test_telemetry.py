"""Runner-level telemetry: instruments' health readings reach ``tele/{instrument}/{quantity}``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from labctl.interfaces.instrument import Health
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings
from labctl.stream.telemetry import periodic_telemetry, quantity_name


class Detector:
    """A minimal instrument whose health carries readings."""

    def __init__(self) -> None:
        self.calls = 0

    async def health(self) -> Health:
        self.calls += 1
        return Health(True, "", {"count_rate_hz": 1000.0 + self.calls, "Bias V": 2.5, "mode": "x"})


class Broken:
    async def health(self) -> Health:
        raise OSError("link down")


def test_quantity_names_follow_the_topic_rules() -> None:
    assert quantity_name("Bias V") == "bias_v"
    assert quantity_name("3dB") == "q_3db"


async def test_health_readings_are_published_periodically(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    seen: dict[str, dict[str, object]] = {}
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as sub:
        await sub.subscribe("labctl/v1/lab/bob/tele/#")
        async with MqttPublisher(settings, lab="lab", node="bob", outbox_dir=tmp_path) as pub:
            instruments: dict[str, Detector | Broken] = {"det-h": Detector(), "switch": Broken()}
            async with periodic_telemetry(instruments, pub, interval_s=0.1):

                async def collect() -> None:
                    async for message in sub.messages:
                        assert isinstance(message.payload, bytes)
                        seen[message.topic.value] = json.loads(message.payload)
                        if len(seen) >= 2:
                            return

                await asyncio.wait_for(collect(), 10)
    base = "labctl/v1/lab/bob/tele/det-h/"
    assert set(seen) == {base + "count_rate_hz", base + "bias_v"}  # "mode" has no unit
    assert seen[base + "bias_v"]["bias_v"] == 2.5

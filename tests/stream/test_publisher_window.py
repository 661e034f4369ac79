"""The sliding window of in-flight QoS 1 publishes keeps outbox order and ack semantics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labctl.documents import Document
from labctl.interfaces.errors import ConfigError
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.outbox import Outbox
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings


def _doc(seq: int) -> Document:
    return Document("event", "win-run", seq, time.time(), "primary", {"index": seq})


@pytest.mark.parametrize(("window", "memory_capacity"), [(7, 10_000), (16, 50), (1, 10_000)])
async def test_every_document_arrives_once_in_order(
    mosquitto: Mosquitto, tmp_path: Path, window: int, memory_capacity: int
) -> None:
    n = 1000
    settings = MqttSettings.from_url(mosquitto.url)
    async with recording(settings, "labctl/v1/lab/win/run/#") as rec:
        publisher = MqttPublisher(
            settings,
            lab="lab",
            node="win",
            outbox_dir=tmp_path / "outbox",
            window=window,
            memory_capacity=memory_capacity,  # 50: most messages are read back from disk
        )
        async with publisher:
            assert await publisher.wait_connected(10)
            for seq in range(n):
                publisher.emit(_doc(seq))
            assert await publisher.flush(60)
            assert publisher.published == n and publisher.outbox.pending == 0
        assert await rec.wait_for(lambda: len(rec.runs.seqs("win-run")) == n, 20)
    assert rec.runs.arrival_seqs("win-run") == list(range(n))
    assert rec.runs.duplicates == 0
    if memory_capacity < n:
        assert publisher.stats()["spilled"] > 0
    # Acknowledged means gone: a new outbox on the same folder finds nothing to re-send.
    reopened = Outbox(tmp_path / "outbox")
    assert reopened.recovered == 0
    reopened.close()


def test_window_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="window"):
        MqttPublisher(MqttSettings(), lab="lab", node="win", outbox_dir=tmp_path, window=0)

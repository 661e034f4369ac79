"""Nothing is lost when the broker dies, stays away, or the publishing process dies."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from labctl.documents import Document
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.outbox import Outbox
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

RUN = "r-restart"


def doc(seq: int, run_id: str = RUN) -> Document:
    kind = "start" if seq == 0 else "event"
    return Document(kind, run_id, seq, time.time(), "primary", {"counts": seq, "delay_ps": 7})


async def acquire(pub: MqttPublisher, start: int, stop: int, period_s: float = 0.002) -> None:
    """An acquisition loop: documents at a steady pace, never awaiting MQTT."""
    for seq in range(start, stop):
        pub.emit(doc(seq))
        if seq % 5 == 0:
            await asyncio.sleep(period_s)


async def test_broker_sigkill_mid_run_loses_nothing(mosquitto: Mosquitto, tmp_path: Path) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    total = 1500
    async with recording(settings, "labctl/v1/lab/alice/run/#") as rec:
        async with MqttPublisher(
            settings, lab="lab", node="alice", outbox_dir=tmp_path / "outbox"
        ) as pub:
            await acquire(pub, 0, 500)
            mosquitto.kill()
            await acquire(pub, 500, 900)  # broker gone: all of this waits on disk
            assert not pub.connected
            mosquitto.start()
            await acquire(pub, 900, total)
            assert await pub.flush(30)
        await rec.wait_for(lambda: len(rec.runs.seqs(RUN)) >= total, 30)
    seqs = rec.runs.seqs(RUN)
    assert seqs == list(range(total)), f"missing {sorted(set(range(total)) - set(seqs))[:10]}"
    assert rec.reconnects >= 1


async def test_outage_longer_than_memory_queue_spills_to_disk(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    total = 1200
    async with recording(settings, "labctl/v1/lab/alice/run/#") as rec:
        async with MqttPublisher(
            settings,
            lab="lab",
            node="alice",
            outbox_dir=tmp_path / "outbox",
            memory_capacity=100,
        ) as pub:
            await acquire(pub, 0, 200)
            assert await pub.flush(10)
            mosquitto.stop()
            await acquire(pub, 200, 1000, period_s=0.0)  # 8x the memory queue
            assert pub.outbox.pending >= 700
            assert pub.outbox.spilled >= 700
            await asyncio.sleep(1.0)  # the broker stays away for a while
            mosquitto.start()
            await acquire(pub, 1000, total)
            assert await pub.flush(30)
            assert pub.outbox.disk_reads >= 700
        assert await rec.wait_for(lambda: len(rec.runs.seqs(RUN)) >= total, 30)
    assert rec.runs.seqs(RUN) == list(range(total))
    # A broker stopped cleanly loses nothing it acknowledged: arrival order is seq order.
    assert rec.runs.arrival_seqs(RUN) == list(range(total))
    # The cursor was persisted on close: a new outbox on the folder has nothing to replay.
    reopened = Outbox(tmp_path / "outbox")
    assert reopened.recovered == 0
    reopened.close()


CHILD = """
import asyncio, sys, time
from labctl.documents import Document
from labctl.stream.publisher import MqttPublisher
from labctl.stream.recorder import recording
from labctl.stream.settings import MqttSettings

async def main() -> None:
    pub = MqttPublisher(MqttSettings.from_url(sys.argv[1]), lab="lab", node="alice",
                        outbox_dir=sys.argv[2], memory_capacity=50)
    await pub.start()
    for seq in range(int(sys.argv[3])):
        pub.emit(Document("event", "r-crash", seq, time.time(), "primary", {"counts": seq}))
    print("emitted", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_process_killed_with_unsent_messages_replays_them(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")  # not started yet: the child cannot send
    outbox = tmp_path / "outbox"
    total = 700
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, broker.url, str(outbox), str(total),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line.strip() == b"emitted"
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    with broker:
        settings = MqttSettings.from_url(broker.url)
        async with recording(settings, "labctl/v1/lab/alice/run/#") as rec:
            async with MqttPublisher(settings, lab="lab", node="alice", outbox_dir=outbox) as pub:
                assert pub.outbox.recovered == total
                assert await pub.flush(30)
            assert await rec.wait_for(lambda: len(rec.runs.seqs("r-crash")) >= total, 30)
        assert rec.runs.seqs("r-crash") == list(range(total))

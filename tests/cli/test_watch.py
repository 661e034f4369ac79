"""``labctl watch`` in a pseudo-terminal shows a live run; ``--json`` prints the messages."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import sys
import time
from pathlib import Path

from labctl.documents import Document
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")


def read_until(fd: int, needles: list[bytes], timeout_s: float) -> bytes:
    """Read a pty until every needle appeared in the (ANSI-stripped) output."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
            text = ANSI.sub(b"", seen)
            if all(n in text for n in needles):
                return text
    return ANSI.sub(b"", seen)


def run_documents(run_id: str) -> list[Document]:
    now = time.time()
    return [
        Document("start", run_id, 0, now, "primary", {"plan": "keygen"}),
        Document(
            "event", run_id, 1, now, "qkd",
            {"qber_z": 0.0213, "qber_x": 0.0387, "sifted_rate_bps": 54321.0, "skr_bps": 12345.0},
        ),
        Document("event", run_id, 2, now, "primary", {"detector_counts": {"det-h": 4321}}),
        Document("event", run_id, 3, now, "calibration",
                 {"instrument": "epc", "calibrated_ts": now - 90}),
        Document("event", run_id, 4, now, "alarm", {"severity": "warning", "message": "qber-high"}),
    ]  # fmt: skip


async def test_watch_dashboard_in_a_pty_shows_the_run(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "140", "LINES": "60", "TERM": "xterm-256color"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labctl.cli", "watch", "--broker", broker.url,
            "--lab", "lab", "--node", "alice", "--duration", "40s",
            stdin=slave, stdout=slave, stderr=slave, env=env,
        )  # fmt: skip
        os.close(slave)
        try:
            # The dashboard is up (it renders before any message) before we publish.
            assert b"labctl watch" in await asyncio.to_thread(
                read_until, master, [b"labctl watch"], 30
            )
            settings = MqttSettings.from_url(broker.url)
            async with MqttPublisher(
                settings, lab="lab", node="alice", outbox_dir=tmp_path / "outbox"
            ) as pub:
                pub.set_state("running")
                for document in run_documents("r-watch"):
                    pub.emit(document)
                pub.publish_telemetry("det-v", "count_rate_hz", 987.0)
                assert await pub.flush(10)
                needles = [
                    b"running", b"r-watch", b"2.13 %", b"3.87 %", b"54,321", b"12,345",
                    b"det-h", b"4,321", b"det-v", b"987", b"epc", b"qber-high",
                ]  # fmt: skip
                screen = await asyncio.to_thread(read_until, master, needles, 30)
            missing = [n for n in needles if n not in screen]
            assert not missing, (
                f"not on screen: {missing}\n{screen[-3000:].decode(errors='replace')}"
            )
            # calibration age ~90 s (render time adds a little)
            age = re.search(rb"epc\W+(\d+)", screen)
            assert age is not None and 89 <= int(age.group(1)) <= 130
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
            os.close(master)


async def test_watch_json_prints_one_message_per_line(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labctl.cli", "watch", "--broker", broker.url,
            "--lab", "lab", "--node", "alice", "--json", "--duration-s", "30",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await asyncio.sleep(1.5)  # let it subscribe
            async with MqttPublisher(
                MqttSettings.from_url(broker.url), lab="lab", node="alice",
                outbox_dir=tmp_path / "outbox",
            ) as pub:  # fmt: skip
                for document in run_documents("r-json"):
                    pub.emit(document)
                assert await pub.flush(10)
            seqs: list[int] = []
            assert proc.stdout is not None
            while len(seqs) < 5:
                line = await asyncio.wait_for(proc.stdout.readline(), 20)
                record = json.loads(line)
                if "/run/r-json/" in record["topic"]:
                    assert record["payload"]["run_id"] == "r-json"
                    seqs.append(record["payload"]["seq"])
            assert seqs == [0, 1, 2, 3, 4]
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)


async def test_watch_rejects_bad_ids() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labctl.cli", "watch", "--broker", "mqtt://127.0.0.1:1",
        "--lab", "Lab_1", "--node", "alice",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"lab" in err and b"Lab_1" in err


async def test_watch_finds_every_node_from_meta(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        settings = MqttSettings.from_url(broker.url)
        async with (
            MqttPublisher(settings, lab="lab", node="alice", outbox_dir=tmp_path / "a") as alice,
            MqttPublisher(settings, lab="lab", node="bob", outbox_dir=tmp_path / "b") as bob,
        ):
            alice.set_meta({"node": "alice"})
            bob.set_meta({"node": "bob"})
            assert await alice.wait_connected(10) and await bob.wait_connected(10)
            await asyncio.sleep(0.5)  # retained $meta is at the broker
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "labctl.cli", "watch", "--broker", broker.url,
                "--json", "--duration", "20s",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                assert proc.stderr is not None and proc.stdout is not None
                listed = await asyncio.wait_for(proc.stderr.readline(), 20)
                assert b"2 nodes" in listed and b"lab/alice" in listed and b"lab/bob" in listed
                topics: set[str] = set()
                while not {"tele/det-h/count_rate_hz", "tele/laser/power_mw"} <= {
                    t.split("/", 4)[-1] for t in topics
                }:  # QoS 0 telemetry: publish until the watcher, subscribing now, sees both
                    bob.publish_telemetry("det-h", "count_rate_hz", 1234.0)
                    alice.publish_telemetry("laser", "power_mw", 1.5)
                    line = await asyncio.wait_for(proc.stdout.readline(), 20)
                    topics.add(json.loads(line)["topic"])
                assert "labctl/v1/lab/bob/tele/det-h/count_rate_hz" in topics
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 10)


async def test_watch_of_a_dead_broker_is_an_error_exit() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labctl.cli", "watch", "--broker", "mqtt://127.0.0.1:1",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"cannot reach broker mqtt://127.0.0.1:1" in err
    assert b"Traceback" not in err and b"never retrieved" not in err


async def test_watch_of_an_empty_broker_says_so(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labctl.cli", "watch", "--broker", broker.url,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert b"no labctl node" in err

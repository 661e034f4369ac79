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
from typing import Any

import pytest
import yaml

from labctl.documents import Document
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings

REPO = Path(__file__).resolve().parents[2]
SIM = REPO / "configs" / "sim.yaml"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]|\r")


def read_until(
    fd: int, needles: list[bytes], timeout_s: float, patterns: tuple[bytes, ...] = ()
) -> bytes:
    """Read a pty until every needle appeared in the (ANSI-stripped) output and every
    regular expression of ``patterns`` matched it (a frame may arrive in pieces)."""
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
            if all(n in text for n in needles) and all(re.search(p, text) for p in patterns):
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
            "--lab", "lab", "--node", "alice", "--json", "--duration-s", "60",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            async with MqttPublisher(
                MqttSettings.from_url(broker.url), lab="lab", node="alice",
                outbox_dir=tmp_path / "outbox",
            ) as pub:  # fmt: skip
                # The retained $state/$meta reach the watcher once it subscribed: only then
                # are run documents (not retained) sent.
                pub.set_state("running")
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
                assert json.loads(line)["topic"].startswith("labctl/v1/lab/alice/$")
                for document in run_documents("r-json"):
                    pub.emit(document)
                assert await pub.flush(10)
            seqs: list[int] = []
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


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_watch_with_only_the_broker_fills_every_panel_of_a_real_run(tmp_path: Path) -> None:
    """``labctl watch --broker URL`` alone, on a real ``labctl run`` of the sim station."""
    data: dict[str, Any] = yaml.safe_load(SIM.read_text())
    data["qkd"] = {"block_interval_s": 1.0}
    data["mqtt"] = {"telemetry_interval_s": 0.5}
    data["storage"] = {
        "runs_dir": str(tmp_path / "runs"),
        "calibration_store": str(tmp_path / "runs" / "calibration.json"),
        "key_store": str(tmp_path / "runs" / "keys.sqlite"),
    }
    config = tmp_path / "sim.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "140", "TERM": "xterm-256color"}
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labctl", "run", str(config), "--duration", "40s",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    master = -1
    watch = None
    try:
        assert run.stderr is not None
        url = None
        while url is None:
            line = await asyncio.wait_for(run.stderr.readline(), 120)
            assert line, "the run ended before it streamed"
            found = re.search(rb"mqtt://127\.0\.0\.1:\d+", line)
            url = found.group(0).decode() if found else None
        drain = asyncio.ensure_future(run.communicate())
        master, slave = pty.openpty()
        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labctl", "watch", "--broker", url, "--duration", "5m",
            stdin=slave, stdout=slave, stderr=slave, env={**env, "LINES": "60"},
        )  # fmt: skip
        os.close(slave)
        needles = [b"sim-lab/alice-bob", b"state: running", b"tagger-bob ch1", b" %"]
        panels = (
            rb"\d+\.\d\d %",  # a QBER
            rb"tagger-bob ch1\W+[1-9][\d,]*",  # a count rate
            rb"pc-bob\W+\d+",  # a calibration's age
        )
        screen = await asyncio.to_thread(read_until, master, needles, 240, panels)
        missing = [n for n in needles if n not in screen]
        missing += [p for p in panels if not re.search(p, screen)]
        assert not missing, f"not on screen: {missing}\n{screen[-4000:].decode(errors='replace')}"
        await asyncio.wait_for(drain, 300)
        assert run.returncode == 0
        # The run ended and its embedded broker with it: the watcher says so, no traceback.
        after = await asyncio.to_thread(read_until, master, [b"broker:"], 30)
        for stray in (b"Traceback", b"never retrieved"):
            at = after.find(stray)
            assert at < 0, after[max(0, at - 2000) : at + 2000].decode(errors="replace")
    finally:
        for proc in (run, watch):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 20)
        if master >= 0:
            os.close(master)


async def test_watch_retries_a_broker_that_does_not_answer_until_its_timeout() -> None:
    """A listener that accepts and stays silent: retried until --timeout, then exit 1."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, never answer CONNECT

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labctl.cli", "watch", "--broker", f"mqtt://127.0.0.1:{port}",
            "--timeout", "7s",
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 240)
        elapsed_s = time.monotonic() - started
    finally:
        server.close()
        for writer in held:
            writer.close()
    assert proc.returncode == 1, err
    assert f"cannot reach broker mqtt://127.0.0.1:{port}".encode() in err
    assert len(held) >= 2  # connected again after the first attempt timed out
    assert elapsed_s >= 7.0
    assert b"Traceback" not in err and b"never retrieved" not in err

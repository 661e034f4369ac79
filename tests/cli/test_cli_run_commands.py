"""``labctl run`` / ``labctl resume`` as real subprocesses, driven over a test Mosquitto.

Covers the exit paths the signal tests do not: a single Ctrl-C (graceful abort) and the
``cmd/abort`` command, plus pause/resume over MQTT, commands that must be refused without
disturbing the run, and a killed-then-resumed run whose seq numbering continues on MQTT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labctl.store.events import read_events
from labctl.stream.client import make_client
from labctl.stream.commands import make_request
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.recorder import Recorder, recording
from labctl.stream.settings import CommandAuth, MqttSettings
from tests.cli.test_cli_run_exit_paths import (
    _config,
    _finish,
    _run_dir,
    _safe_state_ran_last,
    _start,
    _stop_doc,
    _wait_for_index,
)

pytestmark = pytest.mark.slow

TOKEN = "operator-token-0123456789abcdef"
BASE = "labctl/v1/testlab/alice"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    try:
        yield mosquitto
    finally:
        mosquitto.stop()


def _mqtt_config(tmp_path: Path, url: str, *, commands: bool) -> Path:
    path = _config(tmp_path)
    text = path.read_text() + f"mqtt:\n  url: {url}\n"
    if commands:
        text += f"  commands:\n    mode: token\n    token: {TOKEN}\n"
    path.write_text(text)
    return path


def _states(rec: Recorder) -> list[str]:
    return [p.decode() for t, p in rec.messages if t == f"{BASE}/$state"]


def _primary_indices(rec: Recorder) -> list[int]:
    return [
        d["data"]["index"]
        for docs in rec.runs.documents.values()
        for d in docs
        if d["stream"] == "primary" and d["kind"] == "event" and "index" in d["data"]
    ]


def _replies(rec: Recorder, accept: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    out = []
    for topic, payload in rec.messages:
        if topic.startswith(f"{BASE}/cmd/") and topic.endswith("/reply"):
            reply = json.loads(payload)
            if accept(reply):
                out.append(reply)
    return out


async def _command(
    rec: Recorder, url: str, action: str, payload: bytes, accept: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Publish to ``cmd/{action}`` until a reply ``accept`` matches (the listener may still
    be subscribing when the run starts); the reply."""
    async with make_client(MqttSettings.from_url(url), f"operator-{action}") as client:
        for _ in range(10):
            await client.publish(f"{BASE}/cmd/{action}", payload, qos=1)
            if await rec.wait_for(lambda: _replies(rec, accept), 3):
                return _replies(rec, accept)[0]
    raise AssertionError(f"no reply to cmd/{action}")


async def _authorised(
    rec: Recorder, url: str, action: str, request_id: str, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Send a correctly signed command and return its (successful) reply."""
    request = make_request(CommandAuth(mode="token", secret=TOKEN), action, request_id, args)
    reply = await _command(rec, url, action, request, lambda r: r["request_id"] == request_id)
    assert reply["ok"] is True, reply
    return reply


def _runner_actions(rec: Recorder) -> list[str]:
    return [
        d["data"].get("action")
        for docs in rec.runs.documents.values()
        for d in docs
        if d["stream"] == "runner"
    ]


def test_single_ctrl_c_aborts_at_the_next_checkpoint(tmp_path: Path) -> None:
    proc = _start(
        tmp_path, "run", str(_config(tmp_path)), "--set", "n=100000", "--set", "step_s=0.02"
    )
    _wait_for_index(tmp_path, 3)
    proc.send_signal(signal.SIGINT)
    code, out, err = _finish(proc)
    assert code == 1, err
    stop = _stop_doc(_run_dir(tmp_path))
    assert stop["exit_status"] == "aborted" and stop["reason"] == "SIGINT received"
    assert stop["safe_state"] == "ok" and _safe_state_ran_last(tmp_path)
    assert "aborted (SIGINT received)" in out


async def test_mqtt_commands_pause_resume_refuse_and_abort_a_run(
    tmp_path: Path, broker: Mosquitto
) -> None:
    config = _mqtt_config(tmp_path, broker.url, commands=True)
    async with recording(MqttSettings.from_url(broker.url), f"{BASE}/#") as rec:
        proc = _start(tmp_path, "run", str(config), "--set", "n=100000", "--set", "step_s=0.05")
        try:
            assert await rec.wait_for(lambda: len(_primary_indices(rec)) >= 3, 60)
            # Malformed and unauthorised requests: error replies, the run carries on.
            bad = await _command(
                rec, broker.url, "pause", b"{broken", lambda r: "malformed" in str(r["error"])
            )
            assert bad["ok"] is False and bad["request_id"] is None
            forged = make_request(CommandAuth(secret="not-the-token-0123456789"), "abort", "x-1")
            refused = await _command(
                rec, broker.url, "abort", forged, lambda r: r["request_id"] == "x-1"
            )
            assert refused["ok"] is False and "unauthorised" in refused["error"]
            assert TOKEN not in json.dumps(refused)
            seen = len(_primary_indices(rec))
            assert await rec.wait_for(lambda: len(_primary_indices(rec)) >= seen + 5, 30)
            assert "suspended" not in _states(rec) and proc.poll() is None

            # Pause holds the plan at its next checkpoint: $state suspended, no new events.
            await _authorised(rec, broker.url, "pause", "p-1")
            assert await rec.wait_for(lambda: _states(rec)[-1:] == ["suspended"], 30)
            # Everything emitted before the "paused" event has arrived once it has.
            assert await rec.wait_for(lambda: "paused" in _runner_actions(rec), 30)
            held = len(_primary_indices(rec))
            await asyncio.sleep(1.0)  # 20 steps' worth of run time
            assert len(_primary_indices(rec)) == held
            await _authorised(rec, broker.url, "resume", "r-1")
            assert await rec.wait_for(lambda: _states(rec)[-1:] == ["running"], 30)
            assert await rec.wait_for(lambda: len(_primary_indices(rec)) >= held + 3, 30)

            reply = await _authorised(rec, broker.url, "abort", "a-1", {"reason": "end of shift"})
            assert reply["result"] == {"aborting": True}
            code, out, err = await asyncio.to_thread(_finish, proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
        assert code == 1, err
        assert await rec.wait_for(lambda: _states(rec)[-1:] == ["ready"], 10)
    run = _run_dir(tmp_path)
    stop = _stop_doc(run)
    assert stop["exit_status"] == "aborted"
    assert stop["reason"] == "abort command over MQTT: end of shift"
    assert "aborted (abort command over MQTT: end of shift)" in out
    assert stop["safe_state"] == "ok" and _safe_state_ran_last(tmp_path)
    actions = [e["data"].get("action") for e in read_events(run / "events.jsonl")]
    assert actions.count("paused") == 1 and actions.count("resumed") == 1
    docs = rec.runs.documents[run.name]
    assert docs[-1]["kind"] == "stop" and docs[-1]["data"]["exit_status"] == "aborted"
    indices = _primary_indices(rec)
    assert indices == list(range(len(indices)))  # nothing the refused commands disturbed
    assert "suspended" in _states(rec) and "running" in _states(rec)


def _consistent_checkpoint(run: Path, at_least: int) -> bool:
    """The checkpoint names every event on disk (the plan is between steps, not mid-emit)."""
    try:
        checkpoint = json.loads((run / "checkpoint.json").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return (
        checkpoint["state"]["next"] >= at_least
        and len(read_events(run / "events.jsonl")) == checkpoint["seq_next"]
    )


async def test_resume_continues_the_seq_numbering_on_mqtt(
    tmp_path: Path, broker: Mosquitto
) -> None:
    n = 30
    config = _mqtt_config(tmp_path, broker.url, commands=False)
    async with recording(MqttSettings.from_url(broker.url), f"{BASE}/#") as rec:
        proc = _start(tmp_path, "run", str(config), "--set", f"n={n}", "--set", "step_s=0.3")
        try:
            _wait_for_index(tmp_path, 0)
            run = _run_dir(tmp_path)
            deadline = time.monotonic() + 60
            # Kill while the plan sleeps after a checkpoint, so no event is rolled back
            # (a rolled-back event has already gone out and its seq would be reused).
            while not _consistent_checkpoint(run, 8):
                assert time.monotonic() < deadline, "no checkpoint at index 8"
                await asyncio.sleep(0.02)
            proc.kill()
            await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        # What the killed process had not sent yet waits in its outbox for the resume.
        killed_events = len(read_events(run / "events.jsonl"))

        code, out, err = await asyncio.to_thread(_finish, _start(tmp_path, "resume", str(run)))
        assert code == 0, out + err
        events = read_events(run / "events.jsonl")
        assert await rec.wait_for(lambda: len(rec.runs.seqs(run.name)) == len(events), 10)
    assert rec.runs.seqs(run.name) == list(range(len(events)))
    by_seq = {d["seq"]: d for d in rec.runs.documents[run.name]}
    for event in events:  # MQTT carries exactly what the run folder holds
        doc = by_seq[event["seq"]]
        assert (doc["kind"], doc["stream"], doc["data"]) == (
            event["kind"],
            event["stream"],
            event["data"],
        )
    resumed = [e for e in events if e["data"].get("action") == "resumed"]
    assert len(resumed) == 1 and resumed[0]["seq"] == killed_events
    assert sorted(_primary_indices(rec)) == list(range(n))
    copies: dict[tuple[str, int], set[bytes]] = {}
    for topic, payload in rec.messages:  # a re-sent seq is the same document, byte for byte
        if "/run/" in topic:
            doc = json.loads(payload)
            copies.setdefault((doc["run_id"], doc["seq"]), set()).add(payload)
    assert all(len(p) == 1 for p in copies.values())
    assert _stop_doc(run)["exit_status"] == "ok"

"""Remote commands: authorised ones reach the callback, everything else gets an error reply."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from labctl.interfaces.errors import ConfigError
from labctl.stream.client import make_client
from labctl.stream.commands import CommandListener, make_request
from labctl.stream.mosquitto import Mosquitto
from labctl.stream.recorder import recording
from labctl.stream.settings import CommandAuth, MqttSettings

SECRET = "s3cret-token-0123456789"


def listener(mode: str = "token", settings: MqttSettings | None = None) -> CommandListener:
    auth = CommandAuth(mode=mode, secret=SECRET, max_skew_s=5.0)
    return CommandListener(settings or MqttSettings(), lab="lab", node="bob", auth=auth)


async def test_token_command_calls_back_and_replies_ok() -> None:
    calls: list[dict[str, Any]] = []

    async def on_pause(args: Any) -> dict[str, Any]:
        calls.append(dict(args))
        return {"paused_at_seq": 41}

    cl = listener()
    cl.register("pause", on_pause)
    reply = await cl.handle("pause", make_request(cl.auth, "pause", "req-1", {"reason": "x"}))
    assert reply["ok"] is True and reply["result"] == {"paused_at_seq": 41}
    assert calls == [{"reason": "x"}]


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"args": {}}', "request_id"),
        (b'{"request_id": "r", "args": [], "token": "x"}', "args"),
        (b'{"request_id": "r", "token": "wrong-token-wrong-token"}', "unauthorised"),
        (b'{"request_id": "r"}', "unauthorised"),
        (b"x" * 20000, "malformed"),
    ],
)
async def test_bad_requests_get_error_replies_and_log(
    payload: bytes, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    called = False

    async def on_abort(args: Any) -> None:
        nonlocal called
        called = True

    cl = listener()
    cl.register("abort", on_abort)
    with caplog.at_level(logging.WARNING):
        reply = await cl.handle("abort", payload)
    assert reply["ok"] is False and error in reply["error"]
    assert not called
    assert any("rejected" in r.message for r in caplog.records)
    assert SECRET not in caplog.text and SECRET not in json.dumps(reply)


async def test_hmac_mode_refuses_replays_stale_and_forged() -> None:
    cl = listener("hmac")
    count = 0

    async def on_resume(args: Any) -> None:
        nonlocal count
        count += 1

    cl.register("resume", on_resume)
    good = make_request(cl.auth, "resume", "req-7")
    assert (await cl.handle("resume", good))["ok"]
    replay = await cl.handle("resume", good)
    assert not replay["ok"] and "replay" in replay["error"]
    stale = make_request(cl.auth, "resume", "req-8", ts=time.time() - 60)
    assert "off" in (await cl.handle("resume", stale))["error"]
    forged = json.loads(make_request(cl.auth, "resume", "req-9"))
    forged["args"] = {"evil": True}  # args changed after signing
    assert "bad hmac" in (await cl.handle("resume", json.dumps(forged).encode()))["error"]
    wrong_action = make_request(cl.auth, "abort", "req-10")  # signed for another action
    assert not (await cl.handle("resume", wrong_action))["ok"]
    assert count == 1


async def test_failing_or_slow_callbacks_are_reported_not_raised() -> None:
    async def broken(args: Any) -> None:
        raise RuntimeError("no calibration plan loaded")

    async def slow(args: Any) -> None:
        await asyncio.sleep(10)

    cl = listener()
    cl.callback_timeout_s = 0.2
    cl.register("recalibrate", broken)
    cl.register("pause", slow)
    r1 = await cl.handle("recalibrate", make_request(cl.auth, "recalibrate", "a"))
    assert "RuntimeError: no calibration plan loaded" in r1["error"]
    r2 = await cl.handle("pause", make_request(cl.auth, "pause", "b"))
    assert "did not finish" in r2["error"]
    r3 = await cl.handle("resume", make_request(cl.auth, "resume", "c"))
    assert "not available" in r3["error"]


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="16"):
        CommandListener(MqttSettings(), lab="l", node="n", auth=CommandAuth(secret="short"))
    with pytest.raises(ConfigError, match="unknown command"):
        listener().register("format-disk", lambda args: asyncio.sleep(0))  # type: ignore[arg-type]


async def test_over_mqtt_with_reply_topic(mosquitto: Mosquitto) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    paused = asyncio.Event()

    async def on_pause(args: Any) -> None:
        paused.set()

    cl = listener(settings=settings)
    cl.register("pause", on_pause)
    async with cl, recording(settings, "labctl/v1/lab/bob/cmd/+/reply") as rec:
        await asyncio.wait_for(cl.connected.wait(), 10)
        async with make_client(settings, "operator") as operator:
            await operator.publish("labctl/v1/lab/bob/cmd/pause", b"{broken", qos=1)
            request = make_request(cl.auth, "pause", "op-1")
            await operator.publish("labctl/v1/lab/bob/cmd/pause", request, qos=1)
        await asyncio.wait_for(paused.wait(), 10)
        assert await rec.wait_for(lambda: len(rec.messages) >= 2, 10)
    replies = [json.loads(p) for _, p in rec.messages]
    assert [r["ok"] for r in replies] == [False, True]
    assert replies[1]["request_id"] == "op-1"
    assert all(t == "labctl/v1/lab/bob/cmd/pause/reply" for t, _ in rec.messages)


def _now(payload: bytes) -> bytes:
    """The payload with NOW replaced by the current time (inside the allowed skew)."""
    return payload.replace(b"NOW", repr(time.time()).encode())


HOSTILE_PAYLOADS: list[tuple[bytes, str]] = [
    (b'{"request_id": "r1", "ts": 1, "hmac": "\xc3\xa9\xc3\xa9"}', "off"),
    ('{"request_id": "r1", "ts": NOW, "hmac": "é"}'.encode(), "bad hmac"),
    (b'{"request_id": "r1", "ts": NaN, "hmac": "00"}', "off"),
    (b'{"request_id": "r1", "ts": Infinity, "hmac": "00"}', "off"),
    (b'{"request_id": "r1", "ts": true, "hmac": "00"}', "numeric 'ts'"),
    (b'{"request_id": "r1", "ts": 1.0, "hmac": 7}', "string 'hmac'"),
    (b'{"request_id": "\\ud800", "args": {}}', "request_id"),
    (b'{"request_id": "a\\u0000b", "args": {}}', "request_id"),
    (b'{"request_id": 5}', "request_id"),
    (b'{"request_id": "r1", "args": "x"}', "args"),
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"", "not JSON"),
    (b"[" * 5000, "nested deeper"),
    (b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper"),
    (b"null", "JSON object"),
    (b"x" * 1_000_000, "over 16384 bytes"),
]


@pytest.mark.parametrize(("payload", "error"), HOSTILE_PAYLOADS)
async def test_hostile_payloads_get_an_error_naming_the_field(payload: bytes, error: str) -> None:
    cl = listener("hmac")
    cl.register("pause", lambda args: asyncio.sleep(0))  # type: ignore[arg-type, return-value]
    reply = await cl.handle("pause", _now(payload))
    assert reply["ok"] is False and error in reply["error"], reply
    assert "internal error" not in reply["error"]


async def test_a_lone_surrogate_token_is_refused_not_raised() -> None:
    cl = listener("token")
    reply = await cl.handle("pause", b'{"request_id": "r", "token": "\\udfff"}')
    assert reply["ok"] is False and "bad or missing token" in reply["error"]


async def test_hostile_payloads_over_mqtt_each_get_a_reply_and_the_listener_serves_on(
    mosquitto: Mosquitto,
) -> None:
    settings = MqttSettings.from_url(mosquitto.url)
    paused = asyncio.Event()

    async def on_pause(args: Any) -> dict[str, Any]:
        paused.set()
        return {"weird": float("nan")}  # not JSON: the reply says so instead of dying

    cl = listener("hmac", settings=settings)
    cl.register("pause", on_pause)
    async with cl, recording(settings, "labctl/v1/lab/bob/cmd/+/reply") as rec:
        await asyncio.wait_for(cl.connected.wait(), 10)
        async with make_client(settings, "operator") as operator:
            for payload, _ in HOSTILE_PAYLOADS:
                await operator.publish("labctl/v1/lab/bob/cmd/pause", _now(payload), qos=1)
            await operator.publish("labctl/v1/lab/bob/cmd/ünknown", b"{}", qos=1)
            await operator.publish(
                "labctl/v1/lab/bob/cmd/pause", make_request(cl.auth, "pause", "ok-1"), qos=1
            )
            await operator.publish(
                "labctl/v1/lab/bob/cmd/resume", make_request(cl.auth, "resume", "ok-2"), qos=1
            )
        expected = len(HOSTILE_PAYLOADS) + 3
        assert await rec.wait_for(lambda: len(rec.messages) >= expected, 20), rec.messages
        await asyncio.wait_for(paused.wait(), 10)
    replies = [json.loads(p) for _, p in rec.messages]
    assert all(r["ok"] is False for r in replies[: len(HOSTILE_PAYLOADS)])
    assert rec.messages[len(HOSTILE_PAYLOADS)][0] == "labctl/v1/lab/bob/cmd/invalid/reply"
    assert replies[-2]["request_id"] == "ok-1" and "not serialisable" in replies[-2]["error"]
    assert replies[-1]["request_id"] == "ok-2" and "not available" in replies[-1]["error"]
    assert cl.rejected == expected - 1

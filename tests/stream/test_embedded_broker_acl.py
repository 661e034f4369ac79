"""The embedded broker: anyone local may read; only labctl may publish $state, $meta, cmd/."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from labctl.stream.broker import embedded_broker, is_protected
from labctl.stream.client import make_client
from labctl.stream.recorder import recording
from labctl.stream.session import open_stream
from labctl.stream.settings import MqttSettings


def test_protected_topics_are_state_meta_and_commands() -> None:
    base = "labctl/v1/lab/alice"
    for topic in (f"{base}/$state", f"{base}/$meta", f"{base}/cmd/pause", f"{base}/cmd/x/reply"):
        assert is_protected(topic)
    for topic in (f"{base}/run/r1/primary", f"{base}/tele/laser/power_mw", f"{base}/cmdx"):
        assert not is_protected(topic)


async def test_anonymous_clients_read_but_cannot_forge_state_meta_or_commands(
    tmp_path: Path,
) -> None:
    async with open_stream(None, lab="lab", node="alice", outbox_dir=tmp_path / "ob") as stream:
        assert stream.settings.username == "labctl" and stream.settings.password
        anonymous = MqttSettings(host=stream.settings.host, port=stream.settings.port)
        async with recording(anonymous, "labctl/v1/lab/alice/#") as rec:
            stream.publisher.set_state("running")  # labctl itself: allowed
            assert await rec.wait_for(
                lambda: ("labctl/v1/lab/alice/$state", b"running") in rec.messages, 10
            )
            async with make_client(anonymous, "intruder") as intruder:
                for topic in (
                    "labctl/v1/lab/alice/$state",
                    "labctl/v1/lab/alice/$meta",
                    "labctl/v1/lab/alice/cmd/abort",
                    "labctl/v1/lab/alice/cmd/abort/reply",
                ):
                    await intruder.publish(topic, b"forged", qos=1)
                # An ordinary topic still goes through: the filter is on the protected ones.
                await intruder.publish("labctl/v1/lab/alice/notes", b"hello", qos=1)
            assert await rec.wait_for(
                lambda: ("labctl/v1/lab/alice/notes", b"hello") in rec.messages, 10
            )
            await asyncio.sleep(0.2)
        assert not [m for m in rec.messages if m[1] == b"forged"], rec.messages


async def test_a_wrong_labctl_password_is_refused_at_connect() -> None:
    async with embedded_broker() as access:
        assert access.password not in repr(access)
        host, port = access.url.removeprefix("mqtt://").split(":")
        wrong = MqttSettings(host=host, port=int(port), username="labctl", password="guess")
        with pytest.raises(aiomqtt.MqttError):
            async with make_client(wrong, "impostor"):
                pass
        right = MqttSettings(
            host=host, port=int(port), username=access.username, password=access.password
        )
        async with make_client(right, "labctl-test") as client:
            await client.publish("labctl/v1/lab/alice/$state", b"ok", qos=1)

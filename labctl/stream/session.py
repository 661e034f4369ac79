"""One call that turns the ``mqtt`` config section into a running stream for a node.

``async with open_stream(config.mqtt, lab=..., node=..., outbox_dir=...) as stream:`` starts
the embedded loopback broker when no broker URL is configured, the publisher, and (when
``mqtt.commands`` is configured) the command listener. The runner registers its pause,
resume, abort and recalibrate callbacks on ``stream.commands`` and adds ``stream.publisher``
to its document sinks.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.stream.broker import embedded_broker
from labctl.stream.commands import CommandListener
from labctl.stream.publisher import MqttPublisher
from labctl.stream.settings import MqttSettings, parse_url, settings_from_config


@dataclass(frozen=True, slots=True)
class StreamSession:
    """What ``open_stream`` yields."""

    settings: MqttSettings
    publisher: MqttPublisher
    commands: CommandListener | None

    @property
    def broker_url(self) -> str:
        """The broker in use (the embedded one's URL when none was configured)."""
        return self.settings.url


@contextlib.asynccontextmanager
async def open_stream(
    mqtt_section: Mapping[str, Any] | MqttSettings | None,
    *,
    lab: str,
    node: str,
    outbox_dir: str | Path,
    config_dir: str | Path = ".",
    **publisher_options: Any,
) -> AsyncIterator[StreamSession]:
    """Start broker (if embedded), publisher and command listener; stop them on exit."""
    if isinstance(mqtt_section, MqttSettings):
        settings = mqtt_section
    else:
        settings = settings_from_config(mqtt_section, config_dir)
    async with contextlib.AsyncExitStack() as stack:
        if settings.embedded:
            access = await stack.enter_async_context(
                embedded_broker(settings.embedded_port or None)
            )
            host, port, _ = parse_url(access.url, "embedded broker")
            settings = dataclasses.replace(
                settings,
                host=host,
                port=port,
                username=access.username,
                password=access.password,
            )
        publisher = MqttPublisher(
            settings,
            lab=lab,
            node=node,
            outbox_dir=settings.outbox_dir or outbox_dir,
            **publisher_options,
        )
        await stack.enter_async_context(publisher)
        commands = None
        if settings.commands is not None:
            commands = CommandListener(settings, lab=lab, node=node, auth=settings.commands)
            await stack.enter_async_context(commands)
        yield StreamSession(settings, publisher, commands)

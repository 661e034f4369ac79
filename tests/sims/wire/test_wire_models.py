"""``wire:`` picks the transmitter, detector and tagger second models; bad names are named."""

from __future__ import annotations

import pytest

from labctl.interfaces import ConfigError
from sims.wire.awg5208 import Awg5208Wire
from sims.wire.pulsestreamer import PulseStreamerWire
from sims.wire.serve import ServeSettings, build_servers
from sims.world import World
from tests.sims.wire.wired import WIRE_WORLD, make_twin


def test_the_wire_key_picks_the_model_default_otherwise() -> None:
    settings = ServeSettings.from_section(
        {"instruments": {"tx-a": {"wire": "tektronix-awg5208", "port": 0}, "tx-b": {"port": 0}}}
    )
    assert settings.wires == {"tx-a": "tektronix-awg5208"} and settings.ports["tx-a"] == {"port": 0}
    world = World.from_settings(WIRE_WORLD)
    twin = make_twin("transmitter", world)
    servers = build_servers({"tx-a": twin, "tx-b": twin}, settings)
    assert isinstance(servers[0], Awg5208Wire) and isinstance(servers[1], PulseStreamerWire)
    same = ServeSettings.from_section({"instruments": {"tx": {"wire": "swabian-pulsestreamer"}}})
    assert isinstance(build_servers({"tx": twin}, same)[0], PulseStreamerWire)


def test_unknown_or_mismatched_models_are_named() -> None:
    world = World.from_settings(WIRE_WORLD)
    settings = ServeSettings.from_section({"instruments": {"tx": {"wire": "awg9999"}}})
    with pytest.raises(ConfigError) as caught:
        build_servers({"tx": make_twin("transmitter", world)}, settings)
    assert caught.value.field == "twin_serve.instruments.tx.wire"
    assert "tektronix-awg5208" in caught.value.message
    settings = ServeSettings.from_section({"instruments": {"laser": {"wire": "idq-id120"}}})
    with pytest.raises(ConfigError) as caught:
        build_servers({"laser": make_twin("laser", world)}, settings)
    assert caught.value.field == "twin_serve.instruments.laser.wire"

"""Which device models a twin can be served as, per interface, by ``wire:`` name.

``labctl twin serve`` serves each twin as its interface's default model unless the
station file's ``twin_serve.instruments.<name>.wire`` names another one listed here.
Models of one interface share a constructor shape (TCP lasers: ``host``/``port``;
serial instruments: ``link``), so serve.py builds any of them the same way; the
transmitter, detector and time-tagger models differ from their defaults' shapes, so
serve.py builds those second models with their own ports (``port``; ``control_port``
and ``stream_port`` for the HydraHarp).
"""

from __future__ import annotations

from typing import Any

from labctl.interfaces.errors import ConfigError
from sims.wire.awg5208 import Awg5208Wire
from sims.wire.dicon import DiconMemsWire
from sims.wire.eos import EosWire
from sims.wire.epc400 import Epc400Wire
from sims.wire.ffswitch import FfSwitchWire
from sims.wire.hydraharp import HydraHarpWire
from sims.wire.id120 import Id120Wire
from sims.wire.id1000 import Id1000Wire
from sims.wire.mpc320 import Mpc320Wire
from sims.wire.n7776c import N7776cWire
from sims.wire.pulsestreamer import PulseStreamerWire
from sims.wire.tsl570 import Tsl570Wire

# interface -> {wire name: server class}; the first entry is the interface's default.
WIRE_MODELS: dict[str, dict[str, type[Any]]] = {
    "laser": {"santec-tsl570": Tsl570Wire, "keysight-n7776c": N7776cWire},
    "polarization_controller": {"ozoptics-epc400": Epc400Wire, "thorlabs-mpc320": Mpc320Wire},
    "optical_switch": {"agiltron-ff": FfSwitchWire, "dicon-mems": DiconMemsWire},
    "transmitter": {"swabian-pulsestreamer": PulseStreamerWire, "tektronix-awg5208": Awg5208Wire},
    "detector": {"singlequantum-eos": EosWire, "idq-id120": Id120Wire},
    "time_tagger": {"idq-id1000": Id1000Wire, "picoquant-hydraharp": HydraHarpWire},
}


def wire_class(interface: str, wire: str | None, instrument: str, default: type[Any]) -> type[Any]:
    """The server class for ``wire`` (``default`` when None); ConfigError when unknown."""
    if wire is None:
        return default
    models = WIRE_MODELS.get(interface, {})
    if wire not in models:
        known = ", ".join(sorted(models)) or "only its default model"
        raise ConfigError(
            f"no {interface} model {wire!r} to serve (known: {known})",
            field=f"twin_serve.instruments.{instrument}.wire",
        )
    return models[wire]

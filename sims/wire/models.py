"""Which device models a twin can be served as, per interface, by ``wire:`` name.

``labctl twin serve`` serves each twin as its interface's default model unless the
station file's ``twin_serve.instruments.<name>.wire`` names another one listed here, or
``--for STATION`` names a station whose instrument of that name is driven by a driver
class listed in ``DRIVER_MODELS`` (the model that driver speaks to).
Models of one interface share a constructor shape (TCP lasers: ``host``/``port``;
serial instruments: ``link``), so serve.py builds any of them the same way; the
transmitter, detector and time-tagger models differ from their defaults' shapes, so
serve.py builds those second models with their own ports (``port``; ``control_port``
and ``stream_port`` for the HydraHarp).
"""

from __future__ import annotations

from collections.abc import Mapping
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


# driver class, as a station file names it -> (interface, wire name of its model)
DRIVER_MODELS: dict[str, tuple[str, str]] = {
    "drivers.santec.tsl570:TSL570": ("laser", "santec-tsl570"),
    "drivers.keysight.n7776c:N7776C": ("laser", "keysight-n7776c"),
    "drivers.ozoptics.epc400:EPC400": ("polarization_controller", "ozoptics-epc400"),
    "drivers.thorlabs.mpc320:MPC320": ("polarization_controller", "thorlabs-mpc320"),
    "drivers.agiltron.ffswitch:FFSwitch": ("optical_switch", "agiltron-ff"),
    "drivers.dicon.mems:DiconMems": ("optical_switch", "dicon-mems"),
    "drivers.swabian.pulsestreamer:PulseStreamer": ("transmitter", "swabian-pulsestreamer"),
    "drivers.tektronix.awg5208:AWG5208Transmitter": ("transmitter", "tektronix-awg5208"),
    "drivers.singlequantum.eos:EosSNSPD": ("detector", "singlequantum-eos"),
    "drivers.idq.id120:ID120Array": ("detector", "idq-id120"),
    "drivers.idq.id1000:ID1000": ("time_tagger", "idq-id1000"),
    "drivers.picoquant.hydraharp:HydraHarp400": ("time_tagger", "picoquant-hydraharp"),
}


def station_models(classes: Mapping[str, str], *, file: str | None = None) -> dict[str, str]:
    """The wire model of every instrument whose class (``classes``: name -> class path, a
    station's ``instruments.<name>.class``) is a driver in DRIVER_MODELS. Classes outside
    ``drivers.`` (twins, a lab's own package) name no model; a ``drivers.`` class without a
    wire model is a ConfigError naming its field in ``file``."""
    wires: dict[str, str] = {}
    for name, class_path in classes.items():
        if class_path in DRIVER_MODELS:
            wires[name] = DRIVER_MODELS[class_path][1]
        elif class_path.startswith("drivers."):
            known = ", ".join(sorted(DRIVER_MODELS))
            raise ConfigError(
                f"no wire model serves {class_path!r} (drivers with one: {known})",
                file=file,
                field=f"instruments.{name}.class",
            )
    return wires


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

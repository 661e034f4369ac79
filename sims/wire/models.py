"""Second wire models a station may choose per twin: ``twin_serve.instruments.<name>.wire``.

Each interface has a default model (sims.wire.serve); a twin whose ``wire`` key names one
of the models below is served by it instead::

    twin_serve:
      instruments:
        transmitter: {wire: awg5208, port: 47030}
        detectors: {wire: id120, port: 47010}   # channel k's module on port 47010 + k
        tagger-bob: {wire: hydraharp, control_port: 47022, stream_port: 47023}

Ports not given are picked free (give them in a lab).

The default models' own names (``tsl570``, ``epc400``, ``eos``, ``id1000``, ``ffswitch``,
``pulsestreamer``) are accepted too and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labctl.interfaces.devices import SinglePhotonDetector, TimeTagger, Transmitter
from labctl.interfaces.errors import ConfigError
from sims.wire.awg5208 import Awg5208Wire
from sims.wire.base import WireServer
from sims.wire.hydraharp import HydraHarpWire
from sims.wire.id120 import Id120Wire

DEFAULT_MODELS = ("tsl570", "epc400", "eos", "id1000", "ffswitch", "pulsestreamer")
Builder = Callable[[str, Any, str, Mapping[str, int]], WireServer]


@dataclass(frozen=True)
class WireModel:
    """One alternative model: the interface it serves and how to build its server."""

    interface: type
    build: Builder
    port_keys: tuple[str, ...]


def _awg5208(name: str, twin: Any, host: str, ports: Mapping[str, int]) -> WireServer:
    return Awg5208Wire(name, twin, host=host, port=ports.get("port", 0))


def _id120(name: str, twin: Any, host: str, ports: Mapping[str, int]) -> WireServer:
    # One module per channel: ``port`` is channel 0's, channel k listens on port + k.
    return Id120Wire(name, twin, host=host, port=ports.get("port", 0))


def _hydraharp(name: str, twin: Any, host: str, ports: Mapping[str, int]) -> WireServer:
    return HydraHarpWire(
        name,
        twin,
        host=host,
        control_port=ports.get("control_port", 0),
        stream_port=ports.get("stream_port", 0),
    )


MODELS: dict[str, WireModel] = {
    "hydraharp": WireModel(TimeTagger, _hydraharp, ("control_port", "stream_port")),
    "awg5208": WireModel(Transmitter, _awg5208, ("port",)),
    "id120": WireModel(SinglePhotonDetector, _id120, ("port",)),
}


def check_model(name: str, model: Any) -> str | None:
    """The alternative model named for instrument ``name`` (None = the default model)."""
    where = f"twin_serve.instruments.{name}.wire"
    if not isinstance(model, str) or model.lower() not in (*MODELS, *DEFAULT_MODELS):
        known = ", ".join(sorted((*MODELS, *DEFAULT_MODELS)))
        raise ConfigError(f"unknown wire model {model!r} (known: {known})", field=where)
    return model.lower() if model.lower() in MODELS else None


def build_alternative(
    name: str, twin: Any, model: str, host: str, ports: Mapping[str, int]
) -> WireServer:
    """The server of ``model`` for ``twin``; ConfigError when the twin is of another kind."""
    chosen = MODELS[model]
    if not isinstance(twin, chosen.interface):
        raise ConfigError(
            f"wire model {model} serves a {chosen.interface.__name__}, not a {type(twin).__name__}",
            field=f"twin_serve.instruments.{name}.wire",
        )
    return chosen.build(name, twin, host, ports)

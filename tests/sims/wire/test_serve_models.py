"""``twin_serve.instruments.<name>.wire`` picks the model a twin is served as; left out, the
interface's default. Then the three second models on one world, through their drivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from labctl.interfaces.errors import ConfigError
from sims.wire.dicon import DiconMemsWire
from sims.wire.epc400 import Epc400Wire
from sims.wire.ffswitch import FfSwitchWire
from sims.wire.mpc320 import Mpc320Wire
from sims.wire.n7776c import N7776cWire
from sims.wire.serve import ServeSettings, build_servers
from sims.wire.tsl570 import Tsl570Wire
from sims.world import World
from tests.sims.wire.wired import NAMES, WIRE_WORLD, make_twin, wired_station

KINDS = ["laser", "polarization_controller", "optical_switch"]


def twins() -> dict[str, Any]:
    world = World.from_settings(WIRE_WORLD)
    return {NAMES[kind]: make_twin(kind, world) for kind in KINDS}


def served_classes(section: dict[str, Any]) -> dict[str, type[Any]]:
    settings = ServeSettings.from_section({"link_dir": None, "instruments": section})
    return {server.name: type(server) for server in build_servers(twins(), settings)}


def test_default_models_without_wire_keys() -> None:
    assert served_classes({}) == {
        "laser": Tsl570Wire,
        "pc-bob": Epc400Wire,
        "switch": FfSwitchWire,
    }


def test_wire_keys_pick_the_second_models_and_keep_ports() -> None:
    section = {
        "laser": {"wire": "keysight-n7776c", "port": 0},
        "pc-bob": {"wire": "thorlabs-mpc320"},
        "switch": {"wire": "dicon-mems"},
    }
    settings = ServeSettings.from_section({"instruments": section}, base_dir=Path("/tmp"))
    assert settings.wires == {
        "laser": "keysight-n7776c",
        "pc-bob": "thorlabs-mpc320",
        "switch": "dicon-mems",
    }
    assert settings.ports["laser"] == {"port": 0}
    assert served_classes(section) == {
        "laser": N7776cWire,
        "pc-bob": Mpc320Wire,
        "switch": DiconMemsWire,
    }
    # Naming the default model is the same as leaving the key out.
    assert served_classes({"laser": {"wire": "santec-tsl570"}})["laser"] is Tsl570Wire


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"laser": {"wire": "keysight-n7777x"}}, "no laser model 'keysight-n7777x'"),
        ({"switch": {"wire": "thorlabs-mpc320"}}, "known: agiltron-ff, dicon-mems"),
        ({"pc-bob": {"wire": 7}}, "must be a model name, got 7"),
    ],
)
def test_bad_wire_names_the_field(section: dict[str, Any], message: str) -> None:
    (name,) = section
    with pytest.raises(ConfigError, match=message) as info:
        served_classes(section)
    assert info.value.field == f"twin_serve.instruments.{name}.wire"


async def test_mixed_station_through_the_second_models_drivers() -> None:
    wires = {
        "laser": "keysight-n7776c",
        "polarization_controller": "thorlabs-mpc320",
        "optical_switch": "dicon-mems",
    }
    async with wired_station(KINDS, wires=wires) as setup:
        laser, pc, switch = (setup.drivers[n] for n in ("laser", "pc-bob", "switch"))
        assert type(laser).__name__ == "N7776C" and laser.identity["model"] == "N7776C"
        await laser.set_output(True)
        await laser.set_power_mw(2.0)
        assert setup.world.snapshot()["laser"]["enabled"] is True
        assert await setup.twins["laser"].get_power_mw() == pytest.approx(2.0)

        await pc.set_angle_deg(0, 170.0)  # the paddle's end of travel: the twin's top voltage
        assert (await setup.twins["pc-bob"].get_voltages_mv())[0] == pytest.approx(5000.0)
        assert await pc.get_angles_deg() == [170.0, 85.0, 85.0]

        await switch.set_port(3)
        assert setup.world.switch_port() == 3
        await switch.safe_state()
        assert setup.world.switch_port() == 4
        for driver in (laser, pc, switch):
            assert (await driver.health()).ok


def test_sim_mixed_is_sim_yaml_plus_the_wire_choices() -> None:
    configs = Path(__file__).resolve().parents[3] / "configs"
    mixed = yaml.safe_load((configs / "sim-mixed.yaml").read_text())
    assert mixed.pop("twin_serve") == {
        "instruments": {
            "laser": {"wire": "keysight-n7776c"},
            "pc-bob": {"wire": "thorlabs-mpc320"},
            "switch": {"wire": "dicon-mems"},
        }
    }
    assert mixed == yaml.safe_load((configs / "sim.yaml").read_text()), (
        "configs/sim-mixed.yaml drifted from configs/sim.yaml"
    )


def test_every_wire_model_has_its_driver_and_the_driver_exists() -> None:
    import importlib

    from labctl.interfaces import devices
    from sims.wire.models import DRIVER_MODELS, WIRE_MODELS

    interfaces = {
        "laser": devices.Laser,
        "polarization_controller": devices.PolarizationController,
        "optical_switch": devices.OpticalSwitch,
        "transmitter": devices.Transmitter,
        "detector": devices.SinglePhotonDetector,
        "time_tagger": devices.TimeTagger,
    }
    served = sorted((i, w) for i, models in WIRE_MODELS.items() for w in models)
    assert sorted(DRIVER_MODELS.values()) == served  # one driver per model, both ways
    for class_path, (interface, _wire) in DRIVER_MODELS.items():
        module, name = class_path.split(":")
        driver = getattr(importlib.import_module(module), name)
        for member in ("connect", "close", "health", "safe_state"):
            assert callable(getattr(driver, member)), (class_path, member)
        protocol_methods = [m for m in vars(interfaces[interface]) if not m.startswith("_")]
        missing = [m for m in protocol_methods if not hasattr(driver, m)]
        assert not missing, (class_path, missing)


def test_a_station_names_the_models_by_its_driver_classes() -> None:
    from sims.wire.models import station_models

    classes = {
        "laser": "drivers.keysight.n7776c:N7776C",
        "pc-bob": "drivers.ozoptics.epc400:EPC400",
        "detectors": "sims.twins:SimDetector",  # a twin, or a lab's own class: no model
        "tagger-bob": "drivers.picoquant.hydraharp:HydraHarp400",
    }
    assert station_models(classes) == {
        "laser": "keysight-n7776c",
        "pc-bob": "ozoptics-epc400",
        "tagger-bob": "picoquant-hydraharp",
    }
    with pytest.raises(ConfigError, match=r"instruments\.switch\.class.*no wire model"):
        station_models({"switch": "drivers.nosuchvendor.sw9000:SW9000"}, file="hil.yaml")
    assert served_classes({}) == {"laser": Tsl570Wire, "pc-bob": Epc400Wire, "switch": FfSwitchWire}
    settings = ServeSettings(link_dir=None).with_models(station_models(classes))
    built = {s.name: type(s) for s in build_servers(twins(), settings)}
    assert built == {"laser": N7776cWire, "pc-bob": Epc400Wire, "switch": FfSwitchWire}
    # A model named under twin_serve must agree with the station's driver.
    named = ServeSettings.from_section({"instruments": {"pc-bob": {"wire": "thorlabs-mpc320"}}})
    assert named.with_models({"pc-bob": "thorlabs-mpc320"}).wires == {"pc-bob": "thorlabs-mpc320"}
    with pytest.raises(ConfigError, match=r"twin_serve\.instruments\.pc-bob\.wire.*hil\.yaml"):
        named.with_models({"pc-bob": "ozoptics-epc400"}, file="hil.yaml")

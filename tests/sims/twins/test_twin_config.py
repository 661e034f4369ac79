"""Building twins from config entries: the world is required, settings are checked."""

from __future__ import annotations

import pytest

from labctl.interfaces import BuildContext, ConfigError, InstrumentSpec, Source
from sims.twins import (
    SimDetector,
    SimLaser,
    SimOpticalSwitch,
    SimPolarizationController,
    SimTimeTagger,
)
from tests.sims.twins.twin_helpers import build, quiet_world


def test_a_twin_without_a_world_names_the_instrument() -> None:
    spec = InstrumentSpec(
        name="laser", class_path="sims.twins:SimLaser", source=Source("station.yaml", 12)
    )
    with pytest.raises(ConfigError) as caught:
        SimLaser.from_config(spec, BuildContext(lab="l", node="n"))
    error = caught.value
    assert error.field == "instruments.laser"
    assert (error.file, error.line) == ("station.yaml", 12)
    assert "world" in error.message


def test_unknown_setting_is_named_with_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        build(SimLaser, "laser", quiet_world(), power_w=1.0)
    assert caught.value.field == "instruments.laser.settings.power_w"
    assert "power_mw" in caught.value.message


@pytest.mark.parametrize(
    ("cls", "settings", "field"),
    [
        (SimLaser, {"power_mw": 500.0}, "power_mw"),
        (SimTimeTagger, {"side": "carol"}, "side"),
        (SimDetector, {"channels": ["Z0", "Q9"]}, "channels"),
        (SimDetector, {"channels": [0, 0]}, "channels"),
        (SimOpticalSwitch, {"port": "two"}, "port"),
        (SimPolarizationController, {"voltages_mv": "zero"}, "voltages_mv"),
    ],
)
def test_bad_setting_values_name_the_field(cls: type, settings: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(cls, "inst", quiet_world(), **settings)
    assert caught.value.field == f"instruments.inst.settings.{field}"


def test_values_outside_the_worlds_device_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"outside 1\.\.4"):
        build(SimOpticalSwitch, "switch", quiet_world(), port=5)
    with pytest.raises(ConfigError, match=r"outside -5000\.\.5000"):
        build(SimPolarizationController, "pc", quiet_world(), voltages_mv=[0, 0, 0, 6000])


def test_config_settings_reach_the_world() -> None:
    world = quiet_world()
    build(SimLaser, "laser", world, power_mw=2.0, wavelength_nm=1551.0)
    build(SimPolarizationController, "pc", world, voltages_mv=[100, -200, 300, -400])
    build(SimOpticalSwitch, "switch", world, port=3)
    snapshot = world.snapshot()
    assert snapshot["laser"]["power_mw"] == 2.0
    assert snapshot["laser"]["wavelength_nm"] == 1551.0
    assert snapshot["pc_voltages_mv"] == [100.0, -200.0, 300.0, -400.0]
    assert snapshot["switch_port"] == 3


async def test_detector_channels_map_onto_world_detectors() -> None:
    world = quiet_world()
    detector = build(SimDetector, "det", world, channels=["X1", "Z0"])
    async with detector:
        assert detector.n_channels == 2
        assert detector.detectors == ["X1", "Z0"]
        await detector.set_enabled(0, False)
    states = world.snapshot()["detectors"]
    assert [s["enabled"] for s in states] == [True, True, True, False]


async def test_tagger_geometry_comes_from_its_side() -> None:
    world = quiet_world(taggers={"alice": {"n_channels": 2, "resolution_ps": 4}})
    alice = build(SimTimeTagger, "ta", world, side="alice")
    bob = build(SimTimeTagger, "tb", world, side="bob")
    assert (alice.n_channels, alice.resolution_ps) == (2, 4)
    assert (bob.n_channels, bob.resolution_ps) == (4, 1)

"""Declared settings: one line gives the config check, the setter's check, the write and
the re-apply order after a reconnect."""

from __future__ import annotations

from typing import Any

import pytest

from labctl.instrument.base import DriverBase, validate_config_settings
from labctl.instrument.settings import Setting
from labctl.instrument.validate import RefusedType, RefusedValue
from labctl.interfaces.build import InstrumentSpec, Source
from labctl.interfaces.errors import ConfigError


class Journal(DriverBase):
    """A driver whose writes go to a list (no transport is touched by declared settings)."""

    model = "journal"
    settings = (
        Setting("output", "bool", None, lambda d, on: d.write(f"OUT {int(on)}"), order=10),
        Setting("power_mw", "number", (0.1, 20.0), lambda d, mw: d.write(f"POW {mw:.2f}")),
        Setting("averages", "integer", (1, 64), lambda d, n: d.write(f"AVG {n}")),
        Setting(
            "bias_ua",
            "number",
            (0.0, 50.0),
            read=lambda d: d.read_bias(),
            channels=4,
            apply_channel=lambda d, ch, ua: d.write(f"BIAS{ch + 1} {ua:g}"),
        ),
        Setting(
            "gates",
            "bool",
            read=lambda d: d.read_gates(),
            channels=2,
            min_channels=2,
            apply=lambda d, on: d.write("GATE " + ",".join(str(int(x)) for x in on)),
            order=-1,
        ),
    )

    def __init__(self) -> None:
        super().__init__("journal", transport=None)  # type: ignore[arg-type]
        self.sent: list[str] = []
        self.band = (0.1, 5.0)

    async def write(self, command: str) -> None:
        self.sent.append(command)

    async def read_bias(self) -> list[float]:
        self.sent.append("BIAS?")
        return [1.0, 2.0]

    async def read_gates(self) -> list[bool]:
        self.sent.append("GATE?")
        return [True, False]

    def _declared_limits(self, key: str) -> tuple[float, float] | None:
        return self.band if key == "power_mw" else super()._declared_limits(key)


def _spec(settings: dict[str, Any]) -> InstrumentSpec:
    return InstrumentSpec(
        name="journal",
        class_path="tests.instrument.test_settings:Journal",
        settings=settings,
        transport=None,
        source=Source(file="station.yaml", line=7),
    )


async def test_a_setter_checks_writes_and_remembers_in_the_declared_order() -> None:
    driver = Journal()
    assert await driver._set_declared("output", True) is True
    assert await driver._set_declared("power_mw", 2) == 2.0
    assert driver.sent == ["OUT 1", "POW 2.00"]
    assert driver.remembered_settings == {"output": True, "power_mw": 2.0}
    driver.sent.clear()
    for apply in driver._memory.appliers():  # what a reconnect re-applies: light last
        await apply()
    assert driver.sent == ["POW 2.00", "OUT 1"]
    with pytest.raises(RefusedValue, match=r"power_mw=6 is outside \[0.1, 5\]"):
        await driver._set_declared("power_mw", 6)  # the connected unit's band
    with pytest.raises(RefusedType, match="output must be True or False"):
        await driver._set_declared("output", 1)
    with pytest.raises(KeyError, match="declares no setting 'gain'"):
        await driver._set_declared("gain", 1)
    assert [s.unit for s in Journal.settings] == ["", "mW", "", "µA", ""]


def test_the_station_file_is_checked_against_the_declaration() -> None:
    validators = Journal.config_validators("journal")
    ok = validate_config_settings(_spec({"power_mw": 12, "averages": 8}), validators)
    assert ok == {"power_mw": 12.0, "averages": 8}  # the declared range, not the unit's
    with pytest.raises(ConfigError) as bad:
        validate_config_settings(_spec({"averages": 100}), validators)
    assert "station.yaml:7" in str(bad.value) and "averages=100 is outside [1, 64]" in str(
        bad.value
    )
    with pytest.raises(ConfigError, match=r"unknown setting.*averages, bias_ua, gates, output,"):
        validate_config_settings(_spec({"gain": 1}), validators)


async def test_per_channel_settings_write_remember_and_snapshot() -> None:
    driver = Journal()
    driver._remember_declared("bias_ua", [10.0, 20.0])  # from the station file
    await driver._set_declared_channel("bias_ua", 1, 25)  # one channel replaces one entry
    await driver._set_declared("gates", [True, False])  # a list written in one command
    assert driver.sent == ["BIAS2 25", "GATE 1,0"]
    assert driver.remembered_settings == {
        "bias_ua[0]": 10.0,
        "bias_ua[1]": 25.0,
        "gates": [True, False],
    }
    driver.sent.clear()
    for apply in driver._memory.appliers():  # a reconnect: gates first, then each channel
        await apply()
    assert driver.sent == ["GATE 1,0", "BIAS1 10", "BIAS2 25"]
    with pytest.raises(RefusedValue, match=r"bias_ua\[3\]=60 is outside \[0, 50\]"):
        await driver._set_declared_channel("bias_ua", 3, 60)
    with pytest.raises(RefusedValue, match="gates needs 2 values"):
        await driver._set_declared("gates", [True])
    with pytest.raises(RefusedType, match="gates must be a list of 2 values"):
        await driver._set_declared("gates", True)
    driver.sent.clear()
    assert await driver._declared_snapshot() == {"bias_ua": [1.0, 2.0], "gates": [True, False]}
    assert driver.sent == ["BIAS?", "GATE?"]  # in declaration order


def test_a_per_channel_setting_in_the_station_file() -> None:
    validators = Journal.config_validators("journal")
    ok = validate_config_settings(_spec({"bias_ua": [1, 2.5, 3]}), validators)
    assert ok == {"bias_ua": [1.0, 2.5, 3.0]}
    with pytest.raises(ConfigError, match=r"settings.bias_ua: .*bias_ua\[1\]=99"):
        validate_config_settings(_spec({"bias_ua": [1, 99]}), validators)
    with pytest.raises(ConfigError, match=r"bias_ua needs 1 to 4 values"):
        validate_config_settings(_spec({"bias_ua": [1, 2, 3, 4, 5]}), validators)

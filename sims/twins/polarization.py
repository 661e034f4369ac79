"""SimPolarizationController: Bob's EPC-400 style controller as a twin on the world."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from labctl.interfaces.instrument import Health
from sims.twins.base import SettingCheck, SimTwin
from sims.twins.world_api import PolarizationWorld


def _check_voltages(setting: str, value: Any) -> list[float]:
    """Settings check: a list of numbers (the range is checked against the world)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"{setting}: expected a list of voltages in mV, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise ValueError(f"{setting}: expected numbers, got {item!r}")
        out.append(float(item))
    return out


class SimPolarizationController(SimTwin[PolarizationWorld]):
    """Twin of Bob's polarization controller: its voltages rotate Bob's measurement frame."""

    model: ClassVar[str] = "labctl SimPolarizationController"
    settings_checks: ClassVar[dict[str, SettingCheck]] = {"voltages_mv": _check_voltages}

    def __init__(
        self,
        name: str,
        world: PolarizationWorld,
        *,
        timeout_s: float = 2.0,
        voltages_mv: Sequence[float] | None = None,
    ) -> None:
        super().__init__(name, world, timeout_s=timeout_s)
        pc = world.settings.polarization_controller
        self._n_axes = len(pc.offset_rad)
        low, high = pc.voltage_range_mv
        self._range_mv = (float(low), float(high))
        if voltages_mv is not None:
            if len(voltages_mv) != self._n_axes:
                raise ValueError(f"voltages_mv needs {self._n_axes} values, got {len(voltages_mv)}")
            if not all(low <= v <= high for v in voltages_mv):
                raise ValueError(f"voltages_mv {list(voltages_mv)} outside {low:g}..{high:g} mV")
            world.set_pc_voltages_mv([float(v) for v in voltages_mv])

    @property
    def n_axes(self) -> int:
        """Four squeezers."""
        return self._n_axes

    @property
    def voltage_range_mv(self) -> tuple[float, float]:
        """The lowest and highest voltage accepted, in millivolts."""
        return self._range_mv

    def _check_voltage(self, command: str, axis: int, voltage_mv: float) -> None:
        low, high = self._range_mv
        self._check_range(command, f"axis {axis} voltage_mv", voltage_mv, low, high)

    async def set_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Drive all squeezers at once, in millivolts."""
        await self._link("set_voltages_mv")
        values = list(voltages_mv)
        if len(values) != self._n_axes:
            raise self._refuse(
                "set_voltages_mv", f"expected {self._n_axes} voltages, got {len(values)}"
            )
        for axis, voltage in enumerate(values):
            self._check_voltage("set_voltages_mv", axis, voltage)
        self.world.set_pc_voltages_mv([float(v) for v in values])

    async def get_voltages_mv(self) -> list[float]:
        """The voltage on every squeezer in millivolts."""
        await self._link("get_voltages_mv")
        return [float(v) for v in self.world.pc_voltages_mv()]

    async def set_voltage_mv(self, axis: int, voltage_mv: float) -> None:
        """Drive one squeezer (axis from 0) in millivolts."""
        await self._link("set_voltage_mv")
        self._check_index("set_voltage_mv", "axis", axis, self._n_axes)
        self._check_voltage("set_voltage_mv", axis, voltage_mv)
        values = [float(v) for v in self.world.pc_voltages_mv()]
        values[axis] = float(voltage_mv)
        self.world.set_pc_voltages_mv(values)

    async def snapshot(self) -> dict[str, Any]:
        """Identity, range and the squeezer voltages."""
        await self._link("snapshot")
        return {
            **self._identity(),
            "n_axes": self._n_axes,
            "voltage_range_mv": list(self._range_mv),
            "voltages_mv": [float(v) for v in self.world.pc_voltages_mv()],
        }

    async def safe_state(self) -> None:
        """Every squeezer to 0 mV."""
        await self.set_voltages_mv([0.0] * self._n_axes)

    async def health(self) -> Health:
        """Healthy when it answers and every voltage is finite and in range."""
        await self._link("health")
        voltages = [float(v) for v in self.world.pc_voltages_mv()]
        low, high = self._range_mv
        bad = [a for a, v in enumerate(voltages) if not (math.isfinite(v) and low <= v <= high)]
        readings: dict[str, float | int | str | bool] = {
            f"voltage_{axis}_mv": v for axis, v in enumerate(voltages)
        }
        if bad:
            return Health(ok=False, detail=f"axes {bad} out of range", readings=readings)
        return Health(ok=True, detail="ok", readings=readings)

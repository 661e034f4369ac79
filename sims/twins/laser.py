"""SimLaser: Alice's laser as a twin on the world (output on/off, power, wavelength)."""

from __future__ import annotations

from typing import Any, ClassVar

from labctl.interfaces.instrument import Health
from sims.twins.base import SettingCheck, SimTwin, check_number
from sims.twins.world_api import LaserWorld

POWER_RANGE_MW = (0.04, 20.0)  # a TSL-570 class tunable laser: +13 dBm at most
WAVELENGTH_RANGE_NM = (1260.0, 1680.0)


class SimLaser(SimTwin[LaserWorld]):
    """Twin of Alice's laser; power scales every mean photon number of the world linearly."""

    model: ClassVar[str] = "labctl SimLaser"
    settings_checks: ClassVar[dict[str, SettingCheck]] = {
        "power_mw": check_number(*POWER_RANGE_MW),
        "wavelength_nm": check_number(*WAVELENGTH_RANGE_NM),
    }

    def __init__(
        self,
        name: str,
        world: LaserWorld,
        *,
        timeout_s: float = 2.0,
        power_mw: float | None = None,
        wavelength_nm: float | None = None,
    ) -> None:
        super().__init__(name, world, timeout_s=timeout_s)
        source = world.settings.source
        self._enabled = bool(world.snapshot()["laser"]["enabled"])
        self._power_mw = float(source.nominal_power_mw if power_mw is None else power_mw)
        self._wavelength_nm = float(
            source.wavelength_nm if wavelength_nm is None else wavelength_nm
        )
        # The config's setpoints are what the device holds at power-up.
        world.set_laser_power_mw(self._power_mw)
        world.set_wavelength_nm(self._wavelength_nm)

    @property
    def power_range_mw(self) -> tuple[float, float]:
        """The lowest and highest power setpoint accepted, in milliwatts."""
        return POWER_RANGE_MW

    @property
    def wavelength_range_nm(self) -> tuple[float, float]:
        """The tuning range, in nanometres."""
        return WAVELENGTH_RANGE_NM

    async def set_output(self, enabled: bool) -> None:
        """Switch the optical output on or off."""
        await self._link("set_output")
        if not isinstance(enabled, bool):
            raise self._refuse("set_output", f"enabled must be true or false, got {enabled!r}")
        self.world.set_laser_enabled(enabled)
        self._enabled = enabled

    async def get_output(self) -> bool:
        """True when light is coming out."""
        await self._link("get_output")
        return self._enabled

    async def set_power_mw(self, power_mw: float) -> None:
        """Set the output power in milliwatts (0.04..20 mW)."""
        await self._link("set_power_mw")
        self._check_range("set_power_mw", "power_mw", power_mw, *POWER_RANGE_MW)
        self.world.set_laser_power_mw(float(power_mw))
        self._power_mw = float(power_mw)

    async def get_power_mw(self) -> float:
        """The output power setpoint in milliwatts."""
        await self._link("get_power_mw")
        return self._power_mw

    async def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Tune the wavelength in nanometres (1260..1680 nm)."""
        await self._link("set_wavelength_nm")
        self._check_range("set_wavelength_nm", "wavelength_nm", wavelength_nm, *WAVELENGTH_RANGE_NM)
        self.world.set_wavelength_nm(float(wavelength_nm))
        self._wavelength_nm = float(wavelength_nm)

    async def get_wavelength_nm(self) -> float:
        """The emission wavelength in nanometres."""
        await self._link("get_wavelength_nm")
        return self._wavelength_nm

    async def snapshot(self) -> dict[str, Any]:
        """Identity, output state, power and wavelength."""
        await self._link("snapshot")
        return {
            **self._identity(),
            "output": self._enabled,
            "power_mw": self._power_mw,
            "wavelength_nm": self._wavelength_nm,
        }

    async def safe_state(self) -> None:
        """Output off (the world stops sending light)."""
        await self.set_output(False)

    async def health(self) -> Health:
        """Healthy when it answers and the setpoint lies in range."""
        await self._link("health")
        low, high = POWER_RANGE_MW
        ok = low <= self._power_mw <= high
        return Health(
            ok=ok,
            detail="ok" if ok else f"power setpoint {self._power_mw} mW out of range",
            readings={
                "output": self._enabled,
                "power_mw": self._power_mw,
                "wavelength_nm": self._wavelength_nm,
            },
        )

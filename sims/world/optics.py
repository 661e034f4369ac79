"""The optical path from Alice to Bob's detectors: source, fiber, switch, controller, receiver.

Holds the live state of every passive element and turns it into the per-slice numbers event
generation needs: mean photons at Bob per intensity class and the click weights q[s, d].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from labctl.interfaces.units import db_to_transmission
from sims.world.polarization import FiberPolarization, Matrix3, SqueezerController
from sims.world.receiver import click_weights
from sims.world.settings import WorldSettings
from sims.world.source import AliceSource
from sims.world.switch import SwitchModel

SPEED_OF_LIGHT_M_PER_S = 299_792_458.0


class OpticalPath:
    """Alice's source through fiber, switch and polarization controller into Bob's receiver."""

    def __init__(self, settings: WorldSettings) -> None:
        self.settings = settings
        self.source = AliceSource(settings.source, settings.seed)
        self.fiber = FiberPolarization(settings.fiber, settings.seed)
        self.controller = SqueezerController(settings.polarization_controller)
        self.switch = SwitchModel(settings.switch)
        self.eve_fraction = settings.eve.intercept_resend_fraction
        self.blinding = settings.eve.blinding
        fiber = settings.fiber
        self.fiber_delay_ps = round(
            fiber.length_km * 1e3 * fiber.group_index / SPEED_OF_LIGHT_M_PER_S * 1e12
        )

    @property
    def fiber_transmission(self) -> float:
        """Power transmission of the fiber alone."""
        fiber = self.settings.fiber
        return db_to_transmission(fiber.length_km * fiber.loss_db_per_km)

    @property
    def transmittance(self) -> float:
        """Fiber x switch x Bob's optics: photons entering Bob's detector stage per photon sent."""
        optics = db_to_transmission(self.settings.receiver.optical_loss_db)
        return self.fiber_transmission * self.switch.transmission_to_bob * optics

    @property
    def rotation(self) -> Matrix3:
        """Total polarization rotation Alice -> Bob's analysers (controller after fiber)."""
        return self.controller.matrix @ self.fiber.matrix

    def mean_photons_at_bob(self) -> npt.NDArray[np.float64]:
        """Mean photon number per intensity class entering Bob's receiver, now."""
        return self.source.mu * self.transmittance

    def weights(self, efficiency: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """q[state, detector] for the current rotation and detector efficiencies."""
        return click_weights(self.settings.receiver, self.rotation, efficiency)

    def set_eve_fraction(self, fraction: float) -> None:
        """Intercept-resend on a fraction of pulses (0 switches the attack off)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"set_eve_fraction: fraction must be in [0, 1], got {fraction}")
        self.eve_fraction = float(fraction)

    def set_laser_power_mw(self, power_mw: float) -> None:
        """Scale every intensity class with the laser power."""
        if not power_mw >= 0.0 or power_mw == float("inf"):
            raise ValueError(
                f"set_laser_power_mw: power_mw must be finite and >= 0, got {power_mw}"
            )
        self.source.power_mw = float(power_mw)

    def set_wavelength_nm(self, wavelength_nm: float) -> None:
        """Tune the laser (recorded; the link budget is wavelength-flat in this model)."""
        if not 0.0 < wavelength_nm < 1.0e5:
            raise ValueError(f"set_wavelength_nm: wavelength_nm out of range, got {wavelength_nm}")
        self.source.wavelength_nm = float(wavelength_nm)

    def set_pc_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Drive Bob's four squeezers."""
        self.controller.set_voltages_mv(voltages_mv)

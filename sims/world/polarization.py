"""Polarization on the Poincaré sphere: fiber drift and Bob's squeezer controller.

States are Stokes vectors; every lossless element is a 3x3 rotation (the Mueller picture of
an SU(2) unitary). A real-space rotation of linear polarization by theta is a rotation by
2*theta on the sphere, which is where the sin^2(theta) QBER law comes from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sims.world.settings import FiberSettings, PolarizationControllerSettings

Matrix3 = npt.NDArray[np.float64]

# EPC-400 squeezers alternate between 0 and 45 degree orientation: retarders about s1, s2.
_SQUEEZER_AXES = (
    np.array([1.0, 0.0, 0.0]),
    np.array([0.0, 1.0, 0.0]),
    np.array([1.0, 0.0, 0.0]),
    np.array([0.0, 1.0, 0.0]),
)


def rotation(rotation_vector: Sequence[float] | npt.NDArray[np.float64]) -> Matrix3:
    """Rotation matrix for a rotation vector (axis * angle in rad), by Rodrigues' formula."""
    vec = np.asarray(rotation_vector, dtype=np.float64)
    angle = float(np.linalg.norm(vec))
    if angle < 1e-15:
        return np.eye(3)
    k = vec / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    matrix: Matrix3 = np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)
    return matrix


class FiberPolarization:
    """The fiber's polarization rotation: a seeded random walk on the rotation group."""

    def __init__(self, settings: FiberSettings, seed: int) -> None:
        self.drift_rad_per_sqrt_s = settings.drift_rad_per_sqrt_s
        self.step_s = settings.drift_step_s
        self.matrix = rotation(settings.initial_rotation_rad)
        self._rng = np.random.Generator(np.random.Philox(key=[seed, 0x5EED_F1BE]))
        self._step_index = 0  # the walk is evaluated on the grid k * step_s

    def advance_to(self, t_s: float) -> None:
        """Evolve the walk up to sim time ``t_s`` (deterministic for a given seed)."""
        target = int(t_s / self.step_s)
        n_steps = target - self._step_index
        if n_steps <= 0:
            return
        self._step_index = target
        if self.drift_rad_per_sqrt_s == 0.0:
            return
        sigma = self.drift_rad_per_sqrt_s * math.sqrt(self.step_s)
        if n_steps > 4096:
            # Long jumps (the clock skipped ahead): one Gaussian step with the summed variance
            # keeps the statistics of the walk's displacement without millions of products.
            self.matrix = (
                rotation(self._rng.normal(0.0, sigma * math.sqrt(n_steps), 3)) @ self.matrix
            )
            return
        for vec in self._rng.normal(0.0, sigma, (n_steps, 3)):
            self.matrix = rotation(vec) @ self.matrix

    def jump(self, angle_rad: float, axis: Sequence[float] | None = None) -> None:
        """Rotate by ``angle_rad`` on the sphere about ``axis`` (a random axis when None)."""
        if axis is None:
            direction = self._rng.normal(size=3)
        else:
            direction = np.asarray(axis, dtype=np.float64)
            if direction.shape != (3,) or not np.all(np.isfinite(direction)):
                raise ValueError(f"jump_polarization: axis must be 3 finite numbers, got {axis}")
        norm = float(np.linalg.norm(direction))
        if norm == 0.0:
            raise ValueError("jump_polarization: axis must not be the zero vector")
        self.matrix = rotation(direction / norm * angle_rad) @ self.matrix


class SqueezerController:
    """Bob's four fiber squeezers: voltage (mV) -> retardance -> rotation."""

    def __init__(self, settings: PolarizationControllerSettings) -> None:
        self.v_pi_mv = settings.v_pi_mv
        self.range_mv = (settings.voltage_range_mv[0], settings.voltage_range_mv[1])
        self.offset_rad = tuple(settings.offset_rad)
        self.voltages_mv = [0.0] * 4
        self.matrix = np.eye(3)
        self.set_voltages_mv(settings.initial_voltages_mv)

    def retardance_rad(self, axis: int, voltage_mv: float) -> float:
        """Retardance of one squeezer at ``voltage_mv`` (linear in voltage, pi at v_pi)."""
        return self.offset_rad[axis] + math.pi * voltage_mv / self.v_pi_mv

    def set_voltages_mv(self, voltages_mv: Sequence[float]) -> None:
        """Set all four squeezer voltages (ValueError outside the voltage range)."""
        values = [float(v) for v in voltages_mv]
        if len(values) != 4:
            raise ValueError(f"set_pc_voltages_mv: expected 4 voltages, got {len(values)}")
        low, high = self.range_mv
        for axis, value in enumerate(values):
            if not low <= value <= high:
                raise ValueError(
                    f"set_pc_voltages_mv: voltage {value} mV on axis {axis} outside "
                    f"[{low}, {high}] mV"
                )
        self.voltages_mv = values
        matrix = np.eye(3)
        for axis, value in enumerate(values):
            # Light meets squeezer 0 first, so later squeezers multiply on the left.
            matrix = rotation(_SQUEEZER_AXES[axis] * self.retardance_rad(axis, value)) @ matrix
        self.matrix = matrix

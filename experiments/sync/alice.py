"""What Alice's node knows and may reveal: her pulse clock, her pattern, her marker timing.

Synchronization and QBER need Alice's side of the link: her pulse period, the basis/bit/
intensity of pulses she reveals (a public calibration frame, or sifting answers), and the
index of the pulse she is emitting now (her pulse generator's counter). On a simulated
station that is the world's source (``world.alice_pattern`` is Alice's own record, a
counter-based RNG); never the world's hidden truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

DETECTOR_STATES = {"Z0": (0, 0), "Z1": (0, 1), "X0": (1, 0), "X1": (1, 1)}
"""Bob's detector name -> (basis 0=Z/1=X, bit) it reports."""


@dataclass(frozen=True, slots=True)
class AlicePattern:
    """Alice's choices for some pulses: basis (0=Z, 1=X), bit and intensity class code."""

    basis: U8
    bit: U8
    intensity: U8


class AlicePublic(Protocol):
    """Alice's node as the sync and calibration plans see it."""

    @property
    def period_ps(self) -> int:
        """Her pulse period in picoseconds."""
        ...

    @property
    def intensity_names(self) -> tuple[str, ...]:
        """Intensity classes in code order (0, 1, 2...)."""
        ...

    @property
    def intensity_mu(self) -> tuple[float, ...]:
        """Design mean photon number of every class at her nominal power."""
        ...

    @property
    def nominal_power_mw(self) -> float:
        """The laser power at which ``intensity_mu`` hold."""
        ...

    @property
    def intensity_probability(self) -> tuple[float, ...]:
        """Probability of every intensity class (her design)."""
        ...

    @property
    def basis_z_probability(self) -> float:
        """Probability that she prepares a pulse in the Z basis."""
        ...

    def pattern(self, indices: I64) -> AlicePattern:
        """Her basis, bit and intensity class of the given pulses."""
        ...

    def pulse_index_now(self) -> int:
        """Index of the next pulse her source emits."""
        ...


class WorldAlice:
    """Alice's node on a simulated station: her source settings and pattern generator."""

    def __init__(self, world: Any) -> None:
        self._world = world
        source = world.settings.source
        self._period_ps = int(world.period_ps)
        self._names = tuple(str(c.name) for c in source.intensities)
        self._mu = tuple(float(c.mu) for c in source.intensities)
        self._power = float(source.nominal_power_mw)
        self._probability = tuple(float(c.probability) for c in source.intensities)
        self._z = float(source.basis_z_probability)

    @property
    def period_ps(self) -> int:
        """Her pulse period in picoseconds."""
        return self._period_ps

    @property
    def intensity_names(self) -> tuple[str, ...]:
        """Intensity classes in code order."""
        return self._names

    @property
    def intensity_mu(self) -> tuple[float, ...]:
        """Design mean photon numbers at nominal power."""
        return self._mu

    @property
    def nominal_power_mw(self) -> float:
        """Power at which the design mean photon numbers hold."""
        return self._power

    @property
    def intensity_probability(self) -> tuple[float, ...]:
        """Probability of every intensity class."""
        return self._probability

    @property
    def basis_z_probability(self) -> float:
        """Probability of the Z basis."""
        return self._z

    def pattern(self, indices: I64) -> AlicePattern:
        """Her pattern for ``indices`` (recomputed from her seed)."""
        found = self._world.alice_pattern(np.asarray(indices, dtype=np.int64))
        return AlicePattern(basis=found.basis, bit=found.bit, intensity=found.intensity)

    def pulse_index_now(self) -> int:
        """The pulse her source emits next on the station clock."""
        now_ps: int = round(self._world.clock.now_s() * 1e12)
        return -(-now_ps // self._period_ps)  # integer ceil: exact at any run length


def alice_of(station: Any) -> AlicePublic:
    """Alice's node of a station (the simulated world's source), or a clear error."""
    world = getattr(station, "world", None)
    if world is None or not hasattr(world, "alice_pattern"):
        raise LookupError(
            "no Alice node: this station has no simulated source; "
            "a hardware link needs Alice's pattern over the classical channel"
        )
    return WorldAlice(world)

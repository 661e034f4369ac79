"""Alice's states for the key nodes from her transmitter's record (``AliceSource``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from experiments.sync.alice import TransmitterAlice

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]


class TransmitterSource:
    """AliceSource of a station with a transmitter: the states Alice recorded playing.

    Mean photon numbers are her design's, scaled by the laser power she set (a calibrated
    mean photon number replaces the design when the photon-number calibration passed).
    """

    def __init__(
        self,
        alice: TransmitterAlice,
        power_mw: Callable[[], float],
        mu: Sequence[float] | None = None,
    ) -> None:
        self._alice = alice
        self._power_mw = power_mw
        self._mu = None if mu is None else [float(m) for m in mu]

    def choices(self, pulse_index: I64) -> tuple[U8, U8, U8]:
        """(basis, bit, intensity class) of each pulse, from Alice's record; intensity
        NOT_SENT where she prepared no state (an underrun gap between chunks)."""
        pattern = self._alice.pattern(pulse_index)
        return pattern.basis, pattern.bit, pattern.intensity

    def intensities(self) -> list[tuple[float, float]]:
        """(mu, probability) per class, at the laser power Alice has set now."""
        if self._mu is not None:
            mu = self._mu
        else:
            scale = self._power_mw() / self._alice.nominal_power_mw
            mu = [m * scale for m in self._alice.intensity_mu]
        return list(zip(mu, self._alice.intensity_probability, strict=True))

    def one_shot(self, first_pulse: int, pulses: int) -> bool:
        """True when no state of the block was played twice (key may be stored)."""
        return self._alice.record.one_shot(first_pulse, pulses)

    def release(self, first_pulse: int, pulses: int) -> None:
        """Forget the block's states (bounded memory)."""
        self._alice.record.release(first_pulse, pulses)

"""One acquired block of Bob's detections: what the key-generation nodes post-process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labctl.qkd.sifting import Detections


@dataclass(repr=False)
class RawBlock:
    """One block of Bob's detections over pulses [first_pulse, first_pulse + pulses).

    Post-processing takes the detections once (:meth:`take_detections`): reconciliation of
    a block runs beside the next block's acquisition, and the detections are its largest
    arrays, needed only until sifting.
    """

    block: int
    first_pulse: int
    pulses: int
    """States Alice sent in the block (its key rate is per sent pulse)."""
    detections: Detections
    started_s: float
    acquired_s: float
    tags: int
    missed_tags: int
    span: int = 0
    """Pulses of the window read (>= pulses: a transmitter's underrun gaps carry no state)."""
    flooded: tuple[int, int] | None = None
    """(clicks, pulses read) when the clicks passed the ceiling the calibrated light allows:
    the block's detections were let go (it holds none) and its tags only counted."""

    @property
    def window(self) -> int:
        """Pulses from first_pulse that Alice and Bob consider (span, else pulses)."""
        return self.span or self.pulses

    def take_detections(self) -> Detections:
        """The detections, handed over: the block keeps none (``len(detections) == 0``)."""
        detections, self.detections = self.detections, _TAKEN
        return detections

    def __repr__(self) -> str:
        return (
            f"RawBlock(block={self.block}, pulses={self.pulses}, detections={len(self.detections)})"
        )


_TAKEN = Detections.create(np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint8))

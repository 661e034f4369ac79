"""QBER of a short capture, through the same sifting path key generation uses.

Bob announces the pulse indices and bases of his single clicks (labctl.qkd.sifting), Alice
answers from her own pattern, both keep the matched bits. For calibration the sifted bits
are then disclosed and compared (a calibration frame is sacrificed, never key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.calibration.common import Capture, Session
from experiments.sync.acquire import bob_states, vacuum_code
from labctl.interfaces.units import PS_PER_S
from labctl.qkd.sifting import Detections, announce, answer, sift_alice, sift_bob


@dataclass(frozen=True, slots=True)
class QberSample:
    """QBER per basis of one capture, with the number of sifted bits behind each."""

    qber_z: float
    qber_x: float
    sifted_z: int
    sifted_x: int
    clicks_per_pulse: float
    background_share: float | None = None

    @property
    def qber(self) -> float:
        """Mean of the two bases: what polarization compensation minimises."""
        return 0.5 * (self.qber_z + self.qber_x)


def single_clicks(capture: Capture) -> np.ndarray:
    """Positions (in the capture) of pulses with exactly one click, sorted by pulse index."""
    order = np.argsort(capture.pulse_index, kind="stable")
    index = capture.pulse_index[order]
    _, first, counts = np.unique(index, return_index=True, return_counts=True)
    single: np.ndarray = order[first[counts == 1]]
    return single


def qber_of(session: Session, capture: Capture) -> QberSample:
    """Sift ``capture`` against Alice's pattern and measure the error rate per basis."""
    keep = single_clicks(capture)
    basis, bit = bob_states(capture.channel[keep], session.sync_settings.channels)
    detections = Detections.create(capture.pulse_index[keep], basis, bit)
    message = announce(detections)
    pattern = session.alice.pattern(message.pulse_index)
    reply = answer(message, pattern.basis, pattern.intensity)
    alice_key = sift_alice(message, reply, pattern.bit)
    bob_key = sift_bob(detections, reply)
    errors = alice_key.bits.bits != bob_key.bits.bits
    vac = vacuum_code(session.alice)
    usable = alice_key.intensity != vac if vac is not None else np.ones(errors.size, bool)
    z = usable & (alice_key.basis == 0)
    x = usable & (alice_key.basis == 1)
    n_pulses = capture.span_s * PS_PER_S / session.alice.period_ps
    clicks_per_pulse = len(capture) / max(n_pulses, 1.0)
    background = None
    if vac is not None:
        # Clicks on vacuum pulses are background (darks, afterpulses): its share of all clicks.
        on_vacuum = float(np.count_nonzero(pattern.intensity == vac))
        p_vacuum = session.alice.intensity_probability[vac]
        background = on_vacuum / max(len(keep) * p_vacuum, 1.0)
    return QberSample(
        qber_z=float(errors[z].mean()) if z.any() else 0.5,
        qber_x=float(errors[x].mean()) if x.any() else 0.5,
        sifted_z=int(z.sum()),
        sifted_x=int(x.sum()),
        clicks_per_pulse=clicks_per_pulse,
        background_share=background,
    )


async def measure_qber(session: Session, seconds: float) -> QberSample:
    """Capture ``seconds`` of fresh tags and return their QBER."""
    return qber_of(session, await session.capture(seconds))

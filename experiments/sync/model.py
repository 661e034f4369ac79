"""The synchronization model: which of Alice's pulses a tag on Bob's clock belongs to.

Bob's tagger sees pulse ``n`` of Alice on channel ``c`` at
``t_ref + phase_ps + (n - n_ref) * period_ps + channel_offset_ps[c]`` (Bob's clock). The model
is anchored near recent data (``t_ref``, ``n_ref``) so float arithmetic stays at picosecond
precision during a 12-hour run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from experiments.sync.mapping import assign_tags

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """A locked synchronization: Bob's clock mapped onto Alice's pulse indices."""

    nominal_period_ps: float
    period_ps: float
    t_ref_ps: int
    n_ref: int
    phase_ps: float
    channel_offset_ps: dict[int, float] = field(default_factory=dict)
    channel_shift: dict[int, int] = field(default_factory=dict)
    jitter_ps: float = 0.0
    data_s: float = 0.0
    detections: int = 0
    index_score: float = 0.0
    compute_s: float = 0.0  # CPU seconds (process_time) acquisition spent on its own arithmetic

    @property
    def freq_offset(self) -> float:
        """Bob's clock frequency relative to Alice's, minus one (1e-9 = 1 ppb)."""
        return self.period_ps / self.nominal_period_ps - 1.0

    @property
    def drift_ppb(self) -> float:
        """Frequency offset in parts per billion."""
        return self.freq_offset * 1e9

    @property
    def offset_ps(self) -> float:
        """Bob's clock reading when Alice's pulse 0 arrives (clock offset plus fiber delay)."""
        return float(self.t_ref_ps) + self.phase_ps - self.n_ref * self.period_ps

    def bob_time_ps(self, pulse_index: I64 | int, channel: int | None = None) -> F64:
        """Predicted Bob-clock arrival time of Alice's pulses (float ps)."""
        n = np.asarray(pulse_index, dtype=np.int64)
        shift = 0.0 if channel is None else self._channel_ps(channel)
        rel: F64 = (n - self.n_ref).astype(np.float64) * self.period_ps
        return rel + (float(self.t_ref_ps) + self.phase_ps + shift)

    def _channel_ps(self, channel: int) -> float:
        return (
            self.channel_offset_ps.get(channel, 0.0)
            + self.channel_shift.get(channel, 0) * self.period_ps
        )

    def channel_shifts_ps(self) -> F64:
        """Phase (ps) of each of the 256 channels: common phase plus its cable offset."""
        shift = np.full(256, self.phase_ps, dtype=np.float64)
        for ch in set(self.channel_offset_ps) | set(self.channel_shift):
            shift[ch] += self._channel_ps(ch)
        return shift

    def assign(self, channel: U8, time_ps: I64) -> tuple[I64, F64]:
        """Pulse index of every tag and its residual (ps) against the predicted arrival."""
        return assign_tags(
            channel, time_ps, self.t_ref_ps, self.n_ref, self.period_ps, self.channel_shifts_ps()
        )

    def reanchored(self, t_ref_ps: int) -> SyncResult:
        """The same model anchored at the pulse nearest ``t_ref_ps``."""
        rel = float(t_ref_ps - self.t_ref_ps) - self.phase_ps
        dn = round(rel / self.period_ps)
        phase = self.phase_ps + dn * self.period_ps - float(t_ref_ps - self.t_ref_ps)
        return replace(self, t_ref_ps=int(t_ref_ps), n_ref=self.n_ref + dn, phase_ps=phase)

    def summary(self) -> dict[str, float | int]:
        """JSON-able figures for documents and the calibration store."""
        return {
            "offset_ps": self.offset_ps,
            "drift_ppb": self.drift_ppb,
            "period_ps": self.period_ps,
            "jitter_ps": self.jitter_ps,
            "data_s": self.data_s,
            "detections": self.detections,
            "index_score": self.index_score,
        }


class SyncError(RuntimeError):
    """Synchronization could not lock; the message says why."""

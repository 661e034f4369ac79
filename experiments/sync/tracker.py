"""Keep the synchronization locked while key generation runs: a Kalman filter per batch.

State: the phase error (ps) and fractional frequency error of the current model. Each batch
gives one measurement, the mean residual of its in-gate detections; the model is re-anchored
at the batch's middle so picosecond arithmetic stays exact for hours. Lock is lost when
the in-gate fraction collapses for several batches (no light, or the clock jumped).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from experiments.sync.model import SyncError, SyncResult
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.tags import TagBatch

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
STATS_TAGS = 20_000


@dataclass(frozen=True, slots=True)
class TrackedBatch:
    """One batch mapped onto Alice's pulses."""

    pulse_index: I64
    channel: U8
    residual_ps: F64
    in_gate: BoolArray
    offset_error_ps: float
    locked: bool


class SyncTracker:
    """Updates a SyncResult from every new batch of Bob's tags."""

    def __init__(
        self,
        result: SyncResult,
        *,
        gate_sigmas: float = 5.0,
        phase_noise_ps2_per_s: float = 1.0,
        freq_noise_per_s: float = 1e-22,
        lost_after: int = 3,
    ) -> None:
        self.result = result
        self.gate_ps = max(gate_sigmas * max(result.jitter_ps, 1.0), 30.0)
        self._tight_gate_ps = self.gate_ps
        self._gate_sigmas = gate_sigmas
        self._q_phase = phase_noise_ps2_per_s
        self._q_freq = freq_noise_per_s
        self._cov = np.diag([max(result.jitter_ps, 1.0) ** 2, 1e-20])
        self._lost_after = lost_after
        self._bad = 0
        self._fraction: float | None = None
        self.locked = True

    def _gate(self, phase_var_ps2: float, period_ps: float) -> float:
        """Half-width of the in-gate window: jitter plus the predicted phase uncertainty.

        After a long pause between batches (duty-cycled key generation reads a block every
        few seconds) the phase has drifted by the frequency error times the pause; a gate
        sized by jitter alone would then reject every tag and declare the lock lost although
        each tag still falls on its own pulse. The gate stays under half a period.
        """
        sigma_ps = float(np.sqrt(max(self.result.jitter_ps, 1.0) ** 2 + phase_var_ps2))
        self.gate_ps = min(max(self._gate_sigmas * sigma_ps, 30.0), 0.45 * period_ps)
        return self.gate_ps

    def update(self, batch: TagBatch) -> TrackedBatch:
        """Map ``batch`` onto pulse indices and correct phase and frequency from it."""
        if len(batch) == 0:
            empty = np.zeros(0)
            return TrackedBatch(
                np.zeros(0, dtype=np.int64),
                batch.channel,
                empty,
                np.zeros(0, dtype=np.bool_),
                0.0,
                self.locked,
            )
        mid = int(batch.time_ps[len(batch) // 2])
        dt_s = (mid - self.result.t_ref_ps) * 1e-12
        model = self.result.reanchored(mid)
        index, residual = model.assign(batch.channel, batch.time_ps)
        dt_ps = abs(dt_s) * 1e12
        transition = np.array([[1.0, dt_ps], [0.0, 1.0]])
        cov = transition @ self._cov @ transition.T
        cov += np.diag([self._q_phase * abs(dt_s), self._q_freq * abs(dt_s)])
        gate_ps = self._gate(float(cov[0, 0]), model.period_ps)
        gate = np.abs(residual) < gate_ps
        # The phase measurement needs a few thousand tags, not all of a bright link's millions.
        step = max(1, residual.size // STATS_TAGS)
        sample = residual[::step]
        in_sample = np.abs(sample) < gate_ps
        fraction = float(in_sample.mean())
        if self._fraction is None:
            self._fraction = fraction
        if fraction < 0.3 * self._fraction or in_sample.sum() < 5:
            self._bad += 1
            self.locked = self._bad < self._lost_after
            self.result = model
            self._cov = cov  # no measurement: the prediction's uncertainty keeps growing
            return TrackedBatch(index, batch.channel, residual, gate, 0.0, self.locked)
        self._bad = 0
        self.locked = True
        self._fraction = 0.9 * self._fraction + 0.1 * fraction
        # The wide gate only finds the peak; the phase is measured in a jitter-sized window
        # around it, so dark counts and afterpulses let in by a wide gate do not bias it.
        centre_ps = float(np.median(sample[in_sample]))
        tight = np.abs(sample - centre_ps) < self._tight_gate_ps
        if not tight.any():
            tight = in_sample
        measured = float(sample[tight].mean())
        noise = float(sample[tight].var()) / int(tight.sum()) + 0.25
        gate = np.abs(residual - centre_ps) < max(self._tight_gate_ps, 0.0)
        gain = cov[:, 0] / (cov[0, 0] + noise)
        correction = gain * measured
        self._cov = cov - np.outer(gain, cov[0, :])
        self.result = replace(
            model,
            phase_ps=model.phase_ps + float(correction[0]),
            period_ps=model.period_ps * (1.0 + float(correction[1])),
        )
        return TrackedBatch(index, batch.channel, residual, gate, measured, True)


async def relock(
    tracker: SyncTracker,
    tagger: TimeTagger,
    *,
    min_tags: int = 20_000,
    max_batches: int = 64,
    timeout_s: float = 5.0,
) -> SyncResult:
    """Bring a tracked model up to date from fresh tags; SyncError when the lock is lost.

    For duty-cycled use (a key block every few seconds): the stream is restarted so only
    tags from now on count, and batches are read until ``min_tags`` fell in the gate. The
    stream is left running, so a block read right after continues where this stopped.
    """
    await tagger.stop_stream()
    await tagger.start_stream()
    in_gate = 0
    for _ in range(max_batches):
        tracked = tracker.update(await tagger.read_batch(timeout_s))
        if not tracker.locked:
            raise SyncError(
                "synchronization lost: Bob's tags no longer fall on Alice's pulse clock "
                f"(gate +-{tracker.gate_ps:.0f} ps); resynchronize"
            )
        in_gate += int(tracked.in_gate.sum())
        if in_gate >= min_tags:
            return tracker.result
    raise SyncError(
        f"synchronization not refreshed: only {in_gate} tags in the gate after "
        f"{max_batches} batches (need {min_tags}): no light at Bob?"
    )

"""Keep the synchronization locked while key generation runs: a Kalman filter per batch.

State: the phase error (ps) and fractional frequency error of the current model. Each batch
gives one measurement, the mean residual of the in-gate detections of a subsample
(``STATS_TAGS`` tags in ``STATS_RUNS`` runs spread over the batch: a few thousand tags give
the phase to < 1 ps, and mapping a bright link's millions would cost more than the data
lasts); the model is re-anchored at the batch's middle so picosecond arithmetic stays exact
for hours. Every tag's pulse index is mapped only when a consumer reads
``TrackedBatch.pulse_index`` (or ``residual_ps``/``in_gate``), with the model the batch was
predicted with. Lock is lost when the in-gate fraction collapses for several batches (no
light, or the clock jumped).

A batch the tagger flags as overflowed (``TagBatch.overflow``: it dropped tags because the
input rate exceeded its maximum, or its buffer overran) gives no measurement: which tags
survive depends on the tagger's buffering, and an overrun window can carry tags from
around the discontinuity, so its residuals are not trusted. It is still mapped with the
prediction, counts neither for nor against the lock, and is counted in
``SyncTracker.overflowed_batches`` (``missed_events`` sums what the tagger said it dropped).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from experiments.sync.mapping import assign_tags, peak_stats
from experiments.sync.model import SyncError, SyncResult
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import PS_PER_S, ps_to_seconds

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
STATS_TAGS = 4_000
STATS_RUNS = 8


def _sample(n: int) -> slice | I64:
    """Positions of the phase subsample: all tags, or STATS_RUNS evenly spread runs."""
    if n <= STATS_TAGS:
        return slice(None)
    run = STATS_TAGS // STATS_RUNS
    starts = np.arange(STATS_RUNS, dtype=np.int64) * (n - run) // (STATS_RUNS - 1)
    picked: I64 = (starts[:, None] + np.arange(run, dtype=np.int64)).ravel()
    return picked


class TrackedBatch:
    """One batch mapped onto Alice's pulses; per-tag arrays are computed on first access."""

    __slots__ = (
        "_gate",
        "_index",
        "_residual",
        "channel",
        "gate_centre_ps",
        "gate_half_ps",
        "in_gate_count",
        "locked",
        "model",
        "offset_error_ps",
        "overflow",
        "time_ps",
    )

    def __init__(
        self,
        batch: TagBatch,
        model: SyncResult,
        *,
        gate_centre_ps: float,
        gate_half_ps: float,
        in_gate_count: int,
        offset_error_ps: float,
        locked: bool,
    ) -> None:
        self.channel: U8 = batch.channel
        self.time_ps: I64 = batch.time_ps
        self.overflow = batch.overflow
        self.model = model  # the prediction every tag of this batch is mapped with
        self.gate_centre_ps = gate_centre_ps
        self.gate_half_ps = gate_half_ps
        # Counted on the subsample the phase was measured on, scaled to the whole batch.
        self.in_gate_count = in_gate_count
        self.offset_error_ps = offset_error_ps
        self.locked = locked
        self._index: I64 | None = None
        self._residual: F64 | None = None
        self._gate: BoolArray | None = None

    def __len__(self) -> int:
        return int(self.time_ps.size)

    def _map(self) -> tuple[I64, F64]:
        if self._index is None or self._residual is None:
            self._index, self._residual = self.model.assign(self.channel, self.time_ps)
        return self._index, self._residual

    @property
    def pulse_index(self) -> I64:
        """Alice's pulse index of every tag."""
        return self._map()[0]

    @property
    def residual_ps(self) -> F64:
        """Every tag's time minus its pulse's predicted arrival (ps)."""
        return self._map()[1]

    @property
    def in_gate(self) -> BoolArray:
        """Tags within the gate around the measured peak (the light, not darks/afterpulses)."""
        if self._gate is None:
            self._gate = np.abs(self.residual_ps - self.gate_centre_ps) < self.gate_half_ps
        return self._gate


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
        self.overflowed_batches = 0
        self.missed_events = 0

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
        """Correct phase and frequency from ``batch``; its tags map onto pulses on demand."""
        self.missed_events += batch.missed_events
        if batch.overflow:
            self.overflowed_batches += 1
        n = len(batch)
        if n == 0:
            return TrackedBatch(
                batch,
                self.result,
                gate_centre_ps=0.0,
                gate_half_ps=self.gate_ps,
                in_gate_count=0,
                offset_error_ps=0.0,
                locked=self.locked,
            )
        mid = int(batch.time_ps[n // 2])
        dt_s = ps_to_seconds(mid - self.result.t_ref_ps)
        model = self.result.reanchored(mid)
        dt_ps = abs(dt_s) * PS_PER_S
        transition = np.array([[1.0, dt_ps], [0.0, 1.0]])
        cov = transition @ self._cov @ transition.T
        cov += np.diag([self._q_phase * abs(dt_s), self._q_freq * abs(dt_s)])
        gate_ps = self._gate(float(cov[0, 0]), model.period_ps)
        # A subsample in a few contiguous runs spread over the batch measures the phase
        # (contiguous: a strided pick costs a cache miss per tag); the rest stay unmapped.
        pick = _sample(n)
        _, sample = assign_tags(
            batch.channel[pick],
            batch.time_ps[pick],
            model.t_ref_ps,
            model.n_ref,
            model.period_ps,
            model.channel_shifts_ps(),
        )
        scale = n / sample.size
        hits, centre_ps, count, measured, var = peak_stats(sample, gate_ps, self._tight_gate_ps)
        fraction = hits / sample.size

        def predicted(locked: bool) -> TrackedBatch:
            # No measurement: the model moves on and its uncertainty keeps growing.
            self.result = model
            self._cov = cov
            return TrackedBatch(
                batch,
                model,
                gate_centre_ps=0.0,
                gate_half_ps=gate_ps,
                in_gate_count=round(hits * scale),
                offset_error_ps=0.0,
                locked=locked,
            )

        if batch.overflow:
            return predicted(self.locked)
        if self._fraction is None:
            self._fraction = fraction
        if fraction < 0.3 * self._fraction or hits < 5:
            self._bad += 1
            self.locked = self._bad < self._lost_after
            return predicted(self.locked)
        self._bad = 0
        self.locked = True
        self._fraction = 0.9 * self._fraction + 0.1 * fraction
        # The wide gate only finds the peak; the phase is measured in a jitter-sized window
        # around it, so dark counts and afterpulses let in by a wide gate do not bias it.
        noise = var / count + 0.25
        gain = cov[:, 0] / (cov[0, 0] + noise)
        correction = gain * measured
        self._cov = cov - np.outer(gain, cov[0, :])
        self.result = replace(
            model,
            phase_ps=model.phase_ps + float(correction[0]),
            period_ps=model.period_ps * (1.0 + float(correction[1])),
        )
        return TrackedBatch(
            batch,
            model,
            gate_centre_ps=centre_ps,
            gate_half_ps=self._tight_gate_ps,
            in_gate_count=round(count * scale),
            offset_error_ps=measured,
            locked=True,
        )


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
    tags from now on count, and batches are read until ``min_tags`` fell in the gate of
    batches that measured the phase (overflowed batches do not). The stream is left
    running, so a block read right after continues where this stopped.
    """
    await tagger.stop_stream()
    await tagger.start_stream()
    in_gate = 0
    overflowed = 0
    for _ in range(max_batches):
        tracked = tracker.update(await tagger.read_batch(timeout_s))
        if not tracker.locked:
            raise SyncError(
                "synchronization lost: Bob's tags no longer fall on Alice's pulse clock "
                f"(gate +-{tracker.gate_ps:.0f} ps); resynchronize"
            )
        if tracked.overflow:
            overflowed += 1
            continue
        in_gate += tracked.in_gate_count
        if in_gate >= min_tags:
            return tracker.result
    if overflowed:
        raise SyncError(
            f"synchronization not refreshed: Bob's tagger overflowed on {overflowed} of "
            f"{max_batches} batches (count rate above its maximum: attenuate or gate the "
            f"detectors); {in_gate} tags in the gate of the others (need {min_tags})"
        )
    raise SyncError(
        f"synchronization not refreshed: only {in_gate} tags in the gate after "
        f"{max_batches} batches (need {min_tags}): no light at Bob?"
    )

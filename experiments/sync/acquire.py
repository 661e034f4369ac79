"""Acquire synchronization on live instruments: pulse clock, dark-gap markers, qubits.

``acquire_sync`` has Alice play a synchronization frame on her transmitter and reads Bob's
tagger across it: the frame's lead-in gives the pulse clock, its dark gaps (at pulse
indices Alice knows from her frame marker) bound the absolute index, and its states fix it
(see ``experiments.sync.index``). Every read has a timeout; no light fails with a clear
reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.sync.alice import DETECTOR_STATES, AlicePublic, TransmitterAlice
from experiments.sync.frequency import fit_clock
from experiments.sync.index import channel_shifts, find_offset, gap_offset_candidates
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.settings import SyncSettings
from labctl.interfaces.clock import Clock
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.pattern import PulsePattern
from labctl.interfaces.tags import TagBatch

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
_FIT_CAP = 200_000
MAX_CANDIDATES = 40_000


class TagLog:
    """Bob's tags read so far, concatenated lazily, restricted to mapped channels."""

    def __init__(self, channels: dict[int, str]) -> None:
        self.mapped = np.zeros(256, dtype=np.bool_)
        self.mapped[list(channels)] = True
        self._times: list[I64] = []
        self._channels: list[U8] = []
        self.count = 0
        self.first_start_ps: int | None = None
        self.last_stop_ps = 0
        self.overflow = False

    def add(self, batch: TagBatch) -> None:
        """Keep one batch."""
        if self.first_start_ps is None:
            self.first_start_ps = batch.start_ps
        self.last_stop_ps = batch.stop_ps
        self.overflow |= batch.overflow
        keep = self.mapped[batch.channel]
        self._times.append(batch.time_ps[keep])
        self._channels.append(batch.channel[keep])
        self.count += int(keep.sum())

    @property
    def span_s(self) -> float:
        """Bob-clock seconds covered."""
        return (
            0.0
            if self.first_start_ps is None
            else (self.last_stop_ps - self.first_start_ps) * 1e-12
        )

    def arrays(self) -> tuple[I64, U8]:
        """All tags (time, channel), sorted by time."""
        if not self._times:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        return np.concatenate(self._times), np.concatenate(self._channels)


def bob_states(channel: U8, channels: dict[int, str]) -> tuple[U8, U8]:
    """Basis and bit Bob reports for tags on each channel."""
    basis = np.zeros(256, dtype=np.uint8)
    bit = np.zeros(256, dtype=np.uint8)
    for ch, detector in channels.items():
        basis[ch], bit[ch] = DETECTOR_STATES[detector]
    return basis[channel], bit[channel]


def vacuum_code(alice: AlicePublic) -> int | None:
    """Code of Alice's vacuum class (mu = 0), if she has one."""
    for code, mu in enumerate(alice.intensity_mu):
        if mu == 0.0:
            return code
    return None


@dataclass(frozen=True, slots=True)
class SyncFrame:
    """A one-shot frame: constant-state lead-in (clock fit), then random states with dark
    gaps (vacuum class) whose pulse positions mark the absolute index."""

    pattern: PulsePattern
    gaps: tuple[tuple[int, int], ...]  # (first dark pulse, first lit pulse after it), relative


def sync_frame(alice: AlicePublic, settings: SyncSettings) -> SyncFrame:
    """The frame Alice plays for one synchronization (public: every state is revealed)."""
    vac = vacuum_code(alice)
    if vac is None:
        raise SyncError("synchronization needs a vacuum intensity class (mu = 0) for dark gaps")
    signal = int(np.argmax(alice.intensity_mu))
    period_s = alice.period_ps * 1e-12
    lead = max(1, math.ceil(settings.min_span_s * 1.25 / period_s))
    gap = max(64, math.ceil(settings.min_gap_s / period_s))
    marker_len = settings.marker_gaps * 3 * gap + 2 * gap
    rng = np.random.default_rng()
    intensity = np.full(lead + marker_len, signal, dtype=np.uint8)
    basis = np.zeros(lead + marker_len, dtype=np.uint8)
    basis[lead // 2 : lead] = 1  # Z then X: every detector clicks during the clock fit
    bit = np.zeros(lead + marker_len, dtype=np.uint8)
    probs = np.asarray(alice.intensity_probability)
    lit = lead + marker_len
    intensity[lead:] = rng.choice(len(probs), size=marker_len, p=probs).astype(np.uint8)
    intensity[lead:][intensity[lead:] == vac] = signal  # dark only inside the gaps
    basis[lead:] = rng.integers(0, 2, marker_len, dtype=np.uint8)
    bit[lead:] = rng.integers(0, 2, marker_len, dtype=np.uint8)
    gaps = []
    for i in range(settings.marker_gaps):
        off = lead + 2 * gap + 3 * i * gap
        intensity[off : off + gap] = vac
        gaps.append((off, off + gap))
    assert gaps[-1][1] + 2 * gap <= lit
    return SyncFrame(PulsePattern(intensity, basis, bit), tuple(gaps))


async def acquire_sync(
    tagger: TimeTagger,
    alice: TransmitterAlice,
    clock: Clock,
    settings: SyncSettings,
) -> SyncResult:
    """Lock Bob's clock onto Alice's pulse indices (prior: +-max_ppm, any offset).

    Alice plays a one-shot synchronization frame; Bob reads his tags from before it
    starts until it has ended, fits the pulse clock on its lead-in and finds the absolute
    index from its dark gaps (positions Alice knows from her frame marker) and states.
    Afterwards Alice's calibration frame plays again. The stream is restarted first: tags
    queued before this call would precede the frame.
    """
    await tagger.stop_stream()
    await tagger.start_stream()
    frame = sync_frame(alice, settings)
    first = await alice.play_once(frame.pattern)
    markers = [(first + a, first + b) for a, b in frame.gaps]
    frame_ps = len(frame.pattern) * alice.period_ps * (1.0 + settings.max_ppm * 1e-6)
    log = TagLog(settings.channels)
    light_ps: int | None = None
    try:
        while True:
            batch = await tagger.read_batch(settings.batch_timeout_s)
            log.add(batch)
            if light_ps is None:
                span = max(batch.stop_ps - batch.start_ps, 1)
                if batch.time_ps.size * 1e12 / span > settings.light_rate_hz:
                    light_ps = int(batch.time_ps[0]) if batch.time_ps.size else batch.start_ps
            elif log.last_stop_ps >= light_ps + frame_ps + 0.1 * settings.min_span_s * 1e12:
                break
            if log.span_s > settings.max_acquire_s:
                raise SyncError(
                    f"no light at Bob: only {log.count} tags in {log.span_s:.3g} s on channels "
                    f"{sorted(settings.channels)} (transmitter stopped, laser off, fiber cut or "
                    "switch not on Bob's port?)"
                )
    finally:
        await alice.ensure_light()
    time_ps, channel = log.arrays()
    if log.count < settings.min_tags:
        raise SyncError(
            f"only {log.count} tags at Bob during the sync frame (need {settings.min_tags})"
        )
    started = time.process_time()
    fit = fit_clock(time_ps[:_FIT_CAP], channel[:_FIT_CAP], alice.period_ps, settings.max_ppm)
    if fit.coherence < 0.05:
        raise SyncError(f"no pulse clock in Bob's tags (coherence {fit.coherence:.3f}): no light?")
    lookup = np.zeros(256)
    for ch, phase in fit.channel_phase_ps.items():
        lookup[ch] = phase
    rel = (time_ps - fit.t_ref_ps).astype(np.float64) - lookup[channel]
    k = np.rint(rel / fit.period_ps).astype(np.int64)
    order = np.argsort(k, kind="stable")
    k, channel = k[order], channel[order]
    k_lo, k_hi = np.percentile(k, [1.0, 99.0])  # the lit frame, not darks around it
    density = 0.98 * k.size / max(float(k_hi - k_lo), 1.0)
    candidates = gap_offset_candidates(k, markers, density, MAX_CANDIDATES)
    reach = int(3000 / density)
    lo, hi = int(candidates.min()), int(candidates.max())
    near = (k + hi >= markers[0][0] - reach) & (k + lo <= markers[-1][1] + reach)
    basis, bit = bob_states(channel[near], settings.channels)
    vac = vacuum_code(alice)
    offset, margin = find_offset(alice, k[near], basis, bit, candidates, vac)
    shifts = channel_shifts(alice, k[near], channel[near], basis, bit, offset, vac)
    compute_s = time.process_time() - started
    ref = fit.reference_channel
    ref_phase = fit.channel_phase_ps[ref]
    return SyncResult(
        nominal_period_ps=float(alice.period_ps),
        period_ps=fit.period_ps,
        t_ref_ps=fit.t_ref_ps,
        n_ref=offset,
        phase_ps=ref_phase,
        channel_offset_ps={c: p - ref_phase for c, p in fit.channel_phase_ps.items()},
        channel_shift={c: -s for c, s in shifts.items() if s},
        jitter_ps=fit.jitter_ps,
        data_s=log.span_s,
        detections=log.count,
        index_score=margin,
        compute_s=compute_s,
    )

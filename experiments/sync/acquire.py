"""Acquire synchronization on live instruments: pulse clock, laser-gap marker, qubits.

``acquire_sync`` reads Bob's tagger until the pulse clock is clear, has Alice blank her
laser for a few announced gaps, then fixes the absolute pulse index from the qubits (see
``experiments.sync.index``). Every read has a timeout; no light fails with a clear reason.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from experiments.sync.alice import DETECTOR_STATES, AlicePublic
from experiments.sync.frequency import fit_clock
from experiments.sync.index import channel_shifts, find_offset, gap_offset_candidates
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.settings import SyncSettings
from labctl.interfaces.clock import Clock
from labctl.interfaces.devices import Laser, TimeTagger
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


async def acquire_sync(
    tagger: TimeTagger,
    laser: Laser,
    alice: AlicePublic,
    clock: Clock,
    settings: SyncSettings,
) -> SyncResult:
    """Lock Bob's clock onto Alice's pulse indices (prior: +-max_ppm, any offset).

    The stream is restarted first: tags queued before this call (a stream left running by
    an earlier step, recorded with other switch ports, laser settings or polarization) would
    precede the marker gaps, so the data read would not reach the gaps Alice announces.
    """
    await tagger.stop_stream()
    await tagger.start_stream()
    log = TagLog(settings.channels)
    clock_start = clock.now_s()
    while log.count < settings.min_tags or log.span_s < settings.min_span_s:
        log.add(await tagger.read_batch(settings.batch_timeout_s))
        if log.span_s > settings.max_acquire_s:
            raise SyncError(
                f"no light at Bob: only {log.count} tags in {log.span_s:.3g} s on channels "
                f"{sorted(settings.channels)} (laser off, fiber cut or switch not on Bob's port?)"
            )
    time_ps, channel = log.arrays()
    started = time.process_time()
    fit = fit_clock(time_ps[:_FIT_CAP], channel[:_FIT_CAP], alice.period_ps, settings.max_ppm)
    if fit.coherence < 0.05:
        raise SyncError(f"no pulse clock in Bob's tags (coherence {fit.coherence:.3f}): no light?")
    compute_s = time.process_time() - started
    rate_hz = log.count / max(log.span_s, 1e-12)
    gap_s = min(0.05, max(settings.min_gap_s, 60.0 / rate_hz))
    markers: list[tuple[int, int]] = []
    for _ in range(settings.marker_gaps):
        await laser.set_output(False)
        n_off = alice.pulse_index_now()
        await clock.sleep(gap_s)
        await laser.set_output(True)
        n_on = alice.pulse_index_now()
        markers.append((n_off, n_on))
        await clock.sleep(2.0 * gap_s)
    await clock.sleep(2.0 * gap_s)
    assert log.first_start_ps is not None
    target = log.first_start_ps + (clock.now_s() - clock_start) * 1e12 * (
        fit.period_ps / alice.period_ps
    )
    while log.last_stop_ps < target:
        log.add(await tagger.read_batch(settings.batch_timeout_s))
    time_ps, channel = log.arrays()
    started = time.process_time()
    lookup = np.zeros(256)
    for ch, phase in fit.channel_phase_ps.items():
        lookup[ch] = phase
    rel = (time_ps - fit.t_ref_ps).astype(np.float64) - lookup[channel]
    k = np.rint(rel / fit.period_ps).astype(np.int64)
    order = np.argsort(k, kind="stable")
    k, channel = k[order], channel[order]
    density = k.size / max(float(k[-1] - k[0]), 1.0)
    candidates = gap_offset_candidates(k, markers, density, MAX_CANDIDATES)
    reach = int(3000 / density)
    lo, hi = int(candidates.min()), int(candidates.max())
    near = (k + hi >= markers[0][0] - reach) & (k + lo <= markers[-1][1] + reach)
    basis, bit = bob_states(channel[near], settings.channels)
    vac = vacuum_code(alice)
    offset, margin = find_offset(alice, k[near], basis, bit, candidates, vac)
    shifts = channel_shifts(alice, k[near], channel[near], basis, bit, offset, vac)
    compute_s += time.process_time() - started
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

"""Acquire synchronization on live instruments: pulse clock, dark-gap markers, qubits.

``acquire_sync`` fits the pulse clock on Alice's calibration frame, has Alice play a marker
frame on her transmitter and reads Bob's tagger across it: its dark gaps (at pulse indices
Alice knows from her frame marker) bound the absolute index, and its states fix it (see
``experiments.sync.index``). Every read has a timeout; no light fails with a clear
reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from experiments.sync.alice import DETECTOR_STATES, AlicePublic, AliceSide
from experiments.sync.frequency import fit_clock
from experiments.sync.index import channel_shifts, find_offset, gap_offset_candidates
from experiments.sync.model import SyncError, SyncResult
from experiments.sync.settings import SyncSettings
from labctl.interfaces.clock import Clock
from labctl.interfaces.devices import TimeTagger
from labctl.interfaces.pattern import PulsePattern
from labctl.interfaces.tags import TagBatch
from labctl.interfaces.units import PS_PER_S, ps_to_seconds

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
            else ps_to_seconds(self.last_stop_ps - self.first_start_ps)
        )

    def arrays(self) -> tuple[I64, U8]:
        """All tags (time, channel), sorted by time (read-only views of the log)."""
        if not self._times:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        if len(self._times) > 1:  # kept joined: the batches are not held twice
            self._times = [_join(self._times, np.int64)]
            self._channels = [_join(self._channels, np.uint8)]
        time_ps, channel = self._times[0].view(), self._channels[0].view()
        time_ps.flags.writeable = channel.flags.writeable = False
        return time_ps, channel

    def take(self) -> tuple[I64, U8]:
        """All tags (time, channel) handed over, writable; the log is left empty."""
        if len(self._times) == 1 and self._times[0].flags.owndata:
            time_ps, channel = self._times[0], self._channels[0]
        else:  # several batches (joined now), or one that is a view of a tagger's buffer
            time_ps, channel = _join(self._times, np.int64), _join(self._channels, np.uint8)
        self._times, self._channels, self.count = [], [], 0
        return time_ps, channel


_A = TypeVar("_A", I64, U8)


def _join(parts: list[_A], dtype: type[np.generic]) -> _A:
    """The parts end to end; each part is let go of once copied (``parts`` is emptied), so
    the tags are never held twice over: a marker frame on a fast link is millions of them."""
    out: _A = np.empty(sum(part.size for part in parts), dtype=dtype)
    at = 0
    parts.reverse()
    while parts:  # the list holds the only reference to most batches
        part = parts.pop()
        out[at : at + part.size] = part
        at += part.size
        del part
    return out


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
class MarkerFrame:
    """A one-shot frame of random states with dark gaps (vacuum class) at known pulses."""

    pattern: PulsePattern
    gaps: tuple[tuple[int, int], ...]  # (first dark pulse, first lit pulse after it), relative
    gap_pulses: int


def marker_frame(
    alice: AlicePublic, gaps: int, gap_pulses: int, seed: int | None = None
) -> MarkerFrame:
    """Light 2g, then ``gaps`` times (dark g, light 2g): public states from ``seed``."""
    vac = vacuum_code(alice)
    if vac is None:
        raise SyncError("synchronization needs a vacuum intensity class (mu = 0) for dark gaps")
    signal = int(np.argmax(alice.intensity_mu))
    length = 2 * gap_pulses + 3 * gaps * gap_pulses
    rng = np.random.default_rng(seed)
    probs = np.asarray(alice.intensity_probability)
    intensity = rng.choice(len(probs), size=length, p=probs).astype(np.uint8)
    intensity[intensity == vac] = signal  # dark only inside the gaps
    marks = []
    for i in range(gaps):
        off = 2 * gap_pulses + 3 * i * gap_pulses
        intensity[off : off + gap_pulses] = vac
        marks.append((off, off + gap_pulses))
    basis = rng.integers(0, 2, length, dtype=np.uint8)
    bit = rng.integers(0, 2, length, dtype=np.uint8)
    return MarkerFrame(PulsePattern(intensity, basis, bit), tuple(marks), gap_pulses)


class FrameWatch:
    """Tells, from Bob's tags as they come, when a marker frame has passed.

    Tags are binned a quarter gap wide; a bin is dark below a fifth of the light's
    expected count. The frame has passed once its gaps were seen as short dark runs and
    a long dark run (its end: Alice plays nothing after it) followed them.
    """

    def __init__(self, gaps: int, gap_ps: float, rate_hz: float, start_ps: int) -> None:
        self.bin_ps = gap_ps / 4.0
        self.threshold = 0.2 * rate_hz * ps_to_seconds(self.bin_ps)
        self.gaps = gaps
        self.start_ps = start_ps
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, time_ps: I64, stop_ps: int) -> None:
        """Count a batch's mapped tags (bins up to ``stop_ps`` are complete)."""
        n_bins = max(0, int((stop_ps - self.start_ps) // self.bin_ps))
        if n_bins > self.counts.size:
            self.counts = np.concatenate(
                [self.counts, np.zeros(n_bins - self.counts.size, dtype=np.int64)]
            )
        b = ((time_ps[time_ps >= self.start_ps] - self.start_ps) // self.bin_ps).astype(np.int64)
        b = b[b < self.counts.size]
        np.add.at(self.counts, b, 1)

    def _find(self) -> tuple[int, int] | None:
        """(bin of the frame's first gap, bin where the dark after the frame starts)."""
        dark = self.counts < self.threshold
        if not dark.any():
            return None
        edges = np.flatnonzero(np.diff(np.concatenate([[0], dark.astype(np.int8), [0]])))
        runs = list(zip(edges[::2], edges[1::2] - edges[::2], strict=True))
        shorts: list[int] = []
        for start, length in runs:
            if 2 <= length <= 6 and start > 0:
                shorts.append(int(start))
            elif length >= 16:
                if len(shorts) >= self.gaps:
                    return shorts[-self.gaps], int(start)
                shorts = []  # a long dark before the frame (Alice loading it): start over
        return None

    def passed(self) -> bool:
        """True when the gaps and the dark after the frame were seen."""
        return self._find() is not None

    def window_ps(self) -> tuple[float, float]:
        """Bob-clock span of the frame: from inside its lead-in (2 gaps of light before the
        first gap; whatever came before it may be dark) to two gaps past its end."""
        found = self._find()
        if found is None:
            raise SyncError("the marker frame was not seen")
        first_gap, end = found
        return (
            self.start_ps + (first_gap - 6) * self.bin_ps,
            self.start_ps + (end + 8) * self.bin_ps,
        )


_KEY_CHUNK = 1 << 20
"""Tags converted at a time: a slow link's frame can take minutes of tags, and whole-array
temporaries would hold them several times over."""


def _pulse_keys(
    time_ps: I64,
    channel: U8,
    phase_ps: npt.NDArray[np.float64],
    t_ref_ps: int,
    period_ps: float,
    window_ps: tuple[float, float],
    out: I64 | None = None,
) -> I64:
    """Per tag, its pulse k (relative to ``t_ref_ps``), channel and whether it lies in
    ``window_ps``, packed as k * 512 + channel * 2 + inside: one array that sorts in place.

    ``out`` may be ``time_ps`` itself (each piece is read before it is overwritten): the
    keys then take the tags' place instead of needing as much memory again."""
    keys = np.empty(time_ps.size, dtype=np.int64) if out is None else out
    lo_ps, hi_ps = window_ps
    for at in range(0, time_ps.size, _KEY_CHUNK):
        t, ch = time_ps[at : at + _KEY_CHUNK], channel[at : at + _KEY_CHUNK]
        rel = (t - t_ref_ps).astype(np.float64) - phase_ps[ch]
        k = np.rint(rel / period_ps).astype(np.int64)
        keys[at : at + t.size] = (
            (k << 9) | (ch.astype(np.int64) << 1) | ((t >= lo_ps) & (t <= hi_ps))
        )
    return keys


def _sorted_by_pulse(keys: I64) -> tuple[I64, U8, npt.NDArray[np.bool_]]:
    """(k, channel, inside) of :func:`_pulse_keys`'s keys sorted by pulse (``keys`` becomes k)."""
    keys.sort()
    channel = np.empty(keys.size, dtype=np.uint8)
    inside = np.empty(keys.size, dtype=np.bool_)
    for at in range(0, keys.size, _KEY_CHUNK):
        part = keys[at : at + _KEY_CHUNK]
        channel[at : at + part.size] = (part >> 1) & 255
        inside[at : at + part.size] = (part & 1).astype(np.bool_)
    np.right_shift(keys, 9, out=keys)  # arithmetic: negative k come back exactly
    return keys, channel, inside


async def _lit_log(tagger: TimeTagger, settings: SyncSettings) -> TagLog:
    log = TagLog(settings.channels)
    while log.count < settings.min_tags or log.span_s < settings.min_span_s:
        log.add(await tagger.read_batch(settings.batch_timeout_s))
        if log.span_s > settings.max_acquire_s:
            raise SyncError(
                f"no light at Bob: only {log.count} tags in {log.span_s:.3g} s on channels "
                f"{sorted(settings.channels)} (transmitter stopped, laser off, fiber cut or "
                "switch not on Bob's port?)"
            )
    return log


async def acquire_sync(
    tagger: TimeTagger,
    alice: AliceSide,
    clock: Clock,
    settings: SyncSettings,
) -> SyncResult:
    """Lock Bob's clock onto Alice's pulse indices (prior: +-max_ppm, any offset).

    Bob fits the pulse clock on Alice's calibration frame, then Alice plays a one-shot
    marker frame whose dark gaps lie at pulse indices she knows from her frame marker; Bob
    reads across it, bounds the absolute index with the gaps and fixes it from the states
    (revealed by Alice: the frame is public). The stream is restarted first: tags queued
    before this call would precede the frame. The calibration frame plays again after.
    """
    await alice.ensure_light()
    await tagger.stop_stream()
    await tagger.start_stream()
    log = await _lit_log(tagger, settings)
    time_ps, channel = log.arrays()
    started = time.process_time()
    fit = fit_clock(time_ps[:_FIT_CAP], channel[:_FIT_CAP], alice.period_ps, settings.max_ppm)
    del time_ps, channel  # the log grows across the frame: no reference to its old arrays
    if fit.coherence < 0.05:
        raise SyncError(f"no pulse clock in Bob's tags (coherence {fit.coherence:.3f}): no light?")
    compute_s = time.process_time() - started
    rate_hz = log.count / max(log.span_s, 1e-12)
    gap_s = min(0.05, max(settings.min_gap_s, 60.0 / rate_hz))
    gap_pulses = math.ceil(gap_s * PS_PER_S / alice.period_ps)
    seed = settings.marker_seed
    if seed is None:
        seed = int(np.random.default_rng().integers(0, 2**62))
    frame = marker_frame(alice, settings.marker_gaps, gap_pulses, seed)
    watch = FrameWatch(settings.marker_gaps, gap_pulses * fit.period_ps, rate_hz, log.last_stop_ps)
    try:
        first = await alice.play_marker_frame(frame.pattern, settings.marker_gaps, gap_pulses, seed)
        while not watch.passed():
            batch = await tagger.read_batch(settings.batch_timeout_s)
            log.add(batch)
            watch.add(batch.time_ps[log.mapped[batch.channel]], batch.stop_ps)
            if log.span_s > settings.max_acquire_s + ps_to_seconds(
                len(frame.pattern) * alice.period_ps
            ):
                raise SyncError(
                    f"Alice's marker frame did not pass at Bob within {log.span_s:.3g} s "
                    "(light lost during synchronization?)"
                )
    finally:
        await alice.ensure_light()
    markers = [(first + a, first + b) for a, b in frame.gaps]
    data_s, detections = log.span_s, log.count
    time_ps, channel = log.take()  # the tags live on as these two arrays only
    del log
    started = time.process_time()
    lo_ps, hi_ps = watch.window_ps()
    # Refit over everything read: the frame lengthens the baseline, and a spread subsample
    # keeps it at the cost of the first fit (the drift error falls as 1 / span^1.5).
    spread = np.linspace(0, time_ps.size - 1, min(time_ps.size, _FIT_CAP))
    pick = np.unique(spread.astype(np.int64))
    refit = fit_clock(time_ps[pick], channel[pick], alice.period_ps, settings.max_ppm)
    if refit.coherence >= fit.coherence * 0.5:
        fit = refit
    lookup = np.zeros(256)
    for ch, phase in fit.channel_phase_ps.items():
        lookup[ch] = phase
    window = (lo_ps, hi_ps)
    keys = _pulse_keys(time_ps, channel, lookup, fit.t_ref_ps, fit.period_ps, window, time_ps)
    del time_ps, channel
    k, channel, in_frame = _sorted_by_pulse(keys)
    density = rate_hz * ps_to_seconds(alice.period_ps)
    # Only the frame bounds the index: a long dark before it (Alice loading the frame while
    # Bob's stream ran on) would pass for a marker gap. The states of the calibration frame
    # around it are known too, so they help single the offset out.
    # The gaps bound the offset: first from everything read (the light just around the
    # frame helps a weak link), then from the frame alone (a long dark before it, Alice
    # loading the frame while Bob's stream ran on, would pass for a marker gap).
    vac = vacuum_code(alice)
    reach = int(3000 / density)
    failure: SyncError | None = None

    def subsets() -> Iterator[I64]:
        yield k  # everything read
        yield k[in_frame]  # the frame alone: copied only if it comes to that

    for subset in subsets():
        try:
            candidates = gap_offset_candidates(subset, markers, density, MAX_CANDIDATES)
            lo, hi = int(candidates.min()), int(candidates.max())
            # The tags within reach of the frame for any candidate: k is sorted, so they
            # are one slice (views, not copies of everything read).
            near = slice(
                int(np.searchsorted(k, markers[0][0] - reach - hi, side="left")),
                int(np.searchsorted(k, markers[-1][1] + reach - lo, side="right")),
            )
            basis, bit = bob_states(channel[near], settings.channels)
            offset, margin = find_offset(alice, k[near], basis, bit, candidates, vac)
        except SyncError as exc:
            failure = exc
            continue
        shifts = channel_shifts(alice, k[near], channel[near], basis, bit, offset, vac)
        break
    else:
        assert failure is not None
        raise failure
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
        data_s=data_s,
        detections=detections,
        index_score=margin,
        compute_s=compute_s,
    )

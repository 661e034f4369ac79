"""Bob's detectors: dark counts, non-paralyzable dead time, afterpulsing, jitter, latching.

Works on already sparse events (clicks, never pulses), one detector at a time, with numpy:
dead time is decided by vectorized passes that only walk the short clusters of events
closer than the dead time, so the cost stays proportional to the number of clicks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from sims.world.settings import DetectorSettings

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_NEVER = -(2**62)
_QUANTILE_BITS = 16
_N_QUANTILES = 1 << _QUANTILE_BITS


def nonparalyzable_keep(times_ps: I64, dead_ps: int, last_kept_ps: int) -> BoolArray:
    """Which sorted clicks survive a non-paralyzable dead time after the previous kept one."""
    n = times_ps.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.bool_)
    if dead_ps <= 0:
        return np.ones(n, dtype=np.bool_)
    gaps = np.empty(n, dtype=np.int64)
    gaps[0] = times_ps[0] - last_kept_ps
    np.subtract(times_ps[1:], times_ps[:-1], out=gaps[1:])
    # A click far enough from the previous *raw* click is surely kept (the previous kept one is
    # at least as far); only the clusters in between need walking.
    keep = gaps >= dead_ps
    if keep.all():
        return keep
    # Runs of doubtful clicks: each starts right after a surely-kept click (its "head") and
    # ends at the next surely-kept one. Walk every run in parallel from its head.
    doubtful = ~keep
    run_start = np.flatnonzero(doubtful[1:] & keep[:-1]) + 1
    run_stop = np.flatnonzero(doubtful[:-1] & keep[1:]) + 1
    if doubtful[-1]:
        run_stop = np.append(run_stop, n)
    heads_ps = times_ps[run_start - 1]
    if doubtful[0]:
        heads_ps = np.concatenate([[last_kept_ps], heads_ps])
        run_start = np.concatenate([[0], run_start])
    cursor = np.searchsorted(times_ps, heads_ps + dead_ps, side="left")
    stop = run_stop
    active = cursor < stop
    while active.any():
        cursor, stop = cursor[active], stop[active]
        keep[cursor] = True
        cursor = np.searchsorted(times_ps, times_ps[cursor] + dead_ps, side="left")
        active = cursor < stop
    return keep


def bernoulli_positions(
    rng: np.random.Generator, n: int, p: float, jit: ModuleType | None = None
) -> I64:
    """Indices in [0, n) of a Bernoulli(p) process, by geometric gaps (cost ~ n * p)."""
    if n <= 0 or p <= 0.0:
        return np.zeros(0, dtype=np.int64)
    if p >= 1.0:
        return np.arange(n, dtype=np.int64)
    # Geometric(p) = floor(Exp(1) / -ln(1 - p)) + 1; float32 is exact enough while the
    # gaps stay far below 2^24, which p > 1e-5 ensures (smaller p uses float64).
    rate = -math.log1p(-p)
    dtype = np.float32 if p > 1e-5 else np.float64
    expected = n * p
    chunks = []
    last = -1
    while True:
        size = int(expected + 6.0 * math.sqrt(expected) + 16)
        draws = rng.standard_exponential(size, dtype=dtype)
        if jit is not None:
            positions = jit.gap_positions(draws, dtype(1.0 / rate), last)
        else:
            draws *= dtype(1.0 / rate)
            positions = draws.astype(np.int64)
            positions += 1
            np.cumsum(positions, out=positions)
            positions += last
        chunks.append(positions)
        last = int(positions[-1])
        if last >= n:
            break
        expected = (n - last) * p
    allpos = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return allpos[: np.searchsorted(allpos, n, side="left")]


def merge_sorted(time_a: I64, det_a: U8, time_b: I64, det_b: U8) -> tuple[I64, U8]:
    """Merge two time-sorted (time, detector) lists in O(n) (b is usually short)."""
    if time_b.size == 0:
        return time_a, det_a
    if time_a.size == 0:
        return time_b, det_b
    at = np.searchsorted(time_a, time_b, side="right")
    return np.insert(time_a, at, time_b), np.insert(det_a, at, det_b)


@lru_cache(maxsize=1)
def gaussian_quantiles() -> npt.NDArray[np.float32]:
    """65536 equiprobable standard-normal quantiles: a cheap, exact-to-1/65536 Gaussian."""
    normal = NormalDist()
    table = [normal.inv_cdf((k + 0.5) / _N_QUANTILES) for k in range(_N_QUANTILES)]
    return np.array(table, dtype=np.float32)


@dataclass(slots=True)
class DetectorState:
    """The live state of one detector (mutable by twins and faults)."""

    settings: DetectorSettings
    efficiency: float
    dark_rate_hz: float
    enabled: bool = True
    latched: bool = False
    last_kept_ps: int = _NEVER
    light_rate_hz: float = 0.0
    """Clicks from CW light on the detector (Poisson, like darks, before dead time)."""

    @property
    def background_hz(self) -> float:
        """Dark counts plus CW-light clicks: the detector's Poisson background."""
        return self.dark_rate_hz + self.light_rate_hz

    @property
    def counting(self) -> bool:
        """True when the detector can output clicks at all."""
        return self.enabled and not self.latched

    @property
    def dead_ps(self) -> int:
        """Dead time in picoseconds."""
        return round(self.settings.dead_time_ns * 1000.0)

    @property
    def jitter_sigma_ps(self) -> float:
        """Standard deviation of the Gaussian timing jitter."""
        return self.settings.jitter_fwhm_ps / _FWHM_PER_SIGMA


class DetectorBank:
    """Four detectors turning photon arrivals into output clicks, slice after slice.

    Clicks travel as two parallel arrays sorted by time: ``time_ps`` (int64) and
    ``detector`` (uint8, 0..3).
    """

    def __init__(
        self,
        settings: tuple[DetectorSettings, ...],
        pulse_rate_hz: float,
        jit: ModuleType | None = None,
    ) -> None:
        self.jit = jit  # compiled loops (sims.world.jit) or None for the numpy path
        self.states = [
            DetectorState(s, efficiency=s.efficiency, dark_rate_hz=s.dark_rate_hz(pulse_rate_hz))
            for s in settings
        ]
        # Afterpulses that fall after the slice being processed wait for the next slice.
        self._pending_time: I64 = np.zeros(0, dtype=np.int64)
        self._pending_det: U8 = np.zeros(0, dtype=np.uint8)
        self._table_key: tuple[tuple[float, int], ...] | None = None
        self._table: npt.NDArray[np.int64] = np.zeros((1, _N_QUANTILES), dtype=np.int64)
        self._compact_key: tuple[float, ...] | None = None
        self._compact: npt.NDArray[np.signedinteger[Any]] = np.zeros((1, 1), dtype=np.int16)
        # Output clicks per detector of the last ``process`` call.
        self.output_counts: I64 = np.zeros(len(self.states), dtype=np.int64)

    def efficiencies(self) -> npt.NDArray[np.float64]:
        """Current efficiency of each detector, 0 for one that cannot click."""
        return np.array([s.efficiency if s.counting else 0.0 for s in self.states])

    def guard_ps(self) -> int:
        """How far before its true arrival a click can be timestamped (jitter clip)."""
        return max(10_000, math.ceil(6.0 * max(s.jitter_sigma_ps for s in self.states)))

    def process(
        self,
        rng: np.random.Generator,
        time_ps: I64,
        detector: U8,
        t0_ps: int,
        t1_ps: int,
        *,
        blinded: bool,
    ) -> tuple[I64, U8]:
        """Output clicks for photon arrivals (sorted) in [t0_ps, t1_ps), still in true time."""
        if self.jit is not None:
            return self._process_compiled(rng, (time_ps, detector), t0_ps, t1_ps, blinded)
        due = self._pending_time < t1_ps
        extra_t, extra_d = self._pending_time[due], self._pending_det[due]
        self._pending_time, self._pending_det = self._pending_time[~due], self._pending_det[~due]
        counting = np.array([s.counting for s in self.states])
        if not counting.all():
            for state in self.states:
                if not state.counting:
                    state.last_kept_ps = _NEVER
            alive = counting[detector]
            time_ps, detector = time_ps[alive], detector[alive]
            alive = counting[extra_d]
            extra_t, extra_d = extra_t[alive], extra_d[alive]
        if not blinded:
            # Ties keep their source order (signal, then afterpulse, then dark) on both paths.
            extra_t, extra_d = self._add_darks(rng, extra_t, extra_d, t0_ps, t1_ps)
        start_last = [s.last_kept_ps for s in self.states]
        time_ps, detector = merge_sorted(time_ps, detector, extra_t, extra_d)
        keep = self._dead_time(time_ps, detector, start_last)
        if not keep.all():
            time_ps, detector = time_ps[keep], detector[keep]
        if not blinded and any(s.settings.afterpulse_probability > 0.0 for s in self.states):
            after_t, after_d = self._afterpulses(rng, time_ps, detector)
            later = after_t >= t1_ps
            self._pending_time, self._pending_det = merge_sorted(
                self._pending_time, self._pending_det, after_t[later], after_d[later]
            )
            if not later.all():
                time_ps, detector = self._insert_afterpulses(
                    time_ps, detector, after_t[~later], after_d[~later], start_last
                )
        self.output_counts = np.bincount(detector, minlength=len(self.states))
        return time_ps, detector

    def _process_compiled(
        self,
        rng: np.random.Generator,
        clicks: tuple[I64, U8],
        t0_ps: int,
        t1_ps: int,
        blinded: bool,
    ) -> tuple[I64, U8]:
        """``process`` in one compiled pass whose afterpulse draws come from a counter hash."""
        jit = self.jit
        assert jit is not None
        time_ps, detector = clicks
        pend_t, pend_d = self._pending_time, self._pending_det
        counting = np.array([s.counting for s in self.states])
        if not counting.all():
            for state in self.states:
                if not state.counting:
                    state.last_kept_ps = _NEVER
            time_ps, detector = time_ps[counting[detector]], detector[counting[detector]]
            pend_t, pend_d = pend_t[counting[pend_d]], pend_d[counting[pend_d]]
        empty_t, empty_d = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        extra_t, extra_d = empty_t, empty_d
        if not blinded:
            extra_t, extra_d = self._darks_compiled(rng, t0_ps, t1_ps)
        dead = np.array([s.dead_ps for s in self.states], dtype=np.int64)
        last = np.array([s.last_kept_ps for s in self.states], dtype=np.int64)
        p_after = [0.0 if blinded else s.settings.afterpulse_probability for s in self.states]
        decay = np.array([s.settings.afterpulse_decay_ns * 1000.0 for s in self.states])
        key = np.uint64(rng.bit_generator.random_raw())
        time_ps, detector, kept, later_t, later_d = jit.detector_walk(
            time_ps, detector, extra_t, extra_d, pend_t, pend_d, dead, last, np.array(p_after),
            decay, key, t1_ps,
        )  # fmt: skip
        self.output_counts = kept
        self._pending_time, self._pending_det = later_t, later_d
        for state, last_ps in zip(self.states, last.tolist(), strict=True):
            state.last_kept_ps = last_ps
        return time_ps, detector

    def _insert_afterpulses(
        self, time_ps: I64, detector: U8, after_t: I64, after_d: U8, start_last: list[int]
    ) -> tuple[I64, U8]:
        """Add afterpulses to kept clicks; each also opens a dead time, so decide again.

        Kept clicks are already a dead time apart per detector, so only clicks within a dead
        time of an afterpulse can change: the walk runs on those windows alone.
        """
        time_ps, detector = merge_sorted(time_ps, detector, after_t, after_d)
        longest = max(s.dead_ps for s in self.states)
        if longest <= 0:
            return time_ps, detector
        n = time_ps.size
        lo = np.searchsorted(time_ps, after_t - longest, side="left")
        hi = np.searchsorted(time_ps, after_t + longest, side="right")
        depth = np.cumsum(np.bincount(lo, minlength=n + 1) - np.bincount(hi, minlength=n + 1))
        window = np.flatnonzero(depth[:n] > 0)
        keep = np.ones(n, dtype=np.bool_)
        keep[window] = self._dead_time_grouped(time_ps[window], detector[window], start_last)
        self._update_last_kept(time_ps, detector, keep)
        return time_ps[keep], detector[keep]

    def _darks_compiled(self, rng: np.random.Generator, t0_ps: int, t1_ps: int) -> tuple[I64, U8]:
        """Dark counts of every counting detector as one Poisson process split by rate."""
        assert self.jit is not None
        rates = [s.background_hz if s.counting else 0.0 for s in self.states]
        total_hz = sum(rates)
        n_dark = int(rng.poisson(total_hz * (t1_ps - t0_ps) * 1e-12)) if total_hz > 0.0 else 0
        if n_dark == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        share = np.cumsum(rates) / total_hz
        key = np.uint64(rng.bit_generator.random_raw())
        darks: tuple[I64, U8] = self.jit.dark_clicks(n_dark, t0_ps, t1_ps, share, key)
        return darks

    def _add_darks(
        self, rng: np.random.Generator, time_ps: I64, detector: U8, t0_ps: int, t1_ps: int
    ) -> tuple[I64, U8]:
        parts_t, parts_d = [], []
        for index, state in enumerate(self.states):
            if state.counting and state.background_hz > 0.0:
                n_dark = rng.poisson(state.background_hz * (t1_ps - t0_ps) * 1e-12)
                parts_t.append(rng.integers(t0_ps, t1_ps, size=n_dark, dtype=np.int64))
                parts_d.append(np.full(n_dark, index, dtype=np.uint8))
        if not parts_t:
            return time_ps, detector
        dark_t, dark_d = np.concatenate(parts_t), np.concatenate(parts_d)
        order = np.argsort(dark_t, kind="stable")
        return merge_sorted(time_ps, detector, dark_t[order], dark_d[order])

    def _dead_time(self, time_ps: I64, detector: U8, start_last: list[int]) -> BoolArray:
        """Non-paralyzable dead time per detector; updates each detector's last kept click."""
        n = time_ps.size
        keep = np.ones(n, dtype=np.bool_)
        longest = max(s.dead_ps for s in self.states)
        if n == 0 or longest <= 0:
            self._update_last_kept(time_ps, detector, keep)
            return keep
        # A click farther than the longest dead time from the previous click of *any*
        # detector is surely kept; only runs of close clicks need the per-detector walk.
        gaps = np.empty(n, dtype=np.int64)
        gaps[0] = time_ps[0] - max(start_last)
        np.subtract(time_ps[1:], time_ps[:-1], out=gaps[1:])
        close = gaps < longest
        n_close = int(np.count_nonzero(close))
        if n_close > n // 4:
            # Dense clicks: gathering the runs would cost more than walking everything.
            keep = self._dead_time_grouped(time_ps, detector, start_last)
        elif n_close:
            involved = close.copy()
            involved[:-1] |= close[1:]  # the click that opens each run decides it too
            subset = np.flatnonzero(involved)
            keep[subset] = self._dead_time_grouped(time_ps[subset], detector[subset], start_last)
        self._update_last_kept(time_ps, detector, keep)
        return keep

    def _dead_time_grouped(self, time_ps: I64, detector: U8, start_last: list[int]) -> BoolArray:
        order = np.argsort(detector, kind="stable")  # radix sort: groups keep time order
        grouped = time_ps[order]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(detector, minlength=4))])
        keep_grouped = np.ones(time_ps.size, dtype=np.bool_)
        for index, state in enumerate(self.states):
            lo, hi = int(bounds[index]), int(bounds[index + 1])
            if hi > lo:
                keep_grouped[lo:hi] = nonparalyzable_keep(
                    grouped[lo:hi], state.dead_ps, start_last[index]
                )
        keep = np.empty_like(keep_grouped)
        keep[order] = keep_grouped
        return keep

    def _update_last_kept(self, time_ps: I64, detector: U8, keep: BoolArray) -> None:
        missing = set(range(len(self.states)))
        # The last few clicks nearly always cover every active detector: look there first.
        tail = max(0, time_ps.size - 64)
        for i in range(time_ps.size - 1, tail - 1, -1):
            d = int(detector[i])
            if keep[i] and d in missing:
                self.states[d].last_kept_ps = int(time_ps[i])
                missing.discard(d)
                if not missing:
                    return
        for d in missing:
            kept = np.flatnonzero(keep[:tail] & (detector[:tail] == d))
            if kept.size:
                self.states[d].last_kept_ps = int(time_ps[kept[-1]])

    def _afterpulses(self, rng: np.random.Generator, time_ps: I64, detector: U8) -> tuple[I64, U8]:
        parts_t, parts_d = [], []
        for index, state in enumerate(self.states):
            p_after = state.settings.afterpulse_probability
            mine = np.flatnonzero(detector == index)
            if p_after <= 0.0 or mine.size == 0:
                continue
            parents = time_ps[mine[bernoulli_positions(rng, mine.size, p_after)]]
            decay_ps = state.settings.afterpulse_decay_ns * 1000.0
            delays = rng.exponential(decay_ps, size=parents.size).astype(np.int64)
            parts_t.append(parents + state.dead_ps + delays)
            parts_d.append(np.full(parents.size, index, dtype=np.uint8))
        if not parts_t:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        after_t, after_d = np.concatenate(parts_t), np.concatenate(parts_d)
        order = np.argsort(after_t, kind="stable")
        return after_t[order], after_d[order]

    def add_jitter(self, rng: np.random.Generator, time_ps: I64, detector: U8) -> I64:
        """Gaussian timing jitter (table-sampled, tails cut at 4.3 sigma) plus cable delays."""
        if time_ps.size == 0:
            return time_ps
        if self.jit is not None:
            key = np.uint64(rng.bit_generator.random_raw())
            jitter, delays = self._compact_table()
            jittered: I64 = self.jit.jitter_stream(time_ps, detector, jitter, delays, key)
            return jittered
        table = self._offset_table()
        if table.shape[0] == 1:  # every detector alike: one table, no per-detector gather
            draw = rng.integers(0, _N_QUANTILES, time_ps.size, dtype=np.uint16)
            result: I64 = time_ps + table[0][draw]
            return result
        slot = detector.astype(np.intp) << _QUANTILE_BITS
        slot |= rng.integers(0, _N_QUANTILES, time_ps.size, dtype=np.uint16)
        result = time_ps + table.ravel()[slot]
        return result

    def _offset_table(self) -> npt.NDArray[np.int64]:
        """Per detector: cable delay + rounded jitter quantiles (one row when all alike)."""
        key = tuple((s.jitter_sigma_ps, s.settings.delay_ps) for s in self.states)
        if self._table_key != key:
            quantiles = gaussian_quantiles().astype(np.float64)
            rows = [np.rint(quantiles * sigma).astype(np.int64) + delay for sigma, delay in key]
            self._table = np.stack(rows[:1] if len(set(key)) == 1 else rows)
            self._table_key = key
        return self._table

    def _compact_table(self) -> tuple[npt.NDArray[np.signedinteger[Any]], I64]:
        """(rounded jitter quantiles per detector, one row when all alike; cable delays).

        int16 when the quantiles fit (128 KiB a row, mostly cache-resident), else int32.
        """
        key = tuple(s.jitter_sigma_ps for s in self.states)
        if self._compact_key != key:
            quantiles = gaussian_quantiles().astype(np.float64)
            sigmas = key[:1] if len(set(key)) == 1 else key
            rows = np.stack([np.rint(quantiles * sigma) for sigma in sigmas])
            dtype = np.int16 if np.abs(rows).max() < 2**15 else np.int32
            self._compact = rows.astype(dtype)
            self._compact_key = key
        delays = np.array([s.settings.delay_ps for s in self.states], dtype=np.int64)
        return self._compact, delays

"""A time tagger: its own clock, per-channel delays, resolution, rate limit and buffer.

Tag time = floor_res(t + offset + round(t * ppm * 1e-6) + wander(t) + channel delay), with t
the true time in picoseconds. Tags that land after the window being closed are carried to
the next batch, so consecutive batches tile the tagger's time line without gaps or overlap.
"""

from __future__ import annotations

import math
from collections import deque
from types import ModuleType

import numpy as np
import numpy.typing as npt

from labctl.interfaces.tags import TagBatch
from sims.world.settings import TaggerSettings

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
_BLOCK_PS = 1_000_000_000  # rate limit is enforced per 1 ms of tagger time
_CHANNEL_BITS = 6
_NO_WANDER = np.zeros(0, dtype=np.float64)


class TaggerModel:
    """One tagger (Alice's or Bob's) fed with true-time clicks by the world."""

    def __init__(self, settings: TaggerSettings, side: str, jit: ModuleType | None = None) -> None:
        self.jit = jit  # compiled loops (sims.world.jit) or None for the numpy path
        self.settings = settings
        self.side = side
        self.offset_ps = settings.offset_ps
        self.frequency_offset_ppm = settings.frequency_offset_ppm
        self.channel_delays_ps = list(settings.channel_delays_ps)
        self.max_rate_hz = settings.max_rate_hz
        self.overflow_until_ps: int | None = None  # true time
        self.streaming = False
        self._queue: deque[TagBatch] = deque()
        self._carry_channel: U8 = np.zeros(0, dtype=np.uint8)
        self._carry_time: I64 = np.zeros(0, dtype=np.int64)
        self._window_start_ps: int | None = None
        self._block = (-1, 0)  # (block id, tags already accepted in it)
        self._pending_overflow = False

    def clock_ps(self, true_ps: int) -> int:
        """This tagger's reading (before channel delay and binning) at true time ``true_ps``."""
        return int(self.map_times(np.array([true_ps], dtype=np.int64))[0])

    def map_times(self, true_ps: I64) -> I64:
        """True picoseconds -> this tagger's clock (offset, frequency offset, wander)."""
        if self.jit is not None and true_ps.size:
            return self._map_times_compiled(true_ps)
        mapped = true_ps + self.offset_ps
        if self.frequency_offset_ppm != 0.0:
            stretch = np.multiply(true_ps, self.frequency_offset_ppm * 1e-6, dtype=np.float64)
            mapped += np.rint(stretch, out=stretch).astype(np.int64)
        amplitude = self.settings.wander_amplitude_ps
        if amplitude > 0.0 and true_ps.size:
            mapped += np.rint(self._wander_ps(true_ps)).astype(np.int64)
        result: I64 = mapped
        return result

    def _map_times_compiled(self, true_ps: I64) -> I64:
        """``map_times`` in one pass; the same float operations, so the same integers."""
        assert self.jit is not None
        clock, wander = self._clock_parameters(true_ps)
        mapped: I64 = self.jit.tagger_clock(true_ps, *clock, wander)
        return mapped

    def _clock_parameters(
        self, true_ps: I64
    ) -> tuple[tuple[int, float, int, float, float, int], npt.NDArray[np.float64]]:
        """((offset, ppm factor, t_lo, w_lo, slope, wander mode), wander) for the kernels."""
        amplitude = self.settings.wander_amplitude_ps
        mode, t_lo, w_lo, slope, wander = 0, 0, 0.0, 0.0, _NO_WANDER
        if amplitude > 0.0 and true_ps.size:
            chord = self._wander_chord(true_ps)
            if chord is None:  # a real sine: numpy's sin, so both paths round alike
                mode, wander = 2, self._wander_ps(true_ps)
            else:
                mode, (t_lo, w_lo, slope) = 1, chord
        ppm_factor = self.frequency_offset_ppm * 1e-6 if self.frequency_offset_ppm != 0.0 else 0.0
        return (self.offset_ps, ppm_factor, t_lo, w_lo, slope, mode), wander

    def _wander_chord(self, true_ps: I64) -> tuple[int, float, float] | None:
        """(t_lo, wander at t_lo, slope) when the chord is exact to 1e-3 ps, else None."""
        amplitude = self.settings.wander_amplitude_ps
        omega = 2.0 * math.pi * 1e-12 / self.settings.wander_period_s
        t_lo, t_hi = int(true_ps.min()), int(true_ps.max())
        span = omega * (t_hi - t_lo)
        # The chord of a sine deviates from it by at most amplitude * span^2 / 8.
        if amplitude * span * span / 8.0 > 1e-3 or t_hi == t_lo:
            return None
        w_lo = amplitude * math.sin(omega * t_lo)
        slope = (amplitude * math.sin(omega * t_hi) - w_lo) / (t_hi - t_lo)
        return t_lo, w_lo, slope

    def _wander_ps(self, true_ps: I64) -> npt.NDArray[np.float64]:
        """amplitude * sin(2 pi t / period); linear between the ends when that is exact enough."""
        amplitude = self.settings.wander_amplitude_ps
        chord = self._wander_chord(true_ps)
        if chord is None:
            omega = 2.0 * math.pi * 1e-12 / self.settings.wander_period_s
            phase = np.multiply(true_ps, omega, dtype=np.float64)
            return amplitude * np.sin(phase, out=phase)
        t_lo, w_lo, slope = chord
        rel = np.subtract(true_ps, t_lo, dtype=np.float64)
        rel *= slope
        rel += w_lo
        return rel

    def start(self, true_ps: int, guard_ps: int) -> None:
        """Begin streaming at true time ``true_ps``; the first window opens there."""
        self.streaming = True
        self._queue.clear()
        self._carry_channel = np.zeros(0, dtype=np.uint8)
        self._carry_time = np.zeros(0, dtype=np.int64)
        self._window_start_ps = self.clock_ps(true_ps) - guard_ps
        self._pending_overflow = False

    def stop(self) -> None:
        """Stop streaming and drop whatever was not read."""
        self.streaming = False
        self._queue.clear()
        self._window_start_ps = None

    def record(
        self, channel: U8, true_ps: I64, window_end_true_ps: int, guard_ps: int
    ) -> TagBatch | None:
        """Timestamp clicks (true time, input channel); return the batch this closes."""
        if self._window_start_ps is None:
            return None
        time_ps, channel_arr = self._stamp(channel, true_ps)
        stop_ps = self.clock_ps(window_end_true_ps) - guard_ps
        cut = int(np.searchsorted(time_ps, stop_ps, side="left"))
        self._carry_time, self._carry_channel = time_ps[cut:], channel_arr[cut:]
        time_ps, channel_arr = time_ps[:cut], channel_arr[:cut]
        start_ps = self._window_start_ps
        self._window_start_ps = stop_ps
        missed = 0
        forced = self.overflow_until_ps is not None and (
            self.clock_ps(self.overflow_until_ps) > start_ps
        )
        if forced:
            assert self.overflow_until_ps is not None
            until = self.clock_ps(self.overflow_until_ps)
            drop = time_ps < until
            missed += int(drop.sum())
            time_ps, channel_arr = time_ps[~drop], channel_arr[~drop]
            if until <= stop_ps:
                self.overflow_until_ps = None
        time_ps, channel_arr, limited = self._rate_limit(time_ps, channel_arr)
        missed += limited
        overflow = forced or limited > 0 or self._pending_overflow
        self._pending_overflow = False
        return TagBatch(
            channel=channel_arr,
            time_ps=time_ps,
            start_ps=start_ps,
            stop_ps=max(stop_ps, start_ps),
            overflow=overflow,
            missed_events=missed,
        )

    def _stamp(self, channel: U8, true_ps: I64) -> tuple[I64, U8]:
        """Carried tags plus these clicks on this tagger's time line, in (time, channel) order."""
        delays = np.asarray(self.channel_delays_ps, dtype=np.int64)
        resolution = self.settings.resolution_ps
        if self.jit is not None:
            clock, wander = self._clock_parameters(true_ps)
            stamped: tuple[I64, U8] = self.jit.tag_stream(
                true_ps, channel, self._carry_time, self._carry_channel, clock, wander, delays,
                resolution,
            )  # fmt: skip
            return stamped
        tagged = self.map_times(true_ps)
        if delays.any():
            tagged = tagged + delays[channel]
        if self._carry_time.size:
            time_ps = np.concatenate([self._carry_time, tagged])
            channel_arr = np.concatenate([self._carry_channel, channel])
        else:
            time_ps, channel_arr = tagged, channel
        if resolution > 1:
            time_ps = (time_ps // resolution) * resolution
        if time_ps.size > 1 and not bool((time_ps[1:] >= time_ps[:-1]).all()):
            # Jitter and per-channel delays swap a few neighbours: a stable sort of
            # (time << 6 | channel) keys puts them back and keeps channels attached.
            keys = np.sort((time_ps << _CHANNEL_BITS) | channel_arr, kind="stable")
            time_ps = keys >> _CHANNEL_BITS
            channel_arr = (keys & ((1 << _CHANNEL_BITS) - 1)).astype(np.uint8)
        return time_ps, channel_arr

    def _rate_limit(self, time_ps: I64, channel: U8) -> tuple[I64, U8, int]:
        cap = int(self.max_rate_hz * _BLOCK_PS * 1e-12)
        if time_ps.size == 0:
            return time_ps, channel, 0
        first_block, last_block = int(time_ps[0] // _BLOCK_PS), int(time_ps[-1] // _BLOCK_PS)
        edges = np.arange(first_block, last_block + 2, dtype=np.int64) * _BLOCK_PS
        per_block = np.diff(np.searchsorted(time_ps, edges, side="left"))
        if first_block == self._block[0]:
            per_block[0] += self._block[1]
        if per_block.max() <= cap:
            self._block = (last_block, int(per_block[-1]))
            return time_ps, channel, 0
        block = time_ps // _BLOCK_PS
        first = np.searchsorted(block, block, side="left")
        rank = np.arange(time_ps.size) - first
        carried = block == self._block[0]
        rank[carried] += self._block[1]
        keep = rank < cap
        self._block = (last_block, min(cap, int(per_block[-1])))
        return time_ps[keep], channel[keep], int(time_ps.size - keep.sum())

    def enqueue(self, batch: TagBatch) -> None:
        """Queue a batch for the reader, dropping the oldest past ``buffer_s`` of data."""
        self._queue.append(batch)
        limit_ps = self.settings.buffer_s * 1e12
        while len(self._queue) > 1 and (
            self._queue[-1].stop_ps - self._queue[0].stop_ps > limit_ps
        ):
            self._queue.popleft()
            self._mark_head_overflow()

    def _mark_head_overflow(self) -> None:
        head = self._queue[0]
        self._queue[0] = TagBatch(
            channel=head.channel,
            time_ps=head.time_ps,
            start_ps=head.start_ps,
            stop_ps=head.stop_ps,
            overflow=True,
            missed_events=head.missed_events,
        )

    def has_batch(self) -> bool:
        """True when a batch is waiting to be read."""
        return bool(self._queue)

    def pop(self) -> TagBatch:
        """The oldest queued batch."""
        return self._queue.popleft()

    def note_skipped(self, true_ps: int, guard_ps: int) -> None:
        """Data between the last window and ``true_ps`` was lost: restart the window there."""
        if self._window_start_ps is None:
            return
        self._carry_channel = np.zeros(0, dtype=np.uint8)
        self._carry_time = np.zeros(0, dtype=np.int64)
        self._window_start_ps = self.clock_ps(true_ps) - guard_ps
        self._pending_overflow = True

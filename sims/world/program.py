"""What Alice's transmitter plays: patterns placed at the world's pulse indices.

A station with a transmitter twin drives the source from the patterns the twin was given
(over the wire in a hardware-in-the-loop bench), not from the world's seed: pulse ``n``
carries the state of the segment covering it, and a pulse no segment covers carries no
light (the dark code, one past the last intensity class). Each segment start is a frame
marker on Alice's tagger, which is how Alice learns which pulse got which state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.interfaces.pattern import PackedCodes, PulsePattern

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
INTP = npt.NDArray[np.intp]


@dataclass(slots=True)
class Segment:
    """One pattern played from world pulse ``first``; cycled when ``repeat`` until ``stop``."""

    first: int
    codes: PackedCodes
    repeat: bool
    stop: int | None = None  # first pulse no longer played (None: not stopped)

    @property
    def end(self) -> int | None:
        """First pulse after the segment (None: it cycles with no stop yet)."""
        natural = None if self.repeat else self.first + self.codes.size
        if self.stop is None:
            return natural
        return self.stop if natural is None else min(natural, self.stop)

    def starts_in(self, n0: int, n1: int) -> I64:
        """Pulses in [n0, n1) on which this segment (or one of its cycles) begins."""
        end = self.end
        hi = n1 if end is None else min(n1, end)
        if not self.repeat:
            ok = n0 <= self.first < hi
            return np.array([self.first] if ok else [], dtype=np.int64)
        length = self.codes.size
        lo = max(n0, self.first)
        if lo >= hi:
            return np.zeros(0, dtype=np.int64)
        k0 = -(-(lo - self.first) // length)
        return self.first + np.arange(k0 * length, hi - self.first, length, dtype=np.int64)


class PatternProgram:
    """The segments Alice's transmitter plays, and what it has staged to play next."""

    def __init__(self, n_classes: int, period_ps: int) -> None:
        self.dark_code = 4 * n_classes
        self.period_ps = period_ps
        self.segments: list[Segment] = []
        self._staged: tuple[PackedCodes, bool] | None = None
        self._queue: list[PackedCodes] = []
        self.running = False

    def load(self, pattern: PulsePattern, repeat: bool, now_pulse: int) -> None:
        """Stop what plays and stage ``pattern`` for the next ``start``."""
        self.stop(now_pulse)
        self._staged = (PackedCodes.of(pattern), repeat)
        self._queue.clear()

    def append(self, pattern: PulsePattern, now_pulse: int) -> None:
        """Queue a chunk right after the last one (or at once after an underrun)."""
        codes = PackedCodes.of(pattern)
        if not self.running:
            if self._staged is None:
                self._staged = (codes, False)
            else:
                self._queue.append(codes)
            return
        if not self.segments:  # everything played already ended (and was forgotten)
            self.segments.append(Segment(now_pulse, codes, False))
            return
        end = self.segments[-1].end
        if end is None:
            raise RuntimeError("cannot append after a pattern that cycles")
        self.segments.append(Segment(max(end, now_pulse), codes, False))

    def start(self, now_pulse: int) -> int:
        """Play the staged pattern (and queued chunks) from ``now_pulse``; its first pulse."""
        if self._staged is None:
            raise RuntimeError("no pattern loaded")
        self.stop(now_pulse)
        codes, repeat = self._staged
        first = now_pulse
        self.segments.append(Segment(first, codes, repeat))
        at = first + codes.size
        for chunk in self._queue:
            self.segments.append(Segment(at, chunk, False))
            at += chunk.size
        self._queue.clear()
        self.running = True
        return first

    def stop(self, now_pulse: int) -> None:
        """Nothing plays from ``now_pulse`` on."""
        kept: list[Segment] = []
        for seg in self.segments:
            if seg.first >= now_pulse:
                continue
            end = seg.end
            if end is None or end > now_pulse:
                seg.stop = now_pulse
            kept.append(seg)
        self.segments = kept
        self.running = False

    def is_running(self, now_pulse: int) -> bool:
        """True while some segment still plays at ``now_pulse``."""
        if not self.running:
            return False
        end = self.segments[-1].end if self.segments else now_pulse
        return end is None or end > now_pulse

    def forget_before(self, pulse: int) -> None:
        """Drop segments that ended before ``pulse`` (bounded memory)."""
        self.segments = [s for s in self.segments if (s.end is None or s.end > pulse)]

    def codes(self, index: I64) -> INTP:
        """The state code of every pulse index (sorted or not); dark where nothing plays."""
        out = np.full(index.shape, self.dark_code, dtype=np.intp)
        if index.size == 0:
            return out
        # A block comes in many pieces; a slice of pulses meets one or two of them.
        lo, hi = int(index.min()), int(index.max())
        for seg in self.segments:
            end = seg.end
            if seg.first > hi or (end is not None and end <= lo):
                continue
            mask = index >= seg.first
            if end is not None:
                mask &= index < end
            if not mask.any():
                continue
            pos = index[mask] - seg.first
            if seg.repeat:
                pos %= seg.codes.size
            out[mask] = seg.codes[pos]
        return out

    def covered(self, n0: int, n1: int) -> list[tuple[int, int]]:
        """The parts of [n0, n1) that carry light, merged and in order."""
        spans = []
        for seg in self.segments:
            end = seg.end
            lo, hi = max(n0, seg.first), n1 if end is None else min(n1, end)
            if lo < hi:
                spans.append((lo, hi))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged

    def frame_starts(self, n0: int, n1: int) -> I64:
        """Pulses in [n0, n1) that carry a frame marker (a segment or a cycle begins)."""
        parts = [seg.starts_in(n0, n1) for seg in self.segments]
        if not parts:
            return np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate(parts))

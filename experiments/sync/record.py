"""Alice's own record of what her transmitter played, by her pulse index.

Alice numbers pulses by her tagger's clock (pulse ``n`` leaves at ``n * period_ps`` on it);
the frame marker of every pattern she plays tells her the index of its first pulse. The
record keeps each pattern as one state code per pulse (intensity * 4 + basis * 2 + bit),
two codes a byte where they fit in 4 bits (a 1e8-pulse block costs 50 MB), and forgets
the oldest entries beyond a bound.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from labctl.interfaces.pattern import NOT_SENT, PackedCodes

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Played:
    """One pattern played from Alice's pulse ``first``; cycled when ``repeat``."""

    first: int
    codes: PackedCodes
    repeat: bool

    @property
    def stop(self) -> int | None:
        """First pulse after it (None: it cycles)."""
        return None if self.repeat else self.first + int(self.codes.size)


class PlayRecord:
    """The patterns Alice played, newest last; the oldest go beyond ``max_pulses`` states."""

    def __init__(self, max_pulses: int = 1 << 28) -> None:
        self.max_pulses = max_pulses
        self._entries: deque[Played] = deque()
        self._held = 0

    def add(self, played: Played) -> None:
        """Record a pattern; a cycling one ends where a later one starts."""
        self._entries.append(played)
        self._held += int(played.codes.size)
        while self._held > self.max_pulses and len(self._entries) > 1:
            self._held -= int(self._entries.popleft().codes.size)

    @property
    def last_first(self) -> int | None:
        """First pulse of the newest pattern recorded (None when empty)."""
        return self._entries[-1].first if self._entries else None

    def release(self, first: int, pulses: int) -> None:
        """Forget the one-shot patterns inside [first, first + pulses) (a block served), and
        the cycling ones cut off before ``first``.

        A cycling frame (the calibration frame, replayed after every block) is looked up
        only by the captures made while it played, which are done before the next block
        starts; without this, one frame a block would pile up to ``max_pulses``.
        """
        entries = list(self._entries)
        kept: deque[Played] = deque()
        for i, entry in enumerate(entries):
            stop = entry.stop
            served = stop is not None and entry.first >= first and stop <= first + pulses
            cut_off = entry.repeat and i + 1 < len(entries) and entries[i + 1].first <= first
            if served or cut_off:
                self._held -= int(entry.codes.size)
            else:
                kept.append(entry)
        self._entries = kept

    def clear(self) -> None:
        """Forget everything (e.g. after the transmitter restarted)."""
        self._entries.clear()
        self._held = 0

    def codes(self, index: I64) -> U8:
        """The state code of every pulse index; NOT_SENT where no pattern covers it.

        A later pattern wins over an earlier one (a cycling frame is cut where the next
        pattern starts).
        """
        entries = list(self._entries)
        if index.size > 1 and _in_order(entries) and bool(np.all(index[1:] >= index[:-1])):
            return _codes_sorted(entries, index)
        out = np.full(index.shape, NOT_SENT, dtype=np.uint8)
        for i, entry in enumerate(entries):
            mask = index >= entry.first
            stop = entry.stop
            if entry.repeat and i + 1 < len(entries):
                stop = entries[i + 1].first
            if stop is not None:
                mask &= index < stop
            if not mask.any():
                continue
            pos = index[mask] - entry.first
            if entry.repeat:
                pos %= entry.codes.size
            out[mask] = entry.codes[pos]
        return out

    def one_shot(self, first: int, pulses: int) -> bool:
        """True when no cycling pattern played inside [first, first + pulses): every state
        there was used once (pulses no pattern covers carried no state at all)."""
        entries = list(self._entries)
        for i, entry in enumerate(entries):
            if not entry.repeat:
                continue
            end = entries[i + 1].first if i + 1 < len(entries) else None
            if entry.first < first + pulses and (end is None or end > first):
                return False
        return True


def _in_order(entries: list[Played]) -> bool:
    """True when each pattern starts after the previous one and no one-shot pattern
    reaches past the next one's start: every pulse then has at most one pattern."""
    for before, after in itertools.pairwise(entries):
        stop = before.stop
        if after.first <= before.first or (stop is not None and stop > after.first):
            return False
    return True


def _codes_sorted(entries: list[Played], index: I64) -> U8:
    """:meth:`PlayRecord.codes` for sorted indices and patterns in order: each pattern's
    pulses are one slice of ``index`` (a pass over the indices, not one per pattern)."""
    out = np.full(index.shape, NOT_SENT, dtype=np.uint8)
    for i, entry in enumerate(entries):
        stop = entry.stop
        if entry.repeat and i + 1 < len(entries):
            stop = entries[i + 1].first
        lo = int(np.searchsorted(index, entry.first, side="left"))
        hi = index.size if stop is None else int(np.searchsorted(index, stop, side="left"))
        if hi <= lo:
            continue
        pos = index[lo:hi] - entry.first
        if entry.repeat:
            pos %= entry.codes.size
        out[lo:hi] = entry.codes[pos]
    return out

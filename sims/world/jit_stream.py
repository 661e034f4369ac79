"""Compiled (numba) event kernels that draw their own randomness inside the loops.

The bulk random draws of the numpy path (exponentials for the geometric gaps, 64 raw bits per
candidate, bits for afterpulses and jitter) cost more than the physics. Here each kernel call
takes one 64-bit ``key`` from the world's seeded generator and draws from a generator keyed
by it: a xoshiro256** stream seeded through splitmix64 (candidates, afterpulses), or
splitmix64(key + counter * golden) (jitter, 4 clicks per draw). Same seed -> same tags, and
no random array is ever written to memory. Alice's pattern is untouched (the same pure
function of (seed, pulse index) as ``AliceSource.pattern``), so any pulse stays recomputable.

Statistically these kernels follow the same laws as the numpy path (tests compare counts,
QBER and dead-time gaps), not the same draws.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from labctl.counter_hash import GOLDEN as _GOLDEN
from labctl.counter_hash import splitmix64_scalar as _splitmix
from sims.world.jit_core import _N_CLICKS, _NTH, F64, I64, U8, U64, Codes, _alice_code, _pattern

_S11, _S16 = np.uint64(11), np.uint64(16)
_ONE = np.uint64(1)
_U16 = np.uint64(0xFFFF)
_UNIT = 1.0 / 9007199254740992.0  # 2^-53
_NEVER = np.int64(1) << np.int64(62)  # later than any click

State = tuple[np.uint64, np.uint64, np.uint64, np.uint64]
"""A xoshiro256** state (s0, s1, s2, s3)."""


@njit(cache=True, nogil=True, inline="always")
def _exponential(bits: np.uint64) -> float:
    """Exp(1) from the top 53 bits: -log(u) with u in (0, 1]."""
    return -math.log(np.float64((bits >> _S11) + np.uint64(1)) * _UNIT)


@njit(cache=True, nogil=True)
def _grow(t: I64, d: U8, size: int) -> tuple[I64, U8]:
    new_t = np.empty(2 * t.size + 64, dtype=np.int64)
    new_d = np.empty(2 * t.size + 64, dtype=np.uint8)
    new_t[:size] = t[:size]
    new_d[:size] = d[:size]
    return new_t, new_d


@njit(cache=True, nogil=True, inline="always")
def _rotl(x: np.uint64, k: int) -> np.uint64:
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True, nogil=True, inline="always")
def _seed(key: np.uint64) -> State:
    """A xoshiro256** state from one key (splitmix64 of key + 1..4 golden steps)."""
    return (
        _splitmix(key + _GOLDEN),
        _splitmix(key + _GOLDEN * np.uint64(2)),
        _splitmix(key + _GOLDEN * np.uint64(3)),
        _splitmix(key + _GOLDEN * np.uint64(4)),
    )


@njit(cache=True, nogil=True, inline="always")
def _next(
    s0: np.uint64, s1: np.uint64, s2: np.uint64, s3: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """xoshiro256**: 64 bits and the next state (shifts and xors, two cheap multiplies)."""
    out = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    return out, s0, s1, s2, _rotl(s3, 45)


@njit(cache=True, nogil=True)
def signal_stream(
    n0: int,
    n1: int,
    gaps: tuple[U64, Codes, int],
    key: np.uint64,
    alice_key: np.uint64,
    z_threshold: np.uint64,
    class_edges: tuple[np.uint64, ...],
    threshold: U64,
    alias: Codes,
    period_ps: int,
    offset_ps: int,
    capacity: int,
) -> tuple[I64, U8]:
    """Clicks of pulses [n0, n1): candidates by geometric gaps, Alice's code per candidate,
    Walker-alias click pattern, one (index * period + offset, detector) per click in pulse
    order. ``gaps`` = (threshold, alias, shift) of the gap table (``events.gap_table``); its
    last outcome means "skip size - 1 pulses and draw again" (the law is memoryless). Draws:
    a xoshiro256** stream seeded from ``key`` (two per candidate: gap, then pattern).
    """
    gap_threshold, gap_alias, shift = gaps
    tail = gap_threshold.size - 1
    column_shift = np.uint64(shift)
    coin_mask = (_ONE << column_shift) - _ONE
    s0, s1, s2, s3 = _seed(key)
    out_t = np.empty(capacity + 64, dtype=np.int64)
    out_d = np.empty(capacity + 64, dtype=np.uint8)
    position = np.int64(n0 - 1)
    m = 0
    while position < n1:
        if m + 4 > out_t.size:
            out_t, out_d = _grow(out_t, out_d, m)
        limit = out_t.size - 4  # room for 4 clicks: no capacity check in the loop below
        while m <= limit:
            bits, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            column = np.intp(bits >> column_shift)
            gap = column if (bits & coin_mask) < gap_threshold[column] else gap_alias[column]
            if gap == tail:
                position += tail
                if position >= n1:
                    break
                continue
            position += gap + 1
            if position >= n1:
                break
            raw, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            code = _alice_code(position, alice_key, z_threshold, class_edges)
            k = _pattern(code, raw, threshold, alias)
            t = position * period_ps + offset_ps
            out_t[m] = t  # written even for k == 0 (no click): m does not move then
            out_d[m] = _NTH[k, 0]
            count = _N_CLICKS[k]
            if count > 1:  # rare: several detectors click on one pulse
                for r in range(1, count):
                    out_t[m + r] = t
                    out_d[m + r] = _NTH[k, r]
            m += count
    return out_t[:m], out_d[:m]


@njit(cache=True, nogil=True, inline="always")
def _skip(
    p: float, s0: np.uint64, s1: np.uint64, s2: np.uint64, s3: np.uint64
) -> tuple[np.int64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """Geometric(p) failures before the next success, and the next generator state."""
    if p <= 0.0:
        return _NEVER, s0, s1, s2, s3
    bits, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
    if p >= 1.0:
        return np.int64(0), s0, s1, s2, s3
    return np.int64(_exponential(bits) / -math.log1p(-p)), s0, s1, s2, s3


@njit(cache=True, nogil=True, inline="always")
def _insert(heap_t: I64, heap_d: U8, size: int, at: np.int64, d: np.uint8) -> None:
    """Insert into the short list sorted descending (its earliest entry is at the end)."""
    r = size
    while r > 0 and heap_t[r - 1] <= at:  # equal times: the newer one pops later
        heap_t[r] = heap_t[r - 1]
        heap_d[r] = heap_d[r - 1]
        r -= 1
    heap_t[r] = at
    heap_d[r] = d


@njit(cache=True, nogil=True)
def detector_walk(
    time_ps: I64,
    detector: U8,
    add_t: I64,
    add_d: U8,
    pend_t: I64,
    pend_d: U8,
    dead_ps: I64,
    last_ps: I64,
    after_p: F64,
    decay_ps: F64,
    key: np.uint64,
    t1_ps: int,
) -> tuple[I64, U8, I64, I64, U8]:
    """Non-paralyzable dead time and afterpulsing in one time-ordered pass.

    Inputs: signal clicks and extra clicks (darks), both sorted and all before ``t1_ps``, and
    afterpulses pending from earlier slices (sorted). Each kept signal or extra click of
    detector d spawns an afterpulse with probability ``after_p[d]`` (drawn as geometric runs
    of kept clicks between spawns: the same Bernoulli law, one draw per spawn), at + dead
    time + Exp(decay_ps[d]); afterpulses do not spawn but do open a dead time. Ties go
    signal, then afterpulse, then extra. ``last_ps`` is updated in place. Returns kept
    clicks, kept counts per detector and the afterpulses at or after ``t1_ps``.
    """
    n, k = time_ps.size, add_t.size
    n_det = dead_ps.size
    s0, s1, s2, s3 = _seed(key)
    skip = np.empty(n_det, dtype=np.int64)
    spawns = False
    for d in range(n_det):
        skip[d], s0, s1, s2, s3 = _skip(after_p[d], s0, s1, s2, s3)
        spawns = spawns or after_p[d] > 0.0
    room = pend_t.size + (n + k if spawns else 0) + 1
    heap_t = np.empty(room, dtype=np.int64)
    heap_d = np.empty(room, dtype=np.uint8)
    size = pend_t.size
    for r in range(size):
        heap_t[r] = pend_t[size - 1 - r]
        heap_d[r] = pend_d[size - 1 - r]
    out_t = np.empty(n + k + room, dtype=np.int64)
    out_d = np.empty(out_t.size, dtype=np.uint8)
    kept = np.zeros(n_det, dtype=np.int64)
    i = j = m = 0
    while True:
        ta = add_t[j] if j < k else _NEVER
        th = heap_t[size - 1] if size > 0 else _NEVER
        other = min(ta, th)
        # The common case: signal clicks up to (and tied with) the next dark or afterpulse.
        while i < n:
            t = time_ps[i]
            if t > other:
                break
            d = detector[i]
            i += 1
            if t - last_ps[d] < dead_ps[d]:
                continue
            last_ps[d] = t
            out_t[m] = t
            out_d[m] = d
            m += 1
            kept[d] += 1
            if skip[d] > 0:
                skip[d] -= 1
                continue
            skip[d], s0, s1, s2, s3 = _skip(after_p[d], s0, s1, s2, s3)
            bits, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            at = t + dead_ps[d] + np.int64(_exponential(bits) * decay_ps[d])
            _insert(heap_t, heap_d, size, at, d)
            size += 1
            other = min(other, at)
        if other == _NEVER:
            break
        th = heap_t[size - 1] if size > 0 else _NEVER
        if th <= ta:
            if th >= t1_ps:  # the inputs are done (they lie before t1_ps): the rest waits
                break
            t, d, parent = th, heap_d[size - 1], False
            size -= 1
        else:
            t, d, parent = ta, add_d[j], True
            j += 1
        if t - last_ps[d] < dead_ps[d]:
            continue
        last_ps[d] = t
        out_t[m] = t
        out_d[m] = d
        m += 1
        kept[d] += 1
        if parent:
            if skip[d] > 0:
                skip[d] -= 1
                continue
            skip[d], s0, s1, s2, s3 = _skip(after_p[d], s0, s1, s2, s3)
            bits, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            _insert(
                heap_t, heap_d, size, t + dead_ps[d] + np.int64(_exponential(bits) * decay_ps[d]), d
            )
            size += 1
    later_t = np.empty(size, dtype=np.int64)
    later_d = np.empty(size, dtype=np.uint8)
    for r in range(size):
        later_t[r] = heap_t[size - 1 - r]
        later_d[r] = heap_d[size - 1 - r]
    return out_t[:m], out_d[:m], kept, later_t, later_d


@njit(cache=True, nogil=True)
def dark_clicks(n: int, t0_ps: int, t1_ps: int, share: F64, key: np.uint64) -> tuple[I64, U8]:
    """``n`` clicks uniform in [t0_ps, t1_ps), detector d with probability share[d] -
    share[d - 1] (``share`` cumulative, last 1), sorted by time."""
    s0, s1, s2, s3 = _seed(key)
    time_ps = np.empty(n, dtype=np.int64)
    detector = np.empty(n, dtype=np.uint8)
    span = np.float64(t1_ps - t0_ps)
    last = share.size - 1
    for i in range(n):
        bits, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        # int64, annotated as a union so that min() with the int bound type-checks
        draw: np.int64 | int = np.int64(np.float64(bits >> _S11) * _UNIT * span)
        time_ps[i] = t0_ps + min(draw, t1_ps - t0_ps - 1)
        bits, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
        u = np.float64(bits >> _S11) * _UNIT
        d = 0
        while d < last and u >= share[d]:
            d += 1
        detector[i] = d
    order = np.argsort(time_ps, kind="mergesort")
    return time_ps[order], detector[order]


@njit(cache=True, nogil=True)
def jitter_stream(
    time_ps: I64,
    detector: U8,
    jitter: npt.NDArray[np.signedinteger[Any]],
    delays: I64,
    key: np.uint64,
) -> I64:
    """time + cable delay + jitter[detector (or row 0 when one row), 16 random bits]; one
    splitmix64 draw serves 4 clicks."""
    out = np.empty(time_ps.size, dtype=np.int64)
    per_detector = jitter.shape[0] > 1
    bits = np.uint64(0)
    for i in range(time_ps.size):
        if i & 3 == 0:
            bits = _splitmix(key + np.uint64(i >> 2) * _GOLDEN)
        else:
            bits >>= _S16
        d = detector[i]
        row = d if per_detector else 0
        out[i] = time_ps[i] + delays[d] + jitter[row, np.intp(bits & _U16)]
    return out

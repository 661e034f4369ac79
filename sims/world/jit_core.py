"""Compiled (numba) per-event loops of the world, and the helpers every kernel shares.

Imported only through ``sims.world.jit`` (itself loaded by ``sims.world.kernels.load()``),
so the world works without numba. The loops here take numpy's bulk draws (the
intercept-resend path) and replace chains of whole-array passes with one pass each; the hot
path (signal clicks, dead time, afterpulses, jitter) lives in ``jit_stream`` and draws its
own counter-based randomness. uint64 constants stay uint64 (mixing them with Python ints
would promote to float64 in numba).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from labctl.counter_hash import GOLDEN as _GOLDEN
from labctl.counter_hash import splitmix64_scalar as _splitmix

_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFFFFFF)
_COIN_MASK = np.uint64((1 << 60) - 1)
_S1, _S27, _S30, _S31, _S32, _S60 = (np.uint64(s) for s in (1, 27, 30, 31, 32, 60))

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
Codes = npt.NDArray[np.intp]
Clock = tuple[int, float, int, float, float, int]
"""(offset, ppm factor, t_lo, w_lo, slope, wander mode) of a tagger's clock."""


@njit(cache=True, nogil=True)
def gap_positions(draws: npt.NDArray[np.floating[Any]], scale: np.floating[Any], last: int) -> I64:
    """Running sum of floor(draw * scale) + 1 after ``last`` (geometric gaps -> positions)."""
    out = np.empty(draws.size, dtype=np.int64)
    position: int | np.int64 = last  # an int64 from the first gap on
    for i in range(draws.size):
        position += np.int64(draws[i] * scale) + 1
        out[i] = position
    return out


@njit(cache=True, nogil=True, inline="always")
def _alice_code(
    index: np.int64, key: np.uint64, z_threshold: np.uint64, class_edges: tuple[np.uint64, ...]
) -> np.intp:
    bits = _splitmix(np.uint64(index) * _GOLDEN + key)
    code = np.intp(bits & _ONE)
    if (bits >> _S32) >= z_threshold:
        code += 2
    draw = (bits & _LOW32) >> _S1
    for edge in class_edges:
        code += 4 * np.intp(draw >= edge)
    return code


@njit(cache=True, nogil=True)
def alice_codes(
    index: I64, key: np.uint64, z_threshold: np.uint64, class_edges: tuple[np.uint64, ...]
) -> Codes:
    """Intensity class * 4 + basis * 2 + bit per pulse, as ``AliceSource.codes``."""
    out = np.empty(index.size, dtype=np.intp)
    for i in range(index.size):
        out[i] = _alice_code(index[i], key, z_threshold, class_edges)
    return out


# Per click pattern k (bit d = detector d clicks): number of clicks and 1st..4th detector.
_N_CLICKS = np.array([bin(k).count("1") for k in range(16)], dtype=np.int64)
_NTH = np.array(
    [[d for d in range(4) if k >> d & 1] + [0] * (4 - bin(k).count("1")) for k in range(16)],
    dtype=np.uint8,
)


@njit(cache=True, nogil=True, inline="always")
def _pattern(code: np.intp, raw: np.uint64, threshold: U64, alias: Codes) -> np.intp:
    column = np.intp(raw >> _S60)
    slot = code * 16 + column
    keep = np.intp((raw & _COIN_MASK) < threshold[slot])
    picked: np.intp = alias[slot] + keep * (column - alias[slot])  # select without a branch
    return picked


@njit(cache=True, nogil=True, inline="always")
def _expand(index: I64, pattern: U8, total: int, period_ps: int, offset_ps: int) -> tuple[I64, U8]:
    """One (index * period + offset, detector) per click, branch-free for single clicks."""
    out_t = np.empty(total + 1, dtype=np.int64)
    out_d = np.empty(total + 1, dtype=np.uint8)
    m = 0
    for i in range(index.size):
        k = pattern[i]
        t = index[i] * period_ps + offset_ps
        out_t[m] = t
        out_d[m] = _NTH[k, 0]
        count = _N_CLICKS[k]
        if count > 1:  # rare: several detectors click on one pulse
            for r in range(1, count):
                out_t[m + r] = t
                out_d[m + r] = _NTH[k, r]
        m += count
    return out_t[:total], out_d[:total]


@njit(cache=True, nogil=True)
def expand_clicks(
    index: I64,
    code: Codes,
    raw: U64,
    threshold: U64,
    alias: Codes,
    period_ps: int,
    offset_ps: int,
) -> tuple[I64, U8]:
    """Walker-alias click pattern per candidate, one (index * period + offset, detector) per
    click, in pulse order; pattern 0 (no click) drops out."""
    pattern = np.empty(index.size, dtype=np.uint8)
    total = 0
    for i in range(index.size):
        k = _pattern(code[i], raw[i], threshold, alias)
        pattern[i] = k
        total += _N_CLICKS[k]
    return _expand(index, pattern, total, period_ps, offset_ps)


@njit(cache=True, nogil=True, inline="always")
def _clock(
    t: np.int64,
    offset_ps: int,
    ppm_factor: float,
    t_lo_f: np.float64,
    w_lo: float,
    slope: float,
    wander_mode: int,
    wander_i: float,
) -> np.int64:
    value = t + offset_ps
    if ppm_factor != 0.0:
        value += np.int64(np.rint(np.float64(t) * ppm_factor))
    if wander_mode == 1:
        value += np.int64(np.rint((np.float64(t) - t_lo_f) * slope + w_lo))
    elif wander_mode == 2:
        value += np.int64(np.rint(wander_i))
    return value


@njit(cache=True, nogil=True)
def tagger_clock(
    true_ps: I64,
    offset_ps: int,
    ppm_factor: float,
    t_lo: int,
    w_lo: float,
    slope: float,
    wander_mode: int,
    wander: F64,
) -> I64:
    """True ps -> tagger ps: offset + rint(t * ppm) + rint(wander), as ``TaggerModel.map_times``.

    wander_mode 0: none; 1: chord w_lo + (t - t_lo) * slope; 2: precomputed ``wander`` array.
    """
    out = np.empty(true_ps.size, dtype=np.int64)
    t_lo_f = np.float64(t_lo)
    for i in range(true_ps.size):
        w = wander[i] if wander_mode == 2 else 0.0
        out[i] = _clock(true_ps[i], offset_ps, ppm_factor, t_lo_f, w_lo, slope, wander_mode, w)
    return out


@njit(cache=True, nogil=True)
def tag_stream(
    true_ps: I64,
    channel: U8,
    carry_t: I64,
    carry_c: U8,
    clock: Clock,
    wander: F64,
    delays: I64,
    resolution: int,
) -> tuple[I64, U8]:
    """Carried tags, then new clicks stamped (``tagger_clock`` + channel delay, floored to the
    resolution), sorted by time: what ``TaggerModel.record`` does with several
    numpy passes and a sort. Jitter and delays only swap near neighbours, so an insertion
    step per tag costs O(1) on average. ``clock`` = (offset, ppm factor, t_lo, w_lo, slope,
    wander mode) as for ``tagger_clock``.
    """
    offset_ps, ppm_factor, t_lo, w_lo, slope, wander_mode = clock
    t_lo_f = np.float64(t_lo)
    n = carry_t.size + true_ps.size
    out_t = np.empty(n, dtype=np.int64)
    out_c = np.empty(n, dtype=np.uint8)
    out_t[: carry_t.size] = carry_t
    out_c[: carry_t.size] = carry_c
    m = carry_t.size
    for i in range(true_ps.size):
        c = channel[i]
        w = wander[i] if wander_mode == 2 else 0.0
        value = _clock(true_ps[i], offset_ps, ppm_factor, t_lo_f, w_lo, slope, wander_mode, w)
        value += delays[c]
        if resolution > 1:
            value = (value // resolution) * resolution
        j = m
        while j > 0 and out_t[j - 1] > value:  # stable: equal times keep their order
            out_t[j] = out_t[j - 1]
            out_c[j] = out_c[j - 1]
            j -= 1
        out_t[j] = value
        out_c[j] = c
        m += 1
    return out_t, out_c

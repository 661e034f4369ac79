"""Bob's tags -> Alice's pulse indices: the per-tag arithmetic, compiled when numba is there.

``assign_tags`` is what ``SyncResult.assign`` and the tracker call. With numba the loop in
``experiments.sync.jit`` runs; without numba the numpy path below runs. Both do the same
float64 operations in the same order, so they give identical pulse indices (the numpy
functions, ``assign_numpy`` and ``peak_stats_numpy``, are the tests' oracle).
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
PeakStats = tuple[int, float, int, float, float]  # hits, centre_ps, count, mean_ps, var_ps2


@functools.cache
def _compiled() -> ModuleType | None:
    try:
        from experiments.sync import jit
    except ImportError:  # numba not installed: the numpy path is complete on its own
        return None
    return jit


def kernels() -> ModuleType | None:
    """The compiled loops, or None when numba is missing."""
    return _compiled()


def assign_numpy(
    channel: U8, time_ps: I64, t_ref_ps: int, n_ref: int, period_ps: float, shift_ps: F64
) -> tuple[I64, F64]:
    """Pulse index and residual (ps) of every tag, in whole-array numpy passes."""
    # int64 difference first: tagger clocks pass 2**53 ps (2.5 h), where float64 drops ps.
    rel = (time_ps - t_ref_ps).astype(np.float64)
    rel -= shift_ps[channel]
    k = rel * (1.0 / period_ps)
    np.rint(k, out=k)
    residual = rel
    residual -= k * period_ps
    index = k.astype(np.int64)
    index += n_ref
    return index, residual


def assign_tags(
    channel: U8, time_ps: I64, t_ref_ps: int, n_ref: int, period_ps: float, shift_ps: F64
) -> tuple[I64, F64]:
    """Pulse index of every tag and its residual (ps); ``shift_ps[c]`` is channel c's phase."""
    if channel.shape != time_ps.shape:
        raise ValueError(
            f"channel and time_ps differ in length: {channel.shape} vs {time_ps.shape}"
        )
    if shift_ps.shape != (256,):
        raise ValueError(f"shift_ps must hold one phase per channel (256), got {shift_ps.shape}")
    jit = kernels()
    if jit is None or time_ps.size < 64:  # a handful of tags: not worth a compiled call
        return assign_numpy(channel, time_ps, t_ref_ps, n_ref, period_ps, shift_ps)
    index, residual = jit.assign(
        np.ascontiguousarray(channel),
        np.ascontiguousarray(time_ps),
        np.int64(t_ref_ps),
        np.int64(n_ref),
        float(period_ps),
        1.0 / float(period_ps),
        shift_ps,
    )
    return index, residual


def peak_stats_numpy(residual: F64, wide_ps: float, tight_ps: float) -> PeakStats:
    """(hits, centre, count, mean, var) of the residual peak, in numpy passes."""
    inside = residual[np.abs(residual) < wide_ps]
    if inside.size == 0:
        return 0, 0.0, 0, 0.0, 0.0
    centre = float(np.median(inside))
    peak = residual[np.abs(residual - centre) < tight_ps]
    if peak.size == 0:  # the tight window missed: fall back on the wide gate's tags
        peak = inside
    return int(inside.size), centre, int(peak.size), float(peak.mean()), float(peak.var())


def peak_stats(
    residual: F64, wide_ps: float, tight_ps: float
) -> tuple[int, float, int, float, float]:
    """Where the light is among ``residual`` (ps), and its phase.

    ``hits`` residuals fall in the wide gate (+-``wide_ps``); their median ``centre`` finds
    the peak; the ``count`` residuals within ``tight_ps`` of it have ``mean`` and ``var``:
    the phase measurement, free of the dark counts and afterpulses a wide gate lets in.
    """
    jit = kernels()
    if jit is None:
        return peak_stats_numpy(residual, wide_ps, tight_ps)
    hits, centre, count, mean, var = jit.peak_stats(
        np.ascontiguousarray(residual), float(wide_ps), float(tight_ps)
    )
    return int(hits), float(centre), int(count), float(mean), float(var)

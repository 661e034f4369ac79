"""Clock recovery from Bob's tags alone: frequency offset and sub-period phase.

Coarse: the pulse-period phase coherence |sum exp(2 pi i t / P')| over every candidate period
P' within the prior, computed at once as an FFT of phase vectors binned along the time axis
(summed incoherently over channels so per-channel cable delays cannot cancel it). Fine: a
gated least-squares fit of the residual times, which ignores dark counts and afterpulses
(uniform in phase) and reaches the jitter / sqrt(N) limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.sync.model import SyncError

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, slots=True)
class ClockFit:
    """Bob-clock pulse period and per-channel phase (Bob time of a pulse near ``t_ref_ps``)."""

    period_ps: float
    t_ref_ps: int
    channel_phase_ps: dict[int, float]
    reference_channel: int
    jitter_ps: float
    coherence: float
    detections: int


def coarse_frequency(time_ps: I64, channel: U8, period_ps: int, max_ppm: float) -> float:
    """Fractional frequency offset maximising the phase coherence within +-max_ppm."""
    span = max(1.2 * max_ppm * 1e-6, 1e-9)
    bin_pulses = 0.25 / span  # keeps the phase turn within one bin under a quarter cycle
    rel = time_ps - time_ps[0]
    x = rel.astype(np.float64) / period_ps
    z = np.exp(-1j * _TWO_PI * (rel % period_ps).astype(np.float64) / period_ps)
    m = (x / bin_pulses).astype(np.int64)
    n_bins = int(m[-1]) + 1
    nfft = 1 << max(8, math.ceil(math.log2(4 * n_bins)))
    power = np.zeros(nfft, dtype=np.float64)
    for ch in np.unique(channel):
        sel = channel == ch
        binned = np.bincount(m[sel], weights=z[sel].real, minlength=n_bins) + 1j * np.bincount(
            m[sel], weights=z[sel].imag, minlength=n_bins
        )
        power += np.abs(np.fft.ifft(binned, nfft)) ** 2
    nu = np.fft.fftfreq(nfft)
    allowed = np.abs(nu / bin_pulses) <= max_ppm * 1e-6 * 1.05
    best = int(np.argmax(np.where(allowed, power, -1.0)))
    return float(nu[best] / bin_pulses)


def _wrap(value: F64, period: float) -> F64:
    out: F64 = value - np.rint(value / period) * period
    return out


def fit_clock(
    time_ps: I64,
    channel: U8,
    period_ps: int,
    max_ppm: float,
    *,
    gate_ps: float | None = None,
) -> ClockFit:
    """Recover Bob's pulse period and each channel's phase from sorted tags."""
    if time_ps.size < 50:
        raise SyncError(f"only {time_ps.size} tags: need at least 50 to recover the pulse clock")
    freq = coarse_frequency(time_ps, channel, period_ps, max_ppm)
    t_ref = int(time_ps[0])
    u = (time_ps - t_ref).astype(np.float64)
    period = period_ps * (1.0 + freq)
    channels = [int(c) for c in np.unique(channel)]
    counts = {c: int(np.count_nonzero(channel == c)) for c in channels}
    reference = max(channels, key=lambda c: counts[c])
    phase = {c: _circular_phase(u[channel == c], period) for c in channels}
    # Chunked phase unwrap: removes what the FFT grid left of the frequency error.
    n_chunks = int(min(64, max(2, time_ps.size // 200)))
    edges = np.linspace(0.0, u[-1] + 1.0, n_chunks + 1)
    chunk = np.searchsorted(edges, u, side="right") - 1
    offsets = np.array([phase[int(c)] for c in range(256) if c in phase])
    lookup = np.zeros(256)
    lookup[channels] = offsets
    resid = _wrap(u - lookup[channel], period)
    zc = np.exp(1j * _TWO_PI * resid / period)
    sums = np.bincount(chunk, weights=zc.real, minlength=n_chunks) + 1j * np.bincount(
        chunk, weights=zc.imag, minlength=n_chunks
    )
    good = np.abs(sums) > 0
    if good.sum() >= 2:
        centers = 0.5 * (edges[:-1] + edges[1:])
        ph = np.unwrap(np.angle(sums[good])) * period / _TWO_PI
        slope = float(np.polyfit(centers[good], ph, 1, w=np.abs(sums[good]))[0])
        period *= 1.0 + slope
        phase = {c: _circular_phase(u[channel == c], period) for c in channels}
    sigma = gate_ps if gate_ps is not None else period / 6.0
    for _ in range(4):
        lookup[:] = 0.0
        for c in channels:
            lookup[c] = phase[c]
        resid = _wrap(u - lookup[channel], period)
        keep = np.abs(resid) < 4.0 * sigma
        if keep.sum() < 20:
            raise SyncError("no clock peak: the tags show no pulse-period structure (no light?)")
        design_u = u[keep]
        r = resid[keep]
        ch = channel[keep]
        # Per-channel intercepts, one common slope: demean per channel, then fit.
        means = {c: float(r[ch == c].mean()) if np.any(ch == c) else 0.0 for c in channels}
        mean_vec = np.zeros(256)
        for c in channels:
            mean_vec[c] = means[c]
        r0 = r - mean_vec[ch]
        u_means = np.zeros(256)
        for c in channels:
            if np.any(ch == c):
                u_means[c] = float(design_u[ch == c].mean())
        du = design_u - u_means[ch]
        denom = float(np.dot(du, du))
        slope = float(np.dot(du, r0) / denom) if denom > 0 else 0.0
        for c in channels:
            phase[c] = phase[c] + means[c] - slope * u_means[c]
        period *= 1.0 + slope
        mad = float(np.median(np.abs(r0 - slope * du)))
        sigma = max(1.4826 * mad, 1.0)
    coherence = float(keep.mean())
    ref_phase = phase[reference]
    rel_phase = {c: float(_wrap(np.array([phase[c] - ref_phase]), period)[0]) for c in channels}
    return ClockFit(
        period_ps=period,
        t_ref_ps=t_ref,
        channel_phase_ps={c: ref_phase + rel_phase[c] for c in channels},
        reference_channel=reference,
        jitter_ps=sigma,
        coherence=coherence,
        detections=int(time_ps.size),
    )


def _circular_phase(u: F64, period: float) -> float:
    """Circular mean of ``u mod period`` in ps, in (-period/2, period/2]."""
    if u.size == 0:
        return 0.0
    angle = _TWO_PI * np.mod(u, period) / period
    mean = math.atan2(float(np.sin(angle).sum()), float(np.cos(angle).sum()))
    return mean * period / _TWO_PI

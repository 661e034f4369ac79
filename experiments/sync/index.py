"""Absolute pulse index: which of Alice's pulses Bob's relative pulse 0 is.

Two public hints, then qubits. Alice blanks her laser for a few gaps whose pulse indices she
announces (a sparse marker); each gap, found as the quietest stretch of Bob's detections,
bounds the index offset to within a few mean detection spacings, and the gaps together
narrow it further. Inside that range the offset is fixed qubit-based (Calderaro et al.
2020): Alice reveals her basis/bit/intensity for the pulses the candidate offset points
at, and the right offset is the one where Bob's bits correlate with Alice's (in whatever
rotation the fiber applies: the statistic sums the squared correlation of all four
Alice-basis x Bob-basis blocks) and no detection falls on a vacuum pulse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from experiments.sync.alice import AlicePublic
from experiments.sync.model import SyncError

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

STAGE1_DETECTIONS = 256
STAGE1_BUDGET = 3_000_000
STAGE2_DETECTIONS = 1024
STAGE2_CANDIDATES = 48
MIN_SCORE_MARGIN = 25.0
_WINDOW_CHUNK = 1 << 20


def gap_offset_candidates(
    k: I64, markers: Sequence[tuple[int, int]], density_per_pulse: float, max_candidates: int
) -> I64:
    """Index offsets (n = k + offset) most consistent with the laser gaps, best first.

    For an offset, every gap predicts where Bob's quiet window lies; the offsets that put
    the fewest detections inside the predicted windows (summed over all gaps) are the most
    likely: each extra detection costs a factor dark density / light density.
    """
    if not markers:
        raise SyncError("no marker gaps to bound the pulse index")
    g0 = markers[0][1] - markers[0][0]
    threshold = max(2.0, 0.35 * density_per_pulse * g0)
    # Detections in the window of g0 pulses after each one, kept only for the quiet windows
    # (a slice at a time: k can hold minutes of tags, and the window ends and counts of all
    # of them would be three more arrays as large).
    quiet_parts: list[I64] = []
    count_parts: list[I64] = []
    for at in range(0, k.size, _WINDOW_CHUNK):
        part = k[at : at + _WINDOW_CHUNK]
        counts = np.searchsorted(k, part + g0, side="left")
        counts -= np.arange(at + 1, at + part.size + 1)
        positions = np.flatnonzero(counts <= threshold)
        quiet_parts.append(positions + at)
        count_parts.append(counts[positions])
    quiet = np.concatenate(quiet_parts)
    inside = np.concatenate(count_parts)  # detections in the window after each quiet one
    if quiet.size == 0:
        raise SyncError(
            f"the laser gaps are not visible in Bob's detections (density "
            f"{density_per_pulse:.3g}/pulse): no light, or the switch does not route to Bob"
        )
    # Windows ending inside the first gap are quiet too; the quietest is the one that starts
    # at the last detection before the gap.
    in_cluster = quiet <= quiet[0] + int(threshold) + 2
    cluster, cluster_counts = quiet[in_cluster], inside[in_cluster]
    least = cluster[cluster_counts == cluster_counts.min()]
    rough = markers[0][1] - (int(k[least[-1]]) + g0)
    reach = int(16.0 / max(density_per_pulse, 1e-12))
    points = [np.array([rough - reach, rough + reach], dtype=np.int64)]
    for n_off, n_on in markers:
        gap = n_on - n_off
        near = k[(k >= n_off - rough - 2 * reach) & (k <= n_on - rough + 2 * reach)]
        # The window count changes where a detection crosses either edge of the window.
        points.append(n_on - near)
        points.append(n_on - gap - near + 1)
    breaks = np.unique(np.concatenate(points))
    breaks = breaks[(breaks >= rough - reach) & (breaks <= rough + reach)]
    total = np.zeros(breaks.size, dtype=np.int64)
    for n_off, n_on in markers:
        gap = n_on - n_off
        on = n_on - breaks
        total += np.searchsorted(k, on, side="left") - np.searchsorted(k, on - gap, side="left")
    order = np.lexsort((np.abs(breaks - rough), total))
    chosen: list[I64] = []
    size = 0
    for i in order:
        lo = int(breaks[i])
        hi = int(breaks[i + 1]) if i + 1 < breaks.size else lo + 1
        seg = np.arange(lo, hi, dtype=np.int64)[: max_candidates - size]
        chosen.append(seg)
        size += seg.size
        if size >= max_candidates or total[i] > total[order[0]] + 12:
            break
    return np.concatenate(chosen)


def qubit_scores(
    alice: AlicePublic,
    k: I64,
    basis: U8,
    bit: U8,
    offsets: I64,
    vacuum_code: int | None,
) -> F64:
    """Correlation score of Bob's (basis, bit) against Alice's pattern for every offset."""
    positions = k[None, :] + offsets[:, None]
    pattern = alice.pattern(positions.ravel())
    a_basis = pattern.basis.reshape(positions.shape)
    a_bit = pattern.bit.reshape(positions.shape)
    sign = 1.0 - 2.0 * (a_bit ^ bit[None, :]).astype(np.float64)
    group = 2 * a_basis.astype(np.int64) + basis[None, :].astype(np.int64)
    score = np.zeros(offsets.size, dtype=np.float64)
    for g in range(4):
        member = group == g
        sums = np.where(member, sign, 0.0).sum(axis=1)
        counts = member.sum(axis=1)
        score += sums**2 / np.maximum(counts, 1)
    if vacuum_code is not None:
        vac = (pattern.intensity.reshape(positions.shape) == vacuum_code).sum(axis=1)
        expected = float(np.mean(vac))
        if expected > 0:
            score += np.maximum(expected - vac, 0.0) ** 2 / expected
    return score


def _spread_pick(n: int, size: int) -> I64:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.linspace(0, n - 1, size).astype(np.int64)


def find_offset(
    alice: AlicePublic,
    k: I64,
    basis: U8,
    bit: U8,
    offsets: I64,
    vacuum_code: int | None,
) -> tuple[int, float]:
    """The candidate offset whose pattern matches Bob's detections best, and its margin."""
    if k.size < 64:
        raise SyncError(f"only {k.size} detections to align against Alice's pattern (need 64)")
    n_stage1 = int(np.clip(STAGE1_BUDGET // max(offsets.size, 1), STAGE1_DETECTIONS, 1024))
    pick = _spread_pick(k.size, n_stage1)
    scores = np.empty(offsets.size)
    step = max(1, 2_000_000 // pick.size)
    for start in range(0, offsets.size, step):
        part = offsets[start : start + step]
        scores[start : start + step] = qubit_scores(
            alice, k[pick], basis[pick], bit[pick], part, vacuum_code
        )
    top = offsets[np.argsort(scores)[::-1][:STAGE2_CANDIDATES]]
    pick2 = _spread_pick(k.size, STAGE2_DETECTIONS)
    final = qubit_scores(alice, k[pick2], basis[pick2], bit[pick2], top, vacuum_code)
    order = np.argsort(final)[::-1]
    best = float(final[order[0]])
    second = float(final[order[1]]) if order.size > 1 else 0.0
    if best - second < MIN_SCORE_MARGIN:
        raise SyncError(
            f"Bob's bits do not single out an index offset (best score {best:.1f}, "
            f"next {second:.1f}): too few detections or no correlation with Alice"
        )
    return int(top[order[0]]), best - second


def channel_shifts(
    alice: AlicePublic,
    k: I64,
    channel: U8,
    basis: U8,
    bit: U8,
    offset: int,
    vacuum_code: int | None,
    max_shift: int = 8,
) -> dict[int, int]:
    """Whole-pulse cable delay of each channel relative to the common index offset."""
    shifts: dict[int, int] = {}
    candidates = np.arange(-max_shift, max_shift + 1, dtype=np.int64)
    for ch in np.unique(channel):
        sel = np.flatnonzero(channel == ch)
        pick = sel[_spread_pick(sel.size, 512)]
        if pick.size < 64:
            shifts[int(ch)] = 0
            continue
        score = qubit_scores(
            alice, k[pick], basis[pick], bit[pick], offset + candidates, vacuum_code
        )
        best = int(np.argmax(score))
        shifts[int(ch)] = int(candidates[best]) if score[best] - score[max_shift] > 15.0 else 0
    return shifts

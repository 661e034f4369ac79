"""Photon detections for a range of pulses, sampled sparsely (never a loop per pulse).

Thinning: every pulse becomes a *candidate* with the largest click probability any pulse can
have (a Bernoulli process drawn by geometric gaps); the candidate's own class and state
(recomputed from the counter RNG) then pick its click pattern, i.e. which of the four
independent detectors click, with probability P(pattern) / P_max, or no click at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

import numpy as np
import numpy.typing as npt

from sims.world.detectors import I64, bernoulli_positions
from sims.world.source import STREAM_EVE, AliceSource, pulse_hash, unit_uniform

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
_COIN_MASK = np.uint64((1 << 60) - 1)
_COIN_SCALE = float(1 << 60)
N_DETECTORS = 4
N_STATES = 4
N_PATTERNS = 1 << N_DETECTORS


@dataclass(frozen=True, slots=True)
class ClickTable:
    """Per code = (intensity class, prepared state) click-pattern tables, built per slice.

    Pattern k (0..15) is the set of detectors that click, bit d = detector d. For a candidate
    pulse (drawn with probability p_max) pattern 0 means "rejected"; pattern k > 0 has
    probability P(k) / p_max, so the accepted pulses follow the exact independent-detector law.
    """

    p_max: float  # candidate probability: >= every code's click probability, on a grid
    threshold: U64  # [code * 16 + column] Walker alias tables over the 16 patterns (x 2^60)
    alias: npt.NDArray[np.intp]

    @classmethod
    def build(cls, mean_photons: F64, weights: F64) -> ClickTable:
        """From mean photons at Bob per class and q[state, detector]."""
        p_each = -np.expm1(-(mean_photons[:, None, None] * weights[None, :, :]))
        p_each = p_each.reshape(-1, N_DETECTORS)  # code = class * 4 + state
        bits = (np.arange(N_PATTERNS)[:, None] >> np.arange(N_DETECTORS)[None, :]) & 1
        # P(pattern) = prod over detectors of p_d (clicked) or 1 - p_d (silent).
        per_det = np.where(bits[None, :, :] == 1, p_each[:, None, :], 1.0 - p_each[:, None, :])
        prob = per_det.prod(axis=2)
        p_any = 1.0 - prob[:, 0]
        p_max = candidate_probability(float(p_any.max())) if p_any.size else 0.0
        if p_max > 0.0:
            prob[:, 1:] /= p_max
            prob[:, 0] = np.maximum(0.0, 1.0 - prob[:, 1:].sum(axis=1))
        thresholds: list[float] = []
        aliases: list[int] = []
        for row in prob.tolist():
            threshold, alias = _walker_alias(row)
            thresholds.extend(threshold)
            aliases.extend(alias)
        coin = np.minimum(np.array(thresholds) * _COIN_SCALE, _COIN_SCALE).astype(np.uint64)
        return cls(p_max=p_max, threshold=coin, alias=np.array(aliases, dtype=np.intp))

    def patterns(self, code: npt.NDArray[np.intp], raw: U64) -> npt.NDArray[np.intp]:
        """Draw each candidate's click pattern (0 = no click) from 64 random bits each."""
        # Top 4 bits pick the alias column, the low 60 bits are the alias coin.
        column = (raw >> np.uint64(60)).astype(np.intp)
        slot = code * N_PATTERNS + column
        stay = (raw & _COIN_MASK) < self.threshold[slot]
        alias = self.alias[slot]
        # An arithmetic select avoids the branch mispredictions of a boolean mask.
        result: npt.NDArray[np.intp] = alias + stay * (column - alias)
        return result


_GRID_PER_OCTAVE = 32


def candidate_probability(p_any_max: float) -> float:
    """The candidate probability for a largest click probability: rounded up to a grid of
    32 steps per octave (<= 2.2 % extra candidates), so gap tables are few and cached."""
    if p_any_max <= 0.0:
        return 0.0
    step = math.ceil(_GRID_PER_OCTAVE * math.log2(p_any_max) - 1e-9)
    return min(1.0, max(p_any_max, float(2.0 ** (step / _GRID_PER_OCTAVE))))


GapTable = tuple[U64, npt.NDArray[np.intp], int]
"""(threshold x 2^shift, alias, shift) of a Walker table over the geometric gaps."""


@lru_cache(maxsize=64)
def gap_table(p: float) -> GapTable:
    """Walker alias table of Geometric(p) gaps for the compiled sampler.

    Outcome g < size - 1 is a gap of g + 1 pulses (probability p (1 - p)^g); the last
    outcome, probability (1 - p)^(size - 1), means "skip size - 1 pulses and draw again",
    which is exact because the geometric law is memoryless. size ~ 8 / p (16..4096), so that
    outcome is rare except at tiny p, where it costs little per pulse. A 64-bit draw picks
    the column with its top log2(size) bits and compares the rest with the threshold.
    """
    size = int(min(4096, max(16, 2 ** math.ceil(math.log2(8.0 / p))))) if p > 0.0 else 4096
    gap = np.arange(size - 1, dtype=np.float64)
    prob = np.append(p * np.exp(gap * math.log1p(-p)) if p < 1.0 else gap == 0, 0.0)
    prob[-1] = max(0.0, 1.0 - float(prob[:-1].sum())) if p < 1.0 else 0.0
    threshold, alias = _walker_alias(prob.tolist())
    shift = 64 - (size.bit_length() - 1)
    coin = np.minimum(np.array(threshold) * 2.0**shift, 2.0**shift).astype(np.uint64)
    return coin, np.array(alias, dtype=np.intp), shift


def _walker_alias(prob: list[float]) -> tuple[list[float], list[int]]:
    """Walker's alias table: column j keeps itself with threshold[j], else goes to alias[j]."""
    n = len(prob)
    total = sum(prob)
    scaled = [p / total * n for p in prob]  # plain floats: this runs once per slice
    threshold = [1.0] * n
    alias = list(range(n))
    small = [j for j in range(n) if scaled[j] < 1.0]
    large = [j for j in range(n) if scaled[j] >= 1.0]
    while small and large:
        j, k = small.pop(), large.pop()
        threshold[j], alias[j] = scaled[j], k
        scaled[k] -= 1.0 - scaled[j]
        (small if scaled[k] < 1.0 else large).append(k)
    return threshold, alias


def _eve_states(seed: int, fraction: float, index: I64, state: npt.NDArray[np.uint8]) -> None:
    """Replace, in place, the state of pulses Eve intercepts by the state she resends."""
    if fraction <= 0.0 or index.size == 0:
        return
    bits = pulse_hash(seed, STREAM_EVE, index)
    attacked = unit_uniform(bits) < fraction
    eve_basis = ((bits >> np.uint64(1)) & np.uint64(1)).astype(np.uint8)
    eve_guess = ((bits >> np.uint64(2)) & np.uint64(1)).astype(np.uint8)
    alice_basis = state >> 1
    # Same basis: Eve learns Alice's bit and resends it; otherwise her outcome is random.
    eve_bit = np.where(eve_basis == alice_basis, state & 1, eve_guess)
    resent = (eve_basis << 1) | eve_bit
    np.copyto(state, resent.astype(np.uint8), where=attacked)


Clicks = tuple[I64, U8]
"""(pulse index sorted ascending, detector 0..3) of every click."""

# For each click pattern (bit d = detector d clicks): how many detectors click, and the
# detector of its 1st..4th click (255 = none).
_N_CLICKS = np.array([bin(k).count("1") for k in range(16)], dtype=np.intp)
_NTH_DETECTOR = np.array(
    [[d for d in range(4) if k >> d & 1] + [255] * (4 - bin(k).count("1")) for k in range(16)],
    dtype=np.uint8,
)

_FIRST_DETECTOR = np.ascontiguousarray(_NTH_DETECTOR[:, 0])


def _no_clicks() -> Clicks:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)


def _expand_patterns(index: I64, pattern: npt.NDArray[np.intp]) -> Clicks:
    """One entry per clicking detector, in pulse order; pattern 0 (no click) drops out."""
    counts = _N_CLICKS[pattern]
    out_index = np.repeat(index, counts)
    detector = np.repeat(_FIRST_DETECTOR[pattern], counts)
    multi = np.flatnonzero(counts > 1)  # rare: pulses where several detectors click
    if multi.size:
        # The entries of one pulse are adjacent; fill its 2nd, 3rd... detector in place.
        first = np.searchsorted(out_index, index[multi], side="left")
        for rank in range(1, N_DETECTORS):
            has = counts[multi] > rank
            detector[first[has] + rank] = _NTH_DETECTOR[pattern[multi[has]], rank]
    return out_index, detector


class PhotonSampler:
    """Which detector clicks for which pulse, from Alice's pattern and the channel."""

    def __init__(self, source: AliceSource, seed: int, jit: ModuleType | None = None) -> None:
        self.source = source
        self.seed = seed
        self.jit = jit  # compiled loops (sims.world.jit) or None for the numpy path

    def signal_clicks(
        self,
        rng: np.random.Generator,
        n0: int,
        n1: int,
        table: ClickTable,
        eve_fraction: float,
        arrival: tuple[int, int] = (1, 0),
    ) -> Clicks:
        """Pulses in [n0, n1) that click, sorted, with the detector that clicks (0..3).

        Each click is reported at ``index * period_ps + offset_ps`` for ``arrival`` =
        (period_ps, offset_ps); the default gives the pulse index itself.
        """
        period_ps, offset_ps = arrival
        if table.p_max <= 0.0 or n1 <= n0:
            return _no_clicks()
        jit = self.jit
        if jit is not None and eve_fraction <= 0.0 and self.source.program is None:
            # One pass, randomness from a counter-based hash keyed by one draw of ``rng``.
            capacity = int(1.2 * (n1 - n0) * table.p_max) + 64
            fused: Clicks = jit.signal_stream(
                n0,
                n1,
                gap_table(table.p_max),
                np.uint64(rng.bit_generator.random_raw()),
                *self.source.code_key(),
                table.threshold,
                table.alias,
                period_ps,
                offset_ps,
                capacity,
            )
            return fused
        index = bernoulli_positions(rng, n1 - n0, table.p_max, jit)
        index += n0
        code = self.source.codes(index, jit)
        if eve_fraction > 0.0:
            state = (code & 3).astype(np.uint8)
            _eve_states(self.seed, eve_fraction, index, state)
            code = (code & ~3) | state
        raw = rng.bit_generator.random_raw(index.size)
        if jit is not None:
            clicks: Clicks = jit.expand_clicks(
                index, code, raw, table.threshold, table.alias, period_ps, offset_ps
            )
            return clicks
        index, detector = _expand_patterns(index, table.patterns(code, raw))
        if arrival != (1, 0):
            index *= period_ps
            index += offset_ps
        return index, detector

    def blinding_triggers(
        self, rng: np.random.Generator, n0: int, n1: int, eve_efficiency: float
    ) -> tuple[I64, npt.NDArray[np.uint8]]:
        """Pulses in [n0, n1) Eve detects, with the state (H, V, D, A) she resends bright.

        Eve intercepts every pulse: she detects 1 - exp(-mu eta_E) of them and measures in a
        random basis (same-basis: Alice's bit; otherwise a random bit).
        """
        mu = self.source.mu
        p_detect = -np.expm1(-mu * eve_efficiency)
        p_max = float(p_detect.max()) if p_detect.size else 0.0
        if p_max <= 0.0 or n1 <= n0:
            return _no_clicks()
        index = n0 + bernoulli_positions(rng, n1 - n0, p_max, self.jit)
        code = self.source.codes(index, self.jit)
        intensity = code >> 2
        keep = rng.random(index.size) * p_max < p_detect[intensity]
        index = index[keep]
        state = (code[keep] & 3).astype(np.uint8)
        _eve_states(self.seed, 1.0, index, state)
        return index, state

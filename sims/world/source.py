"""Alice's pulsed source: a counter-based pattern that any pulse index can recompute.

Every per-pulse random choice (Alice's basis, bit and intensity class; Eve's attack decision,
basis and outcome) is a pure function of (seed, stream, pulse index) through splitmix64, so
nothing is stored and Alice can regenerate the pattern of any pulse Bob reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import numpy.typing as npt

from labctl.counter_hash import GOLDEN as _GOLDEN
from labctl.counter_hash import splitmix64
from sims.world.program import PatternProgram
from sims.world.settings import SourceSettings

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

_UNIT = 1.0 / float(1 << 53)
_CLASS_SCALE = float(1 << 31)
_BASIS_SCALE = float(1 << 32)
_CLASS_MASK = np.uint64(0xFFFFFFFF)

STREAM_ALICE = 1
STREAM_EVE = 2


def stream_key(seed: int, stream: int) -> int:
    """The 64-bit counter offset of one (seed, stream) pair."""
    return (seed * 0x2545F4914F6CDD1D + stream * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF


def pulse_hash(seed: int, stream: int, indices: npt.NDArray[np.int64]) -> U64:
    """64 random bits per pulse index for the given stream, reproducible forever."""
    counters = indices.astype(np.uint64) * _GOLDEN + np.uint64(stream_key(seed, stream))
    return splitmix64(counters)


def unit_uniform(bits: U64) -> F64:
    """The top 53 bits as a float in [0, 1)."""
    return (bits >> np.uint64(11)).astype(np.float64) * _UNIT


@dataclass(frozen=True, slots=True)
class PulsePattern:
    """Alice's choices for a set of pulses: basis (0=Z, 1=X), bit, intensity class code."""

    index: npt.NDArray[np.int64]
    basis: U8
    bit: U8
    intensity: U8


class AliceSource:
    """Alice's laser and pattern generator."""

    def __init__(self, settings: SourceSettings, seed: int) -> None:
        self.settings = settings
        self.seed = seed
        self.period_ps = settings.period_ps
        self.enabled = True
        self.power_mw = settings.nominal_power_mw
        self.wavelength_nm = settings.wavelength_nm
        probs = np.array([c.probability for c in settings.intensities])
        # One 64-bit hash per pulse: bit 0 = key bit, bits 1..31 = intensity class draw,
        # bits 32..63 = basis draw; thresholds are compared as integers (2^-31 granularity).
        self._class_edges = [np.uint64(round(e * _CLASS_SCALE)) for e in np.cumsum(probs)[:-1]]
        self._z_threshold = np.uint64(round(settings.basis_z_probability * _BASIS_SCALE))
        self._edge_tuple = tuple(self._class_edges) or (np.uint64(1 << 63),)
        self._key = np.uint64(stream_key(seed, STREAM_ALICE))
        self.program: PatternProgram | None = None
        """Set when a transmitter drives the source: its patterns replace the seed."""

    def attach_program(self) -> PatternProgram:
        """From now on pulses carry what a transmitter plays (dark until it starts)."""
        if self.program is None:
            self.program = PatternProgram(len(self.settings.intensities), self.period_ps)
        return self.program

    @property
    def mu(self) -> F64:
        """Mean photon number per intensity class leaving Alice now (0 when the laser is off)."""
        nominal = np.array([c.mu for c in self.settings.intensities], dtype=np.float64)
        if self.program is not None:
            nominal = np.append(nominal, 0.0)  # the dark code: a pulse the modulator blocks
        if not self.enabled:
            return np.zeros_like(nominal)
        return nominal * (self.power_mw / self.settings.nominal_power_mw)

    def code_key(self) -> tuple[np.uint64, np.uint64, tuple[np.uint64, ...]]:
        """(counter key, Z-basis threshold, class edges): what compiled code hashing needs.

        The edges are a tuple (numba unrolls the loop over it); one class gets a single edge
        above every 31-bit class draw, so the tuple is never empty.
        """
        return self._key, self._z_threshold, self._edge_tuple

    def codes(
        self, index: npt.NDArray[np.int64], jit: ModuleType | None = None
    ) -> npt.NDArray[np.intp]:
        """Per pulse: intensity class * 4 + basis * 2 + bit, the same draws as ``pattern``."""
        if self.program is not None:
            return self.program.codes(index)
        if jit is not None:
            compiled: npt.NDArray[np.intp] = jit.alice_codes(index, *self.code_key())
            return compiled
        bits = pulse_hash(self.seed, STREAM_ALICE, index)
        code = bits & np.uint64(1)
        code |= ((bits >> np.uint64(32)) >= self._z_threshold).astype(np.uint64) << np.uint64(1)
        bits &= _CLASS_MASK
        bits >>= np.uint64(1)
        for edge in self._class_edges:
            code += (bits >= edge).astype(np.uint64) << np.uint64(2)
        result: npt.NDArray[np.intp] = code.view(np.intp)
        return result

    def pattern(self, indices: npt.NDArray[np.int64]) -> PulsePattern:
        """Recompute Alice's basis, bit and intensity class of any pulses."""
        index = np.asarray(indices, dtype=np.int64)
        if self.program is not None:
            code = self.program.codes(index).astype(np.uint8)
            return PulsePattern(
                index=index,
                basis=(code >> np.uint8(1)) & np.uint8(1),
                bit=code & np.uint8(1),
                intensity=code >> np.uint8(2),
            )
        bits = pulse_hash(self.seed, STREAM_ALICE, index)
        bit = (bits & np.uint64(1)).astype(np.uint8)
        basis = ((bits >> np.uint64(32)) >= self._z_threshold).astype(np.uint8)
        class_draw = (bits & _CLASS_MASK) >> np.uint64(1)
        intensity = np.zeros(index.shape, dtype=np.uint8)
        for edge in self._class_edges:
            intensity += class_draw >= edge
        return PulsePattern(index=index, basis=basis, bit=bit, intensity=intensity)

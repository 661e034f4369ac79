"""A PulsePattern as a Pulse Streamer 8/2 sequence: run-length encoded 9-byte steps.

Wire format (the vendor client's encoding, pulsestreamer 2.1.2): a sequence is an array of
steps, each little-endian ``<IBhh`` packed without padding: duration in ns (uint32), the
digital mask (bit k = output k high), analog output 0 and 1 as int16 where +/-0x7fff is
+/-1 V (``round(0x7fff * volts)``). The JSON-RPC ``stream`` call takes this array base64
encoded. Durations above 0xFFFFFFFF ns are split into several steps.

Channel mapping (one pattern pulse lasts ``period_ns``): analog output 0 carries the
intensity class's level, the basis and bit channels carry basis and bit, the clock channel
is high for the whole of every ``marker_divider``-th pulse and the frame channel for the
whole of the pattern's first pulse. Consecutive pulses with the same outputs are merged
into one step; the first pulse never merges (only it has the frame marker), so its
step's duration is the pulse period.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from labctl.interfaces.pattern import PulsePattern

STEP_DTYPE = np.dtype([("ticks", "<u4"), ("digi", "u1"), ("ao0", "<i2"), ("ao1", "<i2")])
"""One sequence step on the wire: 9 bytes, packed (numpy structured dtypes are unaligned)."""
STEP_BYTES = STEP_DTYPE.itemsize
MAX_TICKS = 0xFFFFFFFF
ANALOG_FULL_SCALE = 0x7FFF
N_DIGITAL = 8


def analog_code(volts: float) -> int:
    """The int16 code of an analog level in volts (+/-1 V full scale, vendor rounding)."""
    return round(ANALOG_FULL_SCALE * volts)


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """Which output carries what: digital channel numbers and the analog intensity codes."""

    basis_channel: int
    bit_channel: int
    clock_channel: int
    frame_channel: int
    intensity_codes: tuple[int, ...]
    off_code: int = 0

    def __post_init__(self) -> None:
        channels = self.digital_channels
        if any(not 0 <= c < N_DIGITAL for c in channels) or len(set(channels)) != len(channels):
            raise ValueError(f"digital channels must be distinct and in 0..7, got {channels}")
        if not self.intensity_codes or len(set(self.intensity_codes)) != len(self.intensity_codes):
            raise ValueError("intensity levels must be at least one and distinct after rounding")

    @property
    def digital_channels(self) -> tuple[int, int, int, int]:
        """(basis, bit, clock, frame)."""
        return (self.basis_channel, self.bit_channel, self.clock_channel, self.frame_channel)

    @classmethod
    def from_levels(
        cls,
        *,
        basis_channel: int,
        bit_channel: int,
        clock_channel: int,
        frame_channel: int,
        intensity_levels_v: Sequence[float],
        off_level_v: float = 0.0,
    ) -> ChannelMap:
        """A map with the analog levels given in volts."""
        return cls(
            basis_channel,
            bit_channel,
            clock_channel,
            frame_channel,
            tuple(analog_code(v) for v in intensity_levels_v),
            analog_code(off_level_v),
        )


def encode_steps(
    pattern: PulsePattern,
    channels: ChannelMap,
    *,
    period_ns: int,
    marker_divider: int,
    pulses_before: int = 0,
) -> npt.NDArray[np.void]:
    """The run-length encoded steps of ``pattern``.

    Clock markers fall on every ``marker_divider``-th pulse counted from the first pulse
    of the load: ``pulses_before`` pulses (earlier chunks) precede this one, so an
    appended chunk continues the marker phase. The frame marker is on its first pulse.
    """
    n = len(pattern)
    if n == 0:
        raise ValueError("a pattern of no pulses cannot be streamed")
    if marker_divider < 1 or pulses_before < 0:
        raise ValueError("marker_divider must be >= 1 and pulses_before >= 0")
    if not 1 <= period_ns <= MAX_TICKS:
        raise ValueError(f"period {period_ns} ns is outside 1..{MAX_TICKS} ns")
    codes = np.asarray(channels.intensity_codes, dtype=np.int16)
    if int(pattern.intensity.max()) >= codes.size:
        raise ValueError(
            f"pattern uses intensity class {int(pattern.intensity.max())} but only "
            f"{codes.size} levels are configured"
        )
    buffer = np.empty(n * STEP_BYTES, dtype=np.uint8)
    used = _encode(
        pattern.intensity,
        pattern.basis,
        pattern.bit,
        codes,
        channels.basis_channel,
        channels.bit_channel,
        np.uint8(1 << channels.clock_channel),
        np.uint8(1 << channels.frame_channel),
        (-pulses_before) % marker_divider,
        marker_divider,
        period_ns,
        MAX_TICKS // period_ns,
        buffer,
    )
    return buffer[: used * STEP_BYTES].view(STEP_DTYPE)


@njit(cache=True, nogil=True)
def _encode(
    intensity: npt.NDArray[np.uint8],
    basis: npt.NDArray[np.uint8],
    bit: npt.NDArray[np.uint8],
    codes: npt.NDArray[np.int16],
    basis_channel: int,
    bit_channel: int,
    clock_bit: np.uint8,
    frame_bit: np.uint8,
    first_marker: int,
    marker_divider: int,
    period_ns: int,
    max_run: int,
    out: npt.NDArray[np.uint8],
) -> int:
    """One pass: each pulse's outputs, merged with its neighbours into packed steps.

    A chunk of 1e6 pulses takes a few milliseconds (ten numpy passes took ~60 ms): at
    1 GHz a key block is 100 such chunks, all encoded while Bob waits.
    """
    n = intensity.size
    steps = 0
    run_mask = -1
    run_level = 0
    run = 0
    marker_countdown = first_marker
    for i in range(n):
        mask = (basis[i] << basis_channel) | (bit[i] << bit_channel)
        if marker_countdown == 0:
            mask |= clock_bit
            marker_countdown = marker_divider
        marker_countdown -= 1
        if i == 0:
            mask |= frame_bit
        level = codes[intensity[i]]
        # The first pulse never merges: only it carries the frame marker.
        if i == 1 or mask != run_mask or level != run_level or run == max_run:
            if run > 0:
                steps = _put_step(out, steps, run * period_ns, run_mask, run_level)
            run_mask = mask
            run_level = level
            run = 0
        run += 1
    return _put_step(out, steps, run * period_ns, run_mask, run_level)


@njit(cache=True, nogil=True, inline="always")
def _put_step(out: npt.NDArray[np.uint8], steps: int, ticks: int, mask: int, level: int) -> int:
    """Pack one ``<IBhh`` step (ao1 = 0) at index ``steps``; the next index."""
    at = steps * 9
    out[at] = ticks & 0xFF
    out[at + 1] = (ticks >> 8) & 0xFF
    out[at + 2] = (ticks >> 16) & 0xFF
    out[at + 3] = (ticks >> 24) & 0xFF
    out[at + 4] = mask
    out[at + 5] = level & 0xFF
    out[at + 6] = (level >> 8) & 0xFF
    out[at + 7] = 0
    out[at + 8] = 0
    return steps + 1


def encode_base64(steps: npt.NDArray[np.void]) -> str:
    """The ``stream`` argument: the packed steps, base64 encoded."""
    return base64.b64encode(steps.tobytes()).decode("ascii")


def output_state(digital_mask: int, ao0_code: int, ao1_code: int = 0) -> list[int]:
    """A constant/final state as the JSON-RPC methods take it: [0, mask, ao0, ao1]."""
    return [0, digital_mask, ao0_code, ao1_code]

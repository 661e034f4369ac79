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
    mask = pattern.basis << np.uint8(channels.basis_channel)
    mask |= pattern.bit << np.uint8(channels.bit_channel)
    first_marker = (-pulses_before) % marker_divider
    mask[first_marker::marker_divider] |= np.uint8(1 << channels.clock_channel)
    mask[0] |= np.uint8(1 << channels.frame_channel)
    level = codes[pattern.intensity]
    # One int32 key per pulse: equal keys on neighbours merge into one step.
    key = (mask.astype(np.int32) << 16) | level.view(np.uint16).astype(np.int32)
    starts = np.flatnonzero(key[1:] != key[:-1]) + 1
    starts = np.concatenate(([0], starts))
    runs = np.diff(np.append(starts, n)).astype(np.int64)
    max_run = MAX_TICKS // period_ns
    pieces = (runs + max_run - 1) // max_run  # a run longer than 2^32 ns is split
    if int(pieces.max()) > 1:
        starts = np.repeat(starts, pieces)
        full = np.repeat(runs, pieces)
        first = np.cumsum(pieces) - pieces
        index_in_run = np.arange(starts.size) - np.repeat(first, pieces)
        runs = np.minimum(full - index_in_run * max_run, max_run)
    steps = np.empty(starts.size, dtype=STEP_DTYPE)
    steps["ticks"] = runs * period_ns
    steps["digi"] = mask[starts]
    steps["ao0"] = level[starts]
    steps["ao1"] = 0
    return steps


def encode_base64(steps: npt.NDArray[np.void]) -> str:
    """The ``stream`` argument: the packed steps, base64 encoded."""
    return base64.b64encode(steps.tobytes()).decode("ascii")


def output_state(digital_mask: int, ao0_code: int, ao1_code: int = 0) -> list[int]:
    """A constant/final state as the JSON-RPC methods take it: [0, mask, ao0, ao1]."""
    return [0, digital_mask, ao0_code, ao1_code]

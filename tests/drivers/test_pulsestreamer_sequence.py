"""PulsePattern -> Pulse Streamer steps: exact bytes, the vendor client's own encoding of the
same steps, run-length merging, long-run splitting and the clock-marker phase."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from drivers.swabian.sequence import (
    MAX_TICKS,
    ChannelMap,
    analog_code,
    encode_base64,
    encode_steps,
)
from labctl.interfaces.pattern import PulsePattern, seeded_pattern

CHANNELS = ChannelMap.from_levels(
    basis_channel=0,
    bit_channel=1,
    clock_channel=2,
    frame_channel=3,
    intensity_levels_v=(0.8, 0.3, 0.0),
)


def pattern(intensity: list[int], basis: list[int], bit: list[int]) -> PulsePattern:
    return PulsePattern(
        np.array(intensity, np.uint8), np.array(basis, np.uint8), np.array(bit, np.uint8)
    )


def test_exact_steps_of_a_small_pattern() -> None:
    p = pattern([0, 0, 0, 1, 1, 2], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1])
    steps = encode_steps(p, CHANNELS, period_ns=10, marker_divider=4)
    expected = [
        (10, 0b1101, analog_code(0.8)),  # frame + clock + basis on pulse 0
        (20, 0b0001, analog_code(0.8)),  # pulses 1-2 merged
        (10, 0b0010, analog_code(0.3)),  # pulse 3
        (10, 0b0110, analog_code(0.3)),  # pulse 4: clock marker
        (10, 0b0010, analog_code(0.0)),  # pulse 5
    ]
    got = [(int(s["ticks"]), int(s["digi"]), int(s["ao0"])) for s in steps]
    assert got == expected
    assert all(int(s["ao1"]) == 0 for s in steps)
    raw = b"".join(struct.pack("<IBhh", t, m, a, 0) for t, m, a in expected)
    assert steps.tobytes() == raw
    assert base64.b64decode(encode_base64(steps)) == raw


def test_same_bytes_as_the_vendor_client_encoder() -> None:
    from pulsestreamer import pulse_streamer_base as base

    p = seeded_pattern(500, [0.6, 0.3, 0.1], 0.5, seed=3)
    steps = encode_steps(p, CHANNELS, period_ns=8, marker_divider=7)
    as_tuples = [(int(s["ticks"]), int(s["digi"]), int(s["ao0"]), int(s["ao1"])) for s in steps]
    # The vendor's encoder, called unbound (it needs no device): integer-mask steps.
    vendor = base.PulseStreamerBase.enc_binary(None, as_tuples)
    assert vendor == steps.tobytes()


def test_same_steps_as_the_vendor_sequence_builder() -> None:
    sequence = pytest.importorskip("pulsestreamer.sequence")
    p = seeded_pattern(300, [0.6, 0.3, 0.1], 0.5, seed=4)
    steps = encode_steps(p, CHANNELS, period_ns=5, marker_divider=9)
    clock = (np.arange(len(p)) % 9 == 0).astype(int)
    frame = (np.arange(len(p)) == 0).astype(int)
    seq = sequence.Sequence()
    for channel, levels in ((0, p.basis), (1, p.bit), (2, clock), (3, frame)):
        seq.setDigital(channel, [(5, int(v)) for v in levels])
    seq.setAnalog(0, [(5, (0.8, 0.3, 0.0)[int(k)]) for k in p.intensity])
    # The vendor merges equal neighbours the same way: identical steps, byte for byte.
    assert seq.getData(as_ndarray=True).tobytes() == steps.tobytes()


def test_markers_continue_their_phase_across_chunks() -> None:
    p = pattern([2] * 10, [0] * 10, [0] * 10)
    steps = encode_steps(p, CHANNELS, period_ns=1, marker_divider=4, pulses_before=6)
    clock = np.repeat(steps["digi"], steps["ticks"]) & 0b100
    assert list(np.flatnonzero(clock)) == [2, 6]  # pulses 8 and 12 of the load
    frame = np.repeat(steps["digi"], steps["ticks"]) & 0b1000
    assert list(np.flatnonzero(frame)) == [0]


def test_runs_longer_than_a_step_are_split() -> None:
    period_ns = 1 << 20
    n = 2 * (MAX_TICKS // period_ns) + 5  # a run of n - 1 pulses needs three steps
    p = pattern([2] * n, [0] * n, [0] * n)
    steps = encode_steps(p, CHANNELS, period_ns=period_ns, marker_divider=n)
    assert steps.size == 4
    assert int(steps["ticks"][0]) == period_ns
    assert all(int(t) <= MAX_TICKS for t in steps["ticks"])
    assert int(steps["ticks"].astype(np.int64).sum()) == n * period_ns


def test_refusals() -> None:
    with pytest.raises(ValueError, match="no pulses"):
        encode_steps(PulsePattern.empty(), CHANNELS, period_ns=1, marker_divider=1)
    with pytest.raises(ValueError, match="intensity class 5"):
        encode_steps(pattern([5], [0], [0]), CHANNELS, period_ns=1, marker_divider=1)
    with pytest.raises(ValueError, match="distinct"):
        ChannelMap.from_levels(
            basis_channel=0,
            bit_channel=0,
            clock_channel=2,
            frame_channel=3,
            intensity_levels_v=(0.8,),
        )


def _steps_oracle(p: PulsePattern, period_ns: int, divider: int, before: int) -> bytes:
    """Whole-array numpy encoding (no long runs): the oracle of the compiled encoder."""
    mask = (p.basis << 0) | (p.bit << 1)
    mask[(-before) % divider :: divider] |= 1 << 2
    mask[0] |= 1 << 3
    level = np.asarray(CHANNELS.intensity_codes, dtype=np.int16)[p.intensity]
    key = (mask.astype(np.int32) << 16) | level.view(np.uint16).astype(np.int32)
    starts = np.concatenate(([0, 1], np.flatnonzero(key[2:] != key[1:-1]) + 2))
    starts = starts[starts < len(p)]
    runs = np.diff(np.append(starts, len(p)))
    return b"".join(
        struct.pack("<IBhh", int(r) * period_ns, int(mask[s]), int(level[s]), 0)
        for s, r in zip(starts, runs, strict=True)
    )


@pytest.mark.parametrize("before", [0, 5, 999])
def test_compiled_encoder_matches_the_numpy_oracle(before: int) -> None:
    p = seeded_pattern(20_000, [0.97, 0.02, 0.01], 0.98, seed=before)
    steps = encode_steps(p, CHANNELS, period_ns=3, marker_divider=1000, pulses_before=before)
    assert steps.tobytes() == _steps_oracle(p, 3, 1000, before)

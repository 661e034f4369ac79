"""Sifting matches a slow per-detection reference and survives its wire format."""

import numpy as np
import pytest

from labctl.qkd.errors import MessageFormatError
from labctl.qkd.sifting import (
    BasisAnnouncement,
    Detections,
    SiftReply,
    announce,
    answer,
    sift_alice,
    sift_bob,
)


def test_sifting_matches_slow_reference_over_the_wire() -> None:
    rng = np.random.default_rng(5)
    pulses = 5000
    a_basis = rng.integers(0, 2, pulses, dtype=np.uint8)
    a_bit = rng.integers(0, 2, pulses, dtype=np.uint8)
    a_int = rng.integers(0, 3, pulses, dtype=np.uint8)
    idx = np.sort(rng.choice(pulses, 800, replace=False))
    det = Detections.create(idx, rng.integers(0, 2, 800), rng.integers(0, 2, 800))
    ann = BasisAnnouncement.from_bytes(announce(det).to_bytes())
    reply = SiftReply.from_bytes(
        answer(ann, a_basis[ann.pulse_index], a_int[ann.pulse_index]).to_bytes()
    )
    alice = sift_alice(ann, reply, a_bit[ann.pulse_index])
    bob = sift_bob(det, reply)
    ref = [
        (int(i), int(b), int(a_int[i]))
        for i, b in zip(idx, det.basis, strict=True)
        if a_basis[i] == b
    ]
    assert [
        (int(i), int(b), int(k))
        for i, b, k in zip(alice.pulse_index, alice.basis, alice.intensity, strict=True)
    ] == ref
    assert np.array_equal(bob.pulse_index, alice.pulse_index)
    assert np.array_equal(alice.bits.bits, a_bit[alice.pulse_index])
    counts = alice.counts(3)
    for k in range(3):
        for b in range(2):
            assert counts[k, b] == sum(1 for _, bb, kk in ref if bb == b and kk == k)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Detections.create([3, 3], [0, 1], [1, 1])
    with pytest.raises(MessageFormatError, match="BasisAnnouncement"):
        BasisAnnouncement.from_bytes(b"SA1" + b"\x05" + b"\x00" * 7)
    with pytest.raises(MessageFormatError, match="wrong message type"):
        SiftReply.from_bytes(announce(Detections.create([1], [0], [1])).to_bytes())


def test_reprs_hide_bits() -> None:
    det = Detections.create([1, 2], [0, 1], [1, 0])
    reply = answer(
        announce(det), np.array([0, 1], dtype=np.uint8), np.array([0, 0], dtype=np.uint8)
    )
    key = sift_bob(det, reply)
    assert "n=2" in repr(key) and "[" not in repr(key)

"""Sifting matches a slow per-detection reference and survives its wire format."""

import numpy as np
import pytest

from labctl.qkd import sifting
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


@pytest.mark.parametrize("max_gap", [1, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**40])
def test_announcement_round_trips_every_gap_width(
    max_gap: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sifting, "_GAP_CHUNK", 64)  # gaps computed over several chunks
    rng = np.random.default_rng(max_gap % 1000)
    gaps = rng.integers(1, min(max_gap, 1000) + 1, 300)
    gaps[137] = max_gap  # the largest gap decides the width
    idx = 12_345 + np.cumsum(gaps)
    det = Detections.create(idx, rng.integers(0, 2, 300), rng.integers(0, 2, 300))
    data = announce(det).to_bytes()
    width = 1 if max_gap < 2**8 else 2 if max_gap < 2**16 else 4 if max_gap < 2**32 else 8
    stored = 300 if width == 8 else 299
    assert len(data) == 20 + width * stored + (300 + 7) // 8
    back = BasisAnnouncement.from_bytes(data)
    assert np.array_equal(back.pulse_index, det.pulse_index)
    assert np.array_equal(back.basis, det.basis)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_announcements_round_trip(n: int) -> None:
    det = Detections.create(np.arange(n) * 7 + 5, np.ones(n, np.uint8), np.zeros(n, np.uint8))
    back = BasisAnnouncement.from_bytes(announce(det).to_bytes())
    assert np.array_equal(back.pulse_index, det.pulse_index) and len(back) == n


def test_tampered_announcement_is_rejected() -> None:
    det = Detections.create([10, 11, 30], [0, 1, 1], [1, 0, 1])
    data = bytearray(announce(det).to_bytes())
    assert data[11] == 1  # one byte per gap
    repeated = bytes(data[:20]) + b"\x00" + bytes(data[21:])
    with pytest.raises(MessageFormatError, match="strictly increasing"):
        BasisAnnouncement.from_bytes(repeated)
    negative = bytes(data[:12]) + (-5).to_bytes(8, "little", signed=True) + bytes(data[20:])
    with pytest.raises(MessageFormatError, match="negative pulse index"):
        BasisAnnouncement.from_bytes(negative)
    with pytest.raises(MessageFormatError, match="bad index width"):
        BasisAnnouncement.from_bytes(bytes(data[:11]) + b"\x03" + bytes(data[12:]))
    with pytest.raises(MessageFormatError, match="expected"):
        BasisAnnouncement.from_bytes(bytes(data) + b"\x00")


def test_select_equals_boolean_mask_and_checks_shape() -> None:
    rng = np.random.default_rng(3)
    det = Detections.create(np.arange(1000) * 3, rng.integers(0, 2, 1000), rng.integers(0, 2, 1000))
    reply = answer(announce(det), rng.integers(0, 2, 1000), rng.integers(0, 3, 1000))
    key = sift_bob(det, reply)
    mask = key.basis == 1
    sub = key.select(mask)
    assert np.array_equal(sub.pulse_index, key.pulse_index[mask])
    assert np.array_equal(sub.bits.bits, key.bits.bits[mask])
    assert np.array_equal(sub.intensity, key.intensity[mask])
    with pytest.raises(ValueError, match="mask shape"):
        key.select(mask[:-1])

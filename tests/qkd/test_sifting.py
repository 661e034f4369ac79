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
    class_counts,
    sift_alice,
    sift_bob,
    split_bob,
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
    plain = width * (300 if width == 8 else 299)
    escaped = 299 + 8 * int(np.count_nonzero(gaps[1:] > 255))  # bytes, then the large gaps
    assert data[11] == (width if plain <= escaped else 0)
    assert len(data) == 20 + min(plain, escaped) + (300 + 7) // 8
    back = BasisAnnouncement.from_bytes(data)
    assert np.array_equal(back.pulse_index, det.pulse_index)
    assert np.array_equal(back.basis, det.basis)


def test_a_few_large_gaps_are_escaped_and_the_rest_sent_as_bytes() -> None:
    rng = np.random.default_rng(8)
    gaps = rng.integers(1, 60, 100_000)
    gaps[[10, 5_000, 99_998]] = [256, 3_000_000_000, 2**40]  # a dark stretch, two underruns
    idx = 7 + np.cumsum(gaps)
    det = Detections.create(idx, rng.integers(0, 2, idx.size), rng.integers(0, 2, idx.size))
    data = announce(det).to_bytes()
    assert data[11] == 0
    assert len(data) == 20 + 99_999 + 3 * 8 + (100_000 + 7) // 8
    back = BasisAnnouncement.from_bytes(data)
    assert np.array_equal(back.pulse_index, idx)
    assert np.array_equal(back.basis, det.basis)
    escaped_at = 20 + 99_999  # the three large gaps, as int64
    for bad, why in ((0, "out of range"), (2**62, "out of range"), (2**61, "would pass")):
        tampered = bytearray(data)
        tampered[escaped_at + 8 : escaped_at + 16] = bad.to_bytes(8, "little")
        if bad == 2**61:
            tampered[escaped_at + 16 : escaped_at + 24] = bad.to_bytes(8, "little")
        with pytest.raises(MessageFormatError, match=why):
            BasisAnnouncement.from_bytes(bytes(tampered))
    with pytest.raises(MessageFormatError, match="expected"):
        BasisAnnouncement.from_bytes(data[:-1])  # one escaped gap short of its bytes


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


@pytest.mark.parametrize("key_basis", [0, 1])
def test_split_bob_gives_sift_bobs_bits_per_basis(key_basis: int) -> None:
    rng = np.random.default_rng(11 + key_basis)
    n = 2000
    det = Detections.create(np.arange(n) * 5 + 2, rng.integers(0, 2, n), rng.integers(0, 2, n))
    reply = answer(announce(det), rng.integers(0, 2, n), rng.integers(0, 3, n))
    sifted = sift_bob(det, reply)
    in_key = sifted.basis == key_basis
    key, test = split_bob(det.basis, det.bit, reply, key_basis)
    assert np.array_equal(key.bits, sifted.bits.bits[in_key])
    assert np.array_equal(test.bits, sifted.bits.bits[~in_key])
    assert len(key) + len(test) == len(sifted) > 0 and len(key) > 0 and len(test) > 0
    with pytest.raises(ValueError, match="split_bob: arrays differ in length"):
        split_bob(det.basis[:-1], det.bit[:-1], reply, key_basis)


@pytest.mark.parametrize(
    "values",
    [[], [255, 255], [0, 1, 2, 2, 255, 1, 0, 0], [2, 2, 255], [3, 0, 255, 3, 1]],
)
def test_class_counts_equal_bincount_of_the_sent(values: list[int]) -> None:
    intensity = np.array(values, dtype=np.uint8)
    sent = intensity[intensity != 255]
    assert class_counts(intensity, skip=255) == tuple(int(c) for c in np.bincount(sent))

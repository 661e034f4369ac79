"""Alice's pulse patterns: validation, secrecy of their repr, and the draw's statistics."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from labctl.interfaces import pattern as pattern_module
from labctl.interfaces.pattern import (
    U8,
    PulsePattern,
    draw_chunks,
    draw_pattern,
    secret_chunks,
    secret_pattern,
    seeded_pattern,
)

PROBS = (0.8, 0.15, 0.05)


def test_a_pattern_checks_its_arrays_and_never_prints_its_states() -> None:
    z = np.zeros(3, dtype=np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        PulsePattern(z.astype(np.int64), z, z)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ in length"):
        PulsePattern(z, z[:2], z)
    with pytest.raises(ValueError, match="0 or 1"):
        PulsePattern(z, z + 2, z)
    pattern = PulsePattern(np.array([2, 0, 1], np.uint8), np.array([1, 0, 1], np.uint8), z)
    assert repr(pattern) == "PulsePattern(3 pulses)" and str(pattern) == repr(pattern)
    assert len(pattern.slice(1, 3)) == 2 and pattern.take(np.array([2])).intensity[0] == 1
    assert len(PulsePattern.concatenate([pattern, pattern])) == 6


@pytest.mark.parametrize("draw", ["secret", "seeded"])
def test_class_basis_and_bit_frequencies_follow_the_design(draw: str) -> None:
    n = 2_000_000
    if draw == "secret":
        pattern = secret_pattern(n, PROBS, 0.7)
    else:
        pattern = seeded_pattern(n, PROBS, 0.7, seed=5)
    counts = np.bincount(pattern.intensity, minlength=3)
    for k, p in enumerate(PROBS):  # binomial: 5 sigma
        assert abs(counts[k] - n * p) < 5 * math.sqrt(n * p * (1 - p))
    z = int((pattern.basis == 0).sum())
    assert abs(z - n * 0.7) < 5 * math.sqrt(n * 0.21)
    assert abs(int(pattern.bit.sum()) - n / 2) < 5 * math.sqrt(n / 4)


def test_secret_patterns_differ_and_seeded_ones_repeat() -> None:
    a, b = secret_pattern(4096, PROBS, 0.5), secret_pattern(4096, PROBS, 0.5)
    assert not np.array_equal(a.bit, b.bit)
    c, d = seeded_pattern(4096, PROBS, 0.5, 9), seeded_pattern(4096, PROBS, 0.5, 9)
    assert np.array_equal(c.intensity, d.intensity) and np.array_equal(c.bit, d.bit)
    assert seeded_pattern(100, PROBS, 1.0, 1).basis.max() == 0  # always Z
    with pytest.raises(ValueError, match="sum to 1"):
        secret_pattern(10, (0.5, 0.4), 0.5)


def _seeded_bytes(seed: int) -> Callable[[int], U8]:
    rng = np.random.default_rng(seed)
    return lambda n: np.frombuffer(rng.bytes(n), dtype=np.uint8)


UNIT = pattern_module._CHUNK_PULSES  # pulses per draw of random bytes


@pytest.mark.parametrize("chunk", [1_000_003, UNIT, UNIT + 7, 3 * UNIT, 10**9])
def test_chunks_drawn_one_at_a_time_are_the_whole_pattern_cut(chunk: int) -> None:
    n = 2 * UNIT + 12_345  # three draws, the last one partial
    whole = draw_pattern(n, PROBS, 0.6, _seeded_bytes(3))
    chunks = list(draw_chunks(n, chunk, PROBS, 0.6, _seeded_bytes(3)))
    assert [len(c) for c in chunks] == [min(chunk, n - i) for i in range(0, n, chunk)]
    joined = PulsePattern.concatenate(chunks)
    for name in ("intensity", "basis", "bit"):
        assert np.array_equal(getattr(joined, name), getattr(whole, name)), name


def test_secret_chunks_are_drawn_lazily_from_one_fresh_stream() -> None:
    taken = secret_chunks(3 * UNIT, UNIT // 2, PROBS, 0.5)
    first, second = next(taken), next(taken)
    assert len(first) == len(second) == UNIT // 2
    assert not np.array_equal(first.bit, second.bit)
    assert list(draw_chunks(0, 5, PROBS, 0.5, _seeded_bytes(1))) == []
    with pytest.raises(ValueError, match="chunk_pulses"):
        next(draw_chunks(10, 0, PROBS, 0.5, _seeded_bytes(1)))


def test_the_key_stream_is_aes_ctr_of_zeros_however_it_is_requested() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from labctl.interfaces.pattern import _KeyStream

    key, nonce = bytes(range(32)), bytes(range(16))
    stream = _KeyStream()
    stream._encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    sizes = (5_000_003, 17, 0, 3 << 21)  # across the reused buffer's size and not aligned
    got = b"".join(stream(n).tobytes() for n in sizes)
    expected = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor().update(bytes(sum(sizes)))
    assert got == expected

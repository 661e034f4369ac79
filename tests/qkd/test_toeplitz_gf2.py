"""The carry-less (GF(2)) Toeplitz product equals the direct product and the FFT paths."""

import numpy as np
import pytest

from labctl.qkd import privacy
from labctl.qkd.privacy import privacy_amplify, toeplitz_hash, toeplitz_hash_direct
from labctl.qkd.secret import SecretBits
from labctl.qkd.toeplitz_gf2 import AVAILABLE, WIDE, choose_tile, toeplitz_gf2

needs_gf2 = pytest.mark.skipif(not AVAILABLE, reason="needs numba and a CPU with PCLMULQDQ")


def _case(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, n + m - 1, dtype=np.uint8), rng.integers(0, 2, n, dtype=np.uint8)


@needs_gf2
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize(
    ("n", "m"),
    [(1, 1), (2, 1), (63, 2), (64, 64), (65, 1), (100, 37), (1000, 999), (3001, 2500),
     (5000, 5000), (20_000, 700), (700, 20_000), (64 * 130, 64 * 97 + 5)],
)  # fmt: skip
def test_gf2_product_equals_direct_product(n: int, m: int, scalar: bool) -> None:
    s, x = _case(n, m, 11 * n + m)
    assert np.array_equal(toeplitz_gf2(s, x, m, scalar=scalar), toeplitz_hash_direct(s, x, m))


@needs_gf2
def test_all_ones_and_single_bits_hit_every_word_boundary() -> None:
    n, m = 300, 200
    s = np.ones(n + m - 1, dtype=np.uint8)
    x = np.ones(n, dtype=np.uint8)
    assert np.array_equal(toeplitz_gf2(s, x, m), np.zeros(m, np.uint8))  # n = 300 is even
    for j in (0, 63, 64, 127, 299):
        e = np.zeros(n, dtype=np.uint8)
        e[j] = 1
        s2, _ = _case(n, m, j)
        # T e_j is column j of T: seed bits s[n - 1 - j : n - 1 - j + m].
        assert np.array_equal(toeplitz_gf2(s2, e, m), s2[n - 1 - j : n - 1 - j + m])


@needs_gf2
@pytest.mark.parametrize(("n", "m"), [(1_000_000, 500_000), (1_000_003, 30_000)])
def test_gf2_equals_fft_on_privacy_amplification_sizes(n: int, m: int) -> None:
    rng = np.random.default_rng(n)
    key = SecretBits(rng.integers(0, 2, n, dtype=np.uint8))
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    fast = privacy_amplify(key, m, seed, method="gf2")
    assert fast == privacy_amplify(key, m, seed, method="fft")
    assert fast == privacy_amplify(key, m, seed)  # auto
    tail = key.bits[m:]
    scalar = toeplitz_gf2(seed[: n - 1], tail, m, scalar=True)
    assert np.array_equal(scalar ^ key.bits[:m], fast.bits)


@pytest.mark.parametrize(
    ("rows", "cols"), [(1, 1), (9, 400), (7814, 7813), (400, 9), (78127, 78125)]
)
@pytest.mark.parametrize("wide", [True, False])
def test_tiles_are_karatsuba_sizes_and_cover_the_matrix(rows: int, cols: int, wide: bool) -> None:
    size, base = choose_tile(rows, cols, wide)
    levels = size // base
    assert size == base * levels and levels & (levels - 1) == 0
    if wide:
        assert base % 8 == 0
    tiles = -(-rows // size) * -(-cols // size)
    assert tiles * size * size >= rows * cols
    if rows == 7814:  # a square problem is one tile padded by less than 1/base ... + rounding
        assert tiles == 1 and size < 7814 * 1.1


def test_auto_method_uses_gf2_where_available_and_fft_when_a_backend_is_named() -> None:
    assert privacy.DEFAULT_METHOD == ("gf2" if AVAILABLE else "fft")
    assert privacy._resolve("auto", None) == privacy.DEFAULT_METHOD
    assert privacy._resolve("auto", "numpy") == "fft"
    if not AVAILABLE:
        with pytest.raises(ValueError, match="PCLMULQDQ"):
            toeplitz_hash(np.ones(3, np.uint8), np.ones(2, np.uint8), 2, method="gf2")
    assert isinstance(WIDE, bool)

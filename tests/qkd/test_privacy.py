"""Toeplitz FFT hashing equals the direct matrix product, also in its chunked form."""

import numpy as np
import pytest

from labctl.qkd.privacy import (
    convolution_error_bound,
    privacy_amplify,
    toeplitz_hash,
    toeplitz_hash_direct,
)
from labctl.qkd.secret import SecretBits


@pytest.mark.parametrize(("n", "m"), [(1, 1), (17, 5), (1000, 999), (4096, 300), (3001, 2500)])
def test_fft_hash_equals_direct_product(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 31 + m)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    direct = toeplitz_hash_direct(s, x, m)
    assert np.array_equal(toeplitz_hash(s, x, m), direct)
    assert np.array_equal(toeplitz_hash(s, x, m, max_chunk_bits=97), direct)


def test_direct_reference_is_the_toeplitz_definition() -> None:
    rng = np.random.default_rng(1)
    n, m = 40, 13
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    t = np.array([[s[i - j + n - 1] for j in range(n)] for i in range(m)])
    assert np.array_equal(toeplitz_hash_direct(s, x, m), (t @ x) % 2)


def test_privacy_amplify_is_identity_plus_toeplitz() -> None:
    rng = np.random.default_rng(2)
    n, m = 2000, 700
    x = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    out = privacy_amplify(SecretBits(x), m, seed)
    expected = x[:m] ^ toeplitz_hash_direct(seed[: n - 1], x[m:], m)
    assert len(out) == m and np.array_equal(out.bits, expected)
    with pytest.raises(ValueError, match="seed must have"):
        privacy_amplify(SecretBits(x), m, seed[:-1])


def test_error_bound_is_far_below_half_for_ten_million_bits() -> None:
    assert convolution_error_bound(5_000_000, 5_000_000, 16_000_000) < 1e-5

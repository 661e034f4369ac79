"""Toeplitz FFT hashing equals the direct matrix product, also in its chunked form."""

import numpy as np
import pytest

from labctl.qkd.errors import QkdError
from labctl.qkd.privacy.amplify import (
    FFT_BACKEND,
    _parity_of_rounded,
    convolution_error_bound,
    privacy_amplify,
    toeplitz_hash,
    toeplitz_hash_direct,
)
from labctl.qkd.privacy.fft_convolution import BACKENDS
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


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize(("n", "m"), [(1, 1), (999, 1), (3000, 1500), (20_000, 7_000)])
def test_every_fft_backend_equals_the_direct_product(backend: str, n: int, m: int) -> None:
    rng = np.random.default_rng(n + 7 * m)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    direct = toeplitz_hash_direct(s, x, m) if n * m <= 3000 * 1500 else None
    got = toeplitz_hash(s, x, m, fft_backend=backend)
    if direct is not None:
        assert np.array_equal(got, direct)
    assert np.array_equal(got, toeplitz_hash(s, x, m, fft_backend="numpy"))


def test_fftw_and_numpy_agree_on_a_million_bit_privacy_amplification() -> None:
    if "fftw" not in BACKENDS:
        pytest.skip("pyfftw is not installed: numpy is the only backend")
    rng = np.random.default_rng(8)
    n, m = 1_000_000, 400_000
    key = SecretBits(rng.integers(0, 2, n, dtype=np.uint8))
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    fast = privacy_amplify(key, m, seed, fft_backend="fftw")
    # The same plan serves a second length in between (cached plans stay correct).
    assert len(privacy_amplify(key, m // 2, seed[: n - 1], fft_backend="fftw")) == m // 2
    assert fast == privacy_amplify(key, m, seed, fft_backend="numpy")
    assert fast == privacy_amplify(key, m, seed, fft_backend="fftw")


def test_default_backend_is_fftw_when_installed_and_unknown_names_are_refused() -> None:
    assert FFT_BACKEND == ("fftw" if "fftw" in BACKENDS else "numpy")
    with pytest.raises(ValueError, match="FFT backend 'cufft' is not available"):
        toeplitz_hash(np.ones(3, np.uint8), np.ones(2, np.uint8), 2, fft_backend="cufft")


def test_a_value_off_an_integer_is_refused_not_rounded() -> None:
    with pytest.raises(QkdError, match="rounding error"):
        _parity_of_rounded(np.array([3.0, 4.4]), 10, 2)
    assert _parity_of_rounded(np.array([3.1, 4.0, 1e6 - 0.2]), 10, 3).tolist() == [1, 0, 0]

"""Block Toeplitz products equal the direct matrix product, with and without numba."""

import numpy as np
import pytest

import labctl.qkd.privacy.amplify as privacy
import labctl.qkd.privacy.toeplitz_blocks as blocks
from labctl.qkd.errors import QkdError
from labctl.qkd.privacy.amplify import privacy_amplify, toeplitz_hash, toeplitz_hash_direct
from labctl.qkd.privacy.fft_convolution import BACKENDS
from labctl.qkd.secret import SecretBits


def _parity(values: np.ndarray) -> np.ndarray:
    assert float(np.max(np.abs(values - np.round(values)))) < 0.01
    return (np.round(values).astype(np.int64) & 1).astype(np.uint8)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("backend_name", sorted(BACKENDS))
@pytest.mark.parametrize(
    ("n", "m", "b"), [(1000, 300, 64), (777, 1500, 128), (4096, 100, 256), (2000, 2000, 1024)]
)
def test_block_product_equals_direct_product(
    n: int, m: int, b: int, backend_name: str, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(blocks, "_KERNELS", None)
    rng = np.random.default_rng(n + m + b)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    got = blocks.block_product(s, x, m, b, BACKENDS[backend_name])
    assert got.shape == (m,)
    assert np.array_equal(_parity(got), toeplitz_hash_direct(s, x, m))


def test_hash_methods_agree() -> None:
    rng = np.random.default_rng(5)
    n, m = 3000, 2100
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    direct = toeplitz_hash_direct(s, x, m)
    for method in ("fft", "blocks"):
        assert np.array_equal(toeplitz_hash(s, x, m, method=method), direct)
    with pytest.raises(ValueError, match="method must be one of"):
        toeplitz_hash(s, x, m, method="karatsuba")


def test_privacy_amplify_block_method_equals_fft_method() -> None:
    rng = np.random.default_rng(6)
    n, secret = 300_000, 9_000  # keygen-like: a few % of the key survives
    key = SecretBits(rng.integers(0, 2, n, dtype=np.uint8))
    seed = rng.integers(0, 2, n - 1, dtype=np.uint8)
    one_fft = privacy_amplify(key, secret, seed)
    assert one_fft == privacy_amplify(key, secret, seed, method="blocks")
    assert one_fft == privacy_amplify(key, secret, seed, method="blocks", fft_backend="numpy")


@pytest.mark.parametrize("compiled", [True, False])
def test_rounding_pass_keeps_parity_and_refuses_far_values(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not compiled:
        monkeypatch.setattr(privacy, "ROUNDING_KERNEL", None)
    values = np.array([3.1, 4.0, 1e6 - 0.2, 7.24, 2**40 + 1.0, -0.1])
    assert privacy._parity_of_rounded(values, 10, 6).tolist() == [1, 0, 0, 1, 1, 0]
    with pytest.raises(QkdError, match="rounding error"):
        privacy._parity_of_rounded(np.array([3.0, 4.4]), 10, 2)
    with pytest.raises(QkdError, match="rounding error"):
        privacy._parity_of_rounded(np.array([3.0, np.nan]), 10, 2)

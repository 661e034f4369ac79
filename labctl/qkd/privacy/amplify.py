"""Privacy amplification by Toeplitz hashing, computed exactly with real FFTs.

A Toeplitz matrix T (m x n, T[i, j] = s[i - j + n - 1], seed s of n + m - 1 bits) is a
two-universal hash family over GF(2) (Krawczyk, CRYPTO 1994): for a fixed nonzero v,
T v is uniform over {0,1}^m. By the leftover hash lemma, hashing a key about which Eve
knows little down to the secret length l removes her information.

T x is the window [n-1, n+m-1) of the linear convolution s * x, reduced mod 2. The
convolution of 0/1 vectors has integer entries <= n, so a float64 FFT gives it exactly
after rounding as long as the rounding error stays below 1/2. The error is bounded with
Percival's FFT-multiplication analysis (Math. Comp. 72 (2003) 387): |err| <= ||a||_2
||b||_2 * c * u * log2 L; when the bound is not below 1/4 the product is split into
column chunks (each a smaller exact Toeplitz product, XORed together), and every result
is also checked to lie within 1/4 of an integer, so a wrong key can never come out
silently.

:func:`privacy_amplify` uses the modified Toeplitz family [I_m | T'] of Hayashi and
Tsurumaru, IEEE Trans. Inf. Theory 62, 2213 (2016): y = x[:m] XOR T' x[m:], T' of size
m x (n - m) with an (n - 1)-bit seed. It is still two-universal (if the tails differ,
T'(difference) is uniform; if only the heads differ the outputs differ) and needs an FFT
of length about n instead of n + m.

The default method ("auto") computes the same product exactly over GF(2) with carry-less
multiplication (:mod:`labctl.qkd.privacy.toeplitz_gf2`) where numba and PCLMULQDQ are present:
faster than the FFT (several times with AVX-512 VPCLMULQDQ; figures in benchmarks/README.md)
and no rounding to check. With scalar PCLMULQDQ only it wins up to n ~ 2e7 (m = n/2) and
loses beyond, where "auto" takes the FFT. The FFT
methods stay as the portable fallback and as an independent cross-check in the tests.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from labctl.qkd.errors import QkdError
from labctl.qkd.privacy.fft_convolution import ConvolutionBackend, backend
from labctl.qkd.privacy.toeplitz_blocks import BLOCK_BITS, ROUNDING_KERNEL, block_product
from labctl.qkd.privacy.toeplitz_gf2 import AVAILABLE as GF2_AVAILABLE
from labctl.qkd.privacy.toeplitz_gf2 import faster_than_fft, toeplitz_gf2
from labctl.qkd.secret import Bits, SecretBits, as_bits

_UNIT_ROUNDOFF = 2.0**-53
_PERCIVAL_CONSTANT = 20.0
"""c in the error bound: 3(1 + sqrt 5 + beta/u) with twiddle error beta <= 2u, rounded up."""
_MAX_ERROR = 0.25
_ROUNDING_MAGIC = 1.5 * 2.0**52
"""Adding it rounds a float64 |v| < 2^51 to an integer held in the low mantissa bits."""

FFT_BACKEND = backend(None).name
"""Backend used when none is named: "fftw" when pyfftw is installed, else "numpy"."""


def _fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (sizes every FFT library handles fast)."""
    best = 1 << max(n - 1, 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def convolution_error_bound(ones_a: int, ones_b: int, fft_length: int) -> float:
    """Upper bound on the float64 FFT error of convolving 0/1 vectors with these popcounts."""
    return (
        math.sqrt(ones_a)
        * math.sqrt(ones_b)
        * _PERCIVAL_CONSTANT
        * _UNIT_ROUNDOFF
        * max(math.log2(max(fft_length, 2)), 1.0)
    )


def _check_seed(seed: Bits, n: int, m: int) -> None:
    if seed.size != n + m - 1:
        raise ValueError(f"Toeplitz seed must have n + m - 1 = {n + m - 1} bits, got {seed.size}")


def toeplitz_hash_direct(seed: npt.ArrayLike, key: npt.ArrayLike, m: int) -> Bits:
    """Reference O(n m) product T x mod 2 (T[i, j] = seed[i - j + n - 1]); small inputs only."""
    x = as_bits(key, what="toeplitz_hash_direct: key")
    s = as_bits(seed, what="toeplitz_hash_direct: seed")
    n = x.size
    _check_seed(s, n, m)
    if m == 0 or n == 0:
        return np.zeros(m, dtype=np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(s, n)[:m]
    return ((windows.astype(np.int64) @ x[::-1].astype(np.int64)) & 1).astype(np.uint8)


def _parity_of_rounded(conv: npt.NDArray[np.float64], n: int, m: int) -> Bits:
    """Round to integers (refusing if any value is not within 1/4 of one) and keep parity."""
    if ROUNDING_KERNEL is not None:  # one pass instead of five
        parity = np.empty(conv.size, dtype=np.uint8)
        worst = float(ROUNDING_KERNEL(conv, parity)) if m else 0.0
        _check_rounding(worst, n, m)
        return parity
    shifted = conv + _ROUNDING_MAGIC
    parity = (shifted.view(np.int64) & 1).astype(np.uint8)
    shifted -= _ROUNDING_MAGIC
    shifted -= conv
    _check_rounding(max(float(shifted.max()), -float(shifted.min())) if m else 0.0, n, m)
    return parity


def _check_rounding(worst: float, n: int, m: int) -> None:
    if not worst <= _MAX_ERROR:  # NaN fails too
        raise QkdError(
            f"Toeplitz FFT rounding error {worst:.3f} exceeds {_MAX_ERROR} (n={n}, m={m}); "
            "refusing to output a possibly wrong hash"
        )


METHODS = ("auto", "gf2", "fft", "blocks")
"""Product methods: "gf2" (carry-less multiplication, needs numba + PCLMULQDQ), one big
"fft", or cache-sized FFT "blocks"; "auto" is gf2 where available unless an FFT backend is
named (naming one asks for the FFT), else fft; with the scalar PCLMULQDQ kernels (no
AVX-512) "auto" also takes the FFT for products the cost model says it does faster
(:func:`labctl.qkd.privacy.toeplitz_gf2.faster_than_fft`: from about n = 2e7 at m = n/2). All are
exact and give the same bits."""
DEFAULT_METHOD = "gf2" if GF2_AVAILABLE else "fft"
"""What "auto" runs in this process when no FFT backend is named (up to that crossover)."""


def _resolve(method: str, fft_backend: str | None) -> str:
    if method not in METHODS:
        raise ValueError(f"toeplitz product method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        return "fft" if fft_backend is not None else DEFAULT_METHOD
    if method == "gf2" and not GF2_AVAILABLE:
        raise ValueError("toeplitz method 'gf2' needs numba and a CPU with PCLMULQDQ")
    return method


def _product(
    seed: Bits, x: Bits, m: int, method: str, fft_backend: str | None, max_chunk_bits: int | None
) -> Bits:
    """T x mod 2 by the resolved method (inputs already checked)."""
    chosen = _resolve(method, fft_backend)
    if chosen == "gf2" and method == "auto" and not faster_than_fft(x.size, m):
        chosen = "fft"  # scalar PCLMULQDQ only (no AVX-512), past its crossover (~2e7 bits)
    if chosen == "gf2" and max_chunk_bits is None:
        return toeplitz_gf2(seed, x, m)
    fft_method = "fft" if chosen == "gf2" else chosen  # explicit chunking is an FFT knob
    return _toeplitz_fft(seed, x, m, max_chunk_bits, backend(fft_backend), fft_method)


def _toeplitz_fft(
    seed: Bits,
    x: Bits,
    m: int,
    max_chunk_bits: int | None,
    fft: ConvolutionBackend,
    method: str = "fft",
) -> Bits:
    n = x.size
    if n == 0 or m == 0:
        return np.zeros(m, dtype=np.uint8)
    if method == "blocks" and max_chunk_bits is None:
        block = BLOCK_BITS
        ones_s, ones_x = int(np.count_nonzero(seed)), int(np.count_nonzero(x))
        # Per output entry the block sums are one 2b-point product per column block; by
        # Cauchy-Schwarz their summed Percival bounds stay below the whole vectors' bound.
        if convolution_error_bound(ones_s, ones_x, 2 * block) < _MAX_ERROR:
            return _parity_of_rounded(block_product(seed, x, m, block, fft), n, m)
    # A cyclic convolution of seed-length points already holds the window [n-1, n-1+m)
    # unaliased: the linear convolution's tail wraps only onto indices below n - 1.
    length = _fast_length(n + m - 1)
    bound = convolution_error_bound(int(np.count_nonzero(seed)), int(np.count_nonzero(x)), length)
    chunk = n if max_chunk_bits is None else max(1, min(n, max_chunk_bits))
    if bound >= _MAX_ERROR and chunk == n:
        # Halve the column count until each chunk's bound is safe (bound ~ sqrt(n)).
        while chunk > 1 and bound * math.sqrt(chunk / n) >= _MAX_ERROR:
            chunk //= 2
    if chunk < n:
        out = np.zeros(m, dtype=np.uint8)
        for j0 in range(0, n, chunk):
            j1 = min(j0 + chunk, n)
            sub_seed = seed[n - j1 : n - j0 + m - 1]
            out ^= _toeplitz_fft(sub_seed, x[j0:j1], m, None, fft, "fft")
        return out
    return _parity_of_rounded(fft.window(seed, x, length, n - 1, m), n, m)


def toeplitz_hash(
    seed: npt.ArrayLike,
    key: npt.ArrayLike,
    m: int,
    *,
    max_chunk_bits: int | None = None,
    fft_backend: str | None = None,
    method: str = "auto",
) -> Bits:
    """T x mod 2 for the m x n Toeplitz matrix of ``seed`` (n + m - 1 bits), exact.

    ``method``: see :data:`METHODS` ("fft": one transform of ~n + m points; "blocks":
    cache-sized Toeplitz blocks, :mod:`labctl.qkd.privacy.toeplitz_blocks`; "gf2": carry-less).
    ``max_chunk_bits`` splits the FFT product into column chunks (an FFT-only knob).
    """
    if m < 0:
        raise ValueError(f"toeplitz_hash: output length must be >= 0, got {m}")
    x = as_bits(key, what="toeplitz_hash: key")
    s = as_bits(seed, what="toeplitz_hash: seed")
    _check_seed(s, x.size, m)
    return _product(s, x, m, method, fft_backend, max_chunk_bits)


def seed_length(n_bits: int, secret_bits: int) -> int:
    """Seed bits :func:`privacy_amplify` needs for an n-bit key hashed to secret_bits."""
    if not 0 <= secret_bits <= n_bits:
        raise ValueError(f"secret_bits must be in [0, {n_bits}], got {secret_bits}")
    return max(n_bits - 1, 0)


def privacy_amplify(
    key: SecretBits,
    secret_bits: int,
    seed: npt.ArrayLike,
    *,
    fft_backend: str | None = None,
    method: str = "auto",
) -> SecretBits:
    """Hash a reconciled key to secret_bits with the modified Toeplitz family [I | T']."""
    n = len(key)
    need = seed_length(n, secret_bits)
    s = as_bits(seed, what="privacy_amplify: seed")
    if s.size != need:
        raise ValueError(f"privacy_amplify: seed must have {need} bits for n={n}, got {s.size}")
    if secret_bits == 0:
        return SecretBits(np.zeros(0, dtype=np.uint8))
    x = key.bits
    head = x[:secret_bits]
    tail = x[secret_bits:]
    if tail.size == 0:
        return SecretBits(head)
    # T' is secret_bits x (n - secret_bits): its seed is the first n - 1 seed bits.
    mixed = _product(s[: tail.size + secret_bits - 1], tail, secret_bits, method, fft_backend, None)
    mixed ^= head
    return SecretBits.adopt(mixed)


def random_seed(n_bits: int, rng: np.random.Generator | None = None) -> Bits:
    """Fresh uniformly random seed bits (from ``secrets``-grade entropy when rng is None)."""
    if n_bits < 0:
        raise ValueError(f"random_seed: n_bits must be >= 0, got {n_bits}")
    if rng is None:
        import secrets

        raw = secrets.token_bytes((n_bits + 7) // 8)
        return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n_bits)
    return rng.integers(0, 2, n_bits, dtype=np.uint8)

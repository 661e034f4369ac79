"""Exact Toeplitz hashing over GF(2) by carry-less multiplication of 64-bit words.

T x mod 2 (T[i, j] = s[i - j + n - 1], m x n) is the window [n - 1, n - 1 + m) of the
product S(z) X(z) in GF(2)[z]. Packed 64 bits to a word, that window is a word-level
Toeplitz product whose entries are 64 x 64-bit carry-less products (PCLMULQDQ), and a
k x k Toeplitz product splits into three of size k/2 (the Toeplitz form of Karatsuba,
see :mod:`labctl.qkd.privacy._toeplitz_gf2_jit`), so the cost is ~ (n / 64)^1.585 word products
with no rounding at all: no error bound, no float check, nothing to refuse.

With AVX-512 VPCLMULQDQ it runs privacy amplification several times faster than the three
float64 FFTs (benchmarks/README.md, "figures behind the code"). It needs numba and a
target CPU with PCLMULQDQ; :data:`AVAILABLE` says whether this process has both, otherwise
callers keep the FFT path. The kernel family is chosen once, at import, from the features
of the CPU numba compiles for (NUMBA_CPU_FEATURES when set, else the host's), and only
that family's module is imported: LLVM aborts the process on an intrinsic the target
lacks, so the AVX-512 one must never be compiled on a CPU without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

Bits = npt.NDArray[np.uint8]
Words = npt.NDArray[np.uint64]

_WIDE_BASES = tuple(range(96, 192, 8))
"""Schoolbook block sizes (words) with VPCLMULQDQ: multiples of 8 rows; below ~100 words
the Karatsuba bookkeeping (sums, copies) costs more than the products it saves
(benchmarks/README.md, "figures behind the code")."""
_SCALAR_BASES = tuple(range(16, 32))
"""Block sizes with scalar PCLMULQDQ (~16x slower products): recursion pays off sooner."""
_LINEAR_WEIGHT = 6.0
"""Word operations per point per Karatsuba level (sums, copies), in units of one product."""
_SCALAR_SECONDS_PER_COST = 1.22e-9
"""CPU seconds per unit of modelled cost with scalar PCLMULQDQ, fitted to privacy_amplify
under a Haswell numba target (benchmarks/README.md, "figures behind the code")."""
_FFT_SECONDS_PER_POINT_LOG = 2.56e-9
"""CPU seconds of privacy_amplify's FFT path per L log2 L (L = n + m - 1 points, FFTW
ESTIMATE): the median fitted for L >= 1e7 (benchmarks/README.md, "figures behind the
code"); below that the scalar family wins anyway."""


def parse_features(text: str) -> dict[str, bool]:
    """LLVM feature string ("+pclmul,-avx512f,...") as {name: enabled}; later entries win."""
    features: dict[str, bool] = {}
    for item in text.split(","):
        item = item.strip()
        if len(item) > 1 and item[0] in "+-":
            features[item[1:]] = item[0] == "+"
    return features


def choose_family(features: Mapping[str, bool], triple: str) -> str | None:
    """Kernel family the target can run: "wide" (VPCLMULQDQ-512), "scalar" (PCLMULQDQ) or None.

    Only features explicitly enabled count: a NUMBA_CPU_NAME's implied features are not
    known here, and guessing one that is absent would abort the process in LLVM.
    """
    if not triple.startswith(("x86_64", "i386", "i586", "i686")):
        return None  # e.g. aarch64: no carry-less multiply intrinsics of this name
    if not features.get("pclmul", False):
        return None
    if features.get("avx512f", False) and features.get("vpclmulqdq", False):
        return "wide"
    return "scalar"


def target_features() -> tuple[dict[str, bool], str] | None:
    """(features, triple) of the CPU numba generates code for, or None without numba.

    NUMBA_CPU_FEATURES when set (numba's config; "" for NUMBA_CPU_NAME=generic), else the
    host's as numba itself reads them (which honours NUMBA_ENABLE_AVX=0). NUMBA_CPU_NAME
    alone keeps the host's features, exactly as numba does.
    """
    try:
        import llvmlite.binding as llvm
        from numba.core import config
        from numba.core.codegen import get_host_cpu_features
    except ImportError:  # numba is optional: the FFT path stays the fallback
        return None
    if getattr(config, "DISABLE_JIT", False):  # the intrinsics have no pure-Python body
        return None
    text: str | None = getattr(config, "CPU_FEATURES", None)
    if text is None:
        text = str(get_host_cpu_features())  # type: ignore[no-untyped-call]  # "" if unreadable
    return parse_features(text), str(llvm.get_process_triple())


def _load() -> tuple[Callable[..., None], Callable[..., None], bool] | None:
    """(kernel of the chosen family, scalar kernel, wide) or None: imports only that family."""
    target = target_features()
    family = None if target is None else choose_family(*target)
    if family is None:
        return None
    from labctl.qkd.privacy import _toeplitz_gf2_jit as scalar

    if family == "scalar":
        return scalar.tiled, scalar.tiled, False
    from labctl.qkd.privacy import _toeplitz_gf2_wide as wide

    return wide.tiled, scalar.tiled, True


_LOADED = _load()
AVAILABLE = _LOADED is not None
"""True when numba is here and its target CPU has PCLMULQDQ (else :func:`toeplitz_gf2` raises)."""
WIDE = _LOADED is not None and _LOADED[2]
"""True when the 8-row VPCLMULQDQ family is used (AVX-512), False for scalar PCLMULQDQ."""


def _leaf_cost(size: int, base: int) -> tuple[float, int]:
    """(modelled cost, base) of one size x size word Toeplitz product split down to base."""
    levels = (size // base).bit_length() - 1
    cost = 3.0**levels * base * base + _LINEAR_WEIGHT * size * sum(1.5**i for i in range(levels))
    return cost, base


def choose_tile(rows: int, cols: int, wide: bool) -> tuple[int, int]:
    """(tile size k = base 2^L, base) minimising the modelled cost of covering rows x cols.

    Tiles are square (the Karatsuba split needs it); a wide matrix (few output words)
    becomes a row of small tiles, a square one a single tile padded by < 1/base.
    """
    bases = _WIDE_BASES if wide else _SCALAR_BASES
    best: tuple[float, int, int] | None = None
    limit = 2 * max(rows, cols, 1)
    for base in bases:
        size = base
        while True:
            tiles = -(-rows // size) * -(-cols // size)
            cost, _ = _leaf_cost(size, base)
            if best is None or tiles * cost < best[0]:
                best = (tiles * cost, size, base)
            if size >= limit:
                break
            size *= 2
    assert best is not None
    return best[1], best[2]


def _word_shape(n: int, m: int) -> tuple[int, int, int]:
    """(w0, rows, cols) of the word Toeplitz product behind an m x n bit product.

    Needed product bits [n - 1, n - 1 + m) lie in words [w0, w1); word w is
    lo(D[w]) ^ hi(D[w - 1]) with D[w] = XOR_j clmul(A[w - j], B[j]): rows w0 - 1 .. w1 - 1.
    """
    w0, w1 = (n - 1) // 64, (n + m - 2) // 64 + 1
    return w0, w1 - w0 + 1, -(-n // 64)


def modelled_seconds(n: int, m: int) -> float:
    """Modelled CPU seconds of the scalar PCLMULQDQ product (m x n bits)."""
    _, rows, cols = _word_shape(n, m)
    size, base = choose_tile(rows, cols, False)
    cost, _ = _leaf_cost(size, base)
    return -(-rows // size) * -(-cols // size) * cost * _SCALAR_SECONDS_PER_COST


def faster_than_fft(n: int, m: int) -> bool:
    """Whether "auto" should take this product over GF(2) rather than by float64 FFT.

    Always with the VPCLMULQDQ family (faster than the FFT at every size measured). The
    scalar family grows as (n/64)^1.585 against the FFT's L log2 L, so it is compared
    with the FFT model (they tie at n ~ 2e7 for m = n/2; benchmarks/README.md).
    """
    if _LOADED is None:
        return False
    if _LOADED[2] or n == 0 or m == 0:
        return True
    points = n + m - 1
    fft_seconds = _FFT_SECONDS_PER_POINT_LOG * points * math.log2(max(points, 2))
    return modelled_seconds(n, m) <= fft_seconds


def _pack(bits: Bits, words: int) -> Words:
    """Bit i of the result's word i // 64 (bit i % 64) is bits[i]; zero words past the end."""
    buffer = np.zeros(8 * words, dtype=np.uint8)
    packed = np.packbits(bits, bitorder="little")
    buffer[: packed.size] = packed
    return buffer.view("<u8")


def toeplitz_gf2(seed: Bits, x: Bits, m: int, *, scalar: bool = False) -> Bits:
    """T x mod 2 for the m x n Toeplitz matrix of ``seed`` (n + m - 1 bits), exact.

    Inputs are 0/1 uint8 arrays, already checked by the caller (privacy.toeplitz_hash).
    ``scalar`` forces the PCLMULQDQ kernel where the VPCLMULQDQ one would run (tests).
    """
    if _LOADED is None:
        raise RuntimeError("GF(2) Toeplitz product needs numba targeting a CPU with PCLMULQDQ")
    wide = _LOADED[2] and not scalar
    kernel = _LOADED[0] if wide else _LOADED[1]
    n = x.size
    if n == 0 or m == 0:
        return np.zeros(m, dtype=np.uint8)
    w0, rows, cols = _word_shape(n, m)
    w1 = w0 + rows - 1
    size, base = choose_tile(rows, cols, wide)
    tile_rows, tile_cols = -(-rows // size), -(-cols // size)
    # One buffer holds every region, so the kernel addresses them all by offsets:
    # [seed | v | out | scratch].
    seed_len, v_len = (tile_rows + tile_cols + 1) * size, tile_cols * size
    out_len = 2 * tile_rows * size
    mem = np.zeros(seed_len + v_len + out_len + 7 * size + 8, dtype=np.uint64)
    v_at, out_at = seed_len, seed_len + v_len
    mem[v_at : v_at + v_len] = _pack(x, v_len)
    # Row r, column j of the word Toeplitz reads A[w0 - 1 + r - j]; tile (i, j) of size k
    # reads its 2k - 1 seed words from mem[(i - j + tile_cols) k :], which puts A[a] at
    # mem[a + (tile_cols + 1) k - w0] (zeros around it stand for absent seed words).
    seed_words = _pack(seed, -(-seed.size // 64))
    offset = (tile_cols + 1) * size - w0
    lo, hi = max(0, w0 - cols), min(seed_words.size, w1)
    mem[lo + offset : hi + offset] = seed_words[lo:hi]
    scratch_at = out_at + out_len
    kernel(mem, 0, v_at, out_at, tile_rows, tile_cols, size, base, scratch_at)
    out = mem[out_at : out_at + out_len]
    d = out[: 2 * rows].reshape(rows, 2)
    words = d[1:, 0] ^ d[:-1, 1]
    bits = np.unpackbits(words.view(np.uint8), bitorder="little")
    start = n - 1 - 64 * w0
    return bits[start : start + m].copy()

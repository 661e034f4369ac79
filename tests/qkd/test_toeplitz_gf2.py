"""The carry-less (GF(2)) Toeplitz product equals the direct product and the FFT paths."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from labctl.qkd.privacy import amplify as privacy
from labctl.qkd.privacy.amplify import privacy_amplify, toeplitz_hash, toeplitz_hash_direct
from labctl.qkd.privacy.toeplitz_gf2 import (
    AVAILABLE,
    WIDE,
    choose_family,
    choose_tile,
    parse_features,
    target_features,
    toeplitz_gf2,
)
from labctl.qkd.secret import SecretBits

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


def test_family_follows_explicit_features_only() -> None:
    x86 = "x86_64-unknown-linux-gnu"
    assert parse_features("+pclmul, -avx512f,+avx512f,junk,") == {"pclmul": True, "avx512f": True}
    assert choose_family(parse_features("+pclmul,+avx512f,+vpclmulqdq"), x86) == "wide"
    assert choose_family(parse_features("+pclmul,+avx512f,-vpclmulqdq"), x86) == "scalar"
    assert choose_family(parse_features("+pclmul,+vpclmulqdq"), x86) == "scalar"  # no avx512f
    assert choose_family(parse_features(HASWELL_FEATURES), x86) == "scalar"
    assert choose_family(parse_features(""), x86) is None  # NUMBA_CPU_NAME=generic
    assert choose_family(parse_features("+sse2,-pclmul"), x86) is None
    # An ARM host: no pclmul key at all, and the intrinsic names are x86 ones anyway.
    arm = parse_features("+neon,+fp-armv8,+crypto,+aes,+sha2")
    assert choose_family(arm, "aarch64-unknown-linux-gnu") is None
    assert choose_family({"pclmul": True}, "aarch64-apple-darwin23.0.0") is None


HASWELL_FEATURES = (
    "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+lzcnt,+movbe,+pclmul,+popcnt,+sse4.2"
)
"""Explicit features for NUMBA_CPU_NAME=haswell: NUMBA_CPU_NAME alone keeps the host's
feature map (AVX-512 included here), so a Haswell target needs the features spelled out."""

_CHILD = """
import json, sys
import numpy as np
from labctl.qkd.privacy import amplify as privacy
from labctl.qkd.privacy import toeplitz_gf2
rng = np.random.default_rng(3)
same = True
for n, m in ((3001, 2500), (64 * 130, 64 * 97 + 5), (20_000, 700), (1, 1)):
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    direct = privacy.toeplitz_hash_direct(s, x, m)
    same &= bool(np.array_equal(privacy.toeplitz_hash(s, x, m), direct))
print(json.dumps({
    "available": toeplitz_gf2.AVAILABLE, "wide": toeplitz_gf2.WIDE,
    "method": privacy.DEFAULT_METHOD, "same": same,
    "modules": sorted(k for k in sys.modules if k.startswith("labctl.qkd.privacy._toeplitz_gf2")),
}))
"""


def _run_child(tmp_path: Path, **env: str) -> dict[str, object]:
    """Run _CHILD under a numba target and a fresh cache; an LLVM abort shows as rc != 0."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    full |= {"NUMBA_CACHE_DIR": str(tmp_path / "numba_cache"), **env}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env=full, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _host_runs(features: str) -> bool:
    """Whether this host can execute code built for these explicit features."""
    target = target_features()
    if target is None or not target[1].startswith("x86_64"):
        return False
    host = target[0]
    return all(host.get(name, False) for name, on in parse_features(features).items() if on)


@pytest.mark.skipif(not _host_runs(HASWELL_FEATURES), reason="host cannot run Haswell code")
def test_haswell_target_uses_the_scalar_family_without_aborting(tmp_path: Path) -> None:
    # Before the families were split, compiling the kernel for this target aborted the
    # process (LLVM ERROR on llvm.x86.pclmulqdq.512, rc 134) even on the scalar path.
    child = _run_child(tmp_path, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=HASWELL_FEATURES)
    assert child["available"] is True and child["wide"] is False
    assert child["method"] == "gf2" and child["same"] is True
    # The AVX-512 family never loads.
    assert child["modules"] == ["labctl.qkd.privacy._toeplitz_gf2_jit"]


def test_target_without_pclmul_falls_back_to_the_exact_fft(tmp_path: Path) -> None:
    # NUMBA_CPU_NAME=generic makes numba's features "": no PCLMULQDQ, as on an ARM host.
    child = _run_child(tmp_path, NUMBA_CPU_NAME="generic")
    assert child["available"] is False and child["wide"] is False
    assert child["method"] == "fft" and child["same"] is True
    assert child["modules"] == []


@needs_gf2
def test_auto_takes_the_fft_past_the_scalar_crossover(monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.qkd.privacy import toeplitz_gf2 as gf2

    scalar_only = (gf2._LOADED[1], gf2._LOADED[1], False)  # type: ignore[index]
    monkeypatch.setattr(gf2, "_LOADED", scalar_only)
    # Modelled against the measured FFT rate: scalar wins at 1e6, loses at 4e7 (m = n/2).
    assert gf2.faster_than_fft(500_000, 500_000) and gf2.faster_than_fft(10**7, 10**6)
    assert not gf2.faster_than_fft(20_000_000, 20_000_000)
    assert gf2.modelled_seconds(20_000_000, 20_000_000) > 2.0  # measured 3.7 s
    # privacy_amplify with "auto" then runs the FFT: prove it by making gf2 unusable.
    calls: list[int] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise AssertionError("gf2 must not run past the crossover")

    monkeypatch.setattr(privacy, "faster_than_fft", lambda n, m: False)
    monkeypatch.setattr(privacy, "toeplitz_gf2", refuse)
    rng = np.random.default_rng(9)
    key = SecretBits(rng.integers(0, 2, 5000, dtype=np.uint8))
    seed = rng.integers(0, 2, 4999, dtype=np.uint8)
    auto = privacy_amplify(key, 2500, seed)
    assert auto == privacy_amplify(key, 2500, seed, method="fft") and not calls
    with pytest.raises(AssertionError, match="crossover"):
        privacy_amplify(key, 2500, seed, method="gf2")  # an explicit method is obeyed

"""numba kernels behind :mod:`~labctl.qkd.privacy.toeplitz_gf2`: carry-less multiply, 64-bit words.

This module is the scalar PCLMULQDQ family plus the Karatsuba walk both families share;
the AVX-512 VPCLMULQDQ family lives in :mod:`labctl.qkd.privacy._toeplitz_gf2_wide`. They are
separate modules, not one kernel with a runtime flag, because numba compiles every
function a kernel references whatever the flag says, and LLVM aborts the whole process
(LLVM ERROR, no Python exception) when it meets an intrinsic the target CPU lacks: the
old single kernel did exactly that under a Haswell target (no AVX-512). Imported only
when the target numba compiles for has PCLMULQDQ (checked by the caller).

A word-level Toeplitz product is D[r] = XOR_c clmul(s[r - c + k - 1], v[c]) with 128-bit
rows D (stored as lo, hi word pairs). :func:`next_leaf` splits a k x k problem (k = b 2^L)
with the Toeplitz Karatsuba identity into three half-size products down to b x b blocks,
which the family's driver (:func:`tiled` here) multiplies by schoolbook.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I8 = ir.IntType(8)
_V2 = ir.VectorType(_I64, 2)

FRAME_DEPTH = 3 * 64
"""Stack frames of the Karatsuba walk: 3 per level, far more levels than any k needs."""


@intrinsic
def clmul(typingctx: Any, a: Any, b: Any) -> Any:
    """(lo, hi) words of the 128-bit carry-less product of two uint64 (PCLMULQDQ)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)  # type: ignore[no-untyped-call]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(_V2, [_V2, _V2, _I8])
        fn = builder.module.declare_intrinsic("llvm.x86.pclmulqdq", fnty=fnty)
        undef = ir.Constant(_V2, ir.Undefined)
        va = builder.insert_element(undef, args[0], ir.Constant(_I32, 0))
        vb = builder.insert_element(undef, args[1], ir.Constant(_I32, 0))
        prod = builder.call(fn, [va, vb, ir.Constant(_I8, 0)])
        lo = builder.extract_element(prod, ir.Constant(_I32, 0))
        hi = builder.extract_element(prod, ir.Constant(_I32, 1))
        return context.make_tuple(builder, signature.return_type, (lo, hi))

    return sig, codegen


@njit(cache=True, nogil=True)
def base_scalar(
    s: npt.NDArray[np.uint64],
    so: int,
    v: npt.NDArray[np.uint64],
    vo: int,
    out: npt.NDArray[np.uint64],
    oo: int,
    k: int,
) -> None:
    """out[oo + 2r : +2] ^= XOR_c clmul(s[so + r - c + k - 1], v[vo + c]), k x k, PCLMULQDQ."""
    for r in range(k):
        lo = np.uint64(0)
        hi = np.uint64(0)
        for c in range(k):
            p = clmul(s[so + r - c + k - 1], v[vo + c])  # type: ignore[call-arg, var-annotated]
            lo ^= p[0]
            hi ^= p[1]
        out[oo + 2 * r] ^= lo
        out[oo + 2 * r + 1] ^= hi


@njit(cache=True, nogil=True)
def push_tile(frames: npt.NDArray[np.int64], so: int, vo: int, oo: int, k: int, wo: int) -> int:
    """Start a walk for mem[oo : oo + 2k] ^= T v (see :func:`next_leaf`); returns its top."""
    frames[0, 0], frames[0, 1], frames[0, 2] = so, vo, oo
    frames[0, 3], frames[0, 4], frames[0, 5] = k, wo, 0
    return 1


@njit(cache=True, nogil=True)
def next_leaf(
    mem: npt.NDArray[np.uint64], frames: npt.NDArray[np.int64], top: int, base: int
) -> int:
    """Advance the walk until frames[top - 1] is a leaf; returns top, or 0 once done.

    A frame (so, vo, oo, k, wo, phase) asks mem[oo : oo + 2k] ^= T v for the k x k word
    Toeplitz of seed mem[so : so + 2k - 1] and v = mem[vo : vo + k], with mem[wo : wo + 7k]
    as scratch. A leaf (k <= base, or odd k, which would lose a row if split) is left on
    top for the caller's schoolbook kernel, which then pops it (top - 1). k = base 2^L.
    T = [[Ta, Tb], [Tc, Ta]] in h = k/2 blocks; with P0 = Ta (v0 + v1), P1 = (Tb + Ta) v1,
    P2 = (Tc + Ta) v0 (all over GF(2)), y0 = P0 + P1 and y1 = P0 + P2. Depth-first with
    an explicit stack (numba's cache cannot reload a self-recursive function: it crashed
    here), each node taking 7h scratch words (v0 + v1, both seed sums, P0) below the
    scratch of its children.
    """
    while top > 0:
        f = frames[top - 1]
        fs, fv, fo, fk, fw = f[0], f[1], f[2], f[3], f[4]
        if fk <= base or fk % 2:
            return top
        h = fk // 2
        vsum, sum_b, sum_c, p0 = fw, fw + h, fw + 3 * h, fw + 5 * h
        if f[5] == 1:  # children done: add P0 to both halves
            for i in range(2 * h):
                mem[fo + i] ^= mem[p0 + i]
                mem[fo + 2 * h + i] ^= mem[p0 + i]
            top -= 1
            continue
        f[5] = 1
        for i in range(h):
            mem[vsum + i] = mem[fv + i] ^ mem[fv + h + i]
        for i in range(2 * h - 1):  # Ta's seed starts at h, Tb's at 0, Tc's at 2h
            mem[sum_b + i] = mem[fs + i] ^ mem[fs + h + i]
            mem[sum_c + i] = mem[fs + 2 * h + i] ^ mem[fs + h + i]
        for i in range(2 * h):
            mem[p0 + i] = 0
        nxt = fw + 7 * h
        for child_s, child_v, child_o in (
            (fs + h, vsum, p0),
            (sum_b, fv + h, fo),
            (sum_c, fv, fo + 2 * h),
        ):
            c = frames[top]
            c[0], c[1], c[2], c[3], c[4], c[5] = child_s, child_v, child_o, h, nxt, 0
            top += 1
    return 0


@njit(cache=True, nogil=True)
def tiled(
    mem: npt.NDArray[np.uint64],
    seed_at: int,
    v_at: int,
    out_at: int,
    rows: int,
    cols: int,
    k: int,
    base: int,
    scratch_at: int,
) -> None:
    """out ^= T v tile by tile (rows x cols tiles of k x k words), all regions of mem, with
    scalar PCLMULQDQ leaves; tile (i, j) reads its seed at seed_at + (i - j + cols) k (see
    toeplitz_gf2)."""
    frames = np.empty((FRAME_DEPTH, 6), dtype=np.int64)
    for i in range(rows):
        for j in range(cols):
            so = seed_at + (i - j + cols) * k
            top = push_tile(frames, so, v_at + j * k, out_at + 2 * i * k, k, scratch_at)
            while True:
                top = next_leaf(mem, frames, top, base)
                if top == 0:
                    break
                f = frames[top - 1]
                base_scalar(mem, f[0], mem, f[1], mem, f[2], f[3])
                top -= 1

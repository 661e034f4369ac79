"""The AVX-512 VPCLMULQDQ kernel family of :mod:`labctl.qkd.privacy.toeplitz_gf2`.

Import this module only when the CPU numba compiles for has avx512f and vpclmulqdq:
compiling :func:`rows8` anywhere else makes LLVM abort the process (see
:mod:`labctl.qkd.privacy._toeplitz_gf2_jit`, which holds the scalar family and the Karatsuba
walk shared by both). VPCLMULQDQ does 8 rows at a time, ~16x the scalar PCLMULQDQ's
products (benchmarks/README.md, "figures behind the code").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from labctl.qkd.privacy._toeplitz_gf2_jit import FRAME_DEPTH, base_scalar, next_leaf, push_tile

_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I8 = ir.IntType(8)
_V8 = ir.VectorType(_I64, 8)


@intrinsic
def rows8(typingctx: Any, s_addr: Any, v_addr: Any, cols: Any, out_addr: Any) -> Any:
    """out[2j : 2j + 2] ^= XOR_{c < cols} clmul(s[j - c], v[c]) for rows j < 8 (VPCLMULQDQ).

    s_addr is the address of s[0] (the c = 0 seed word of row 0; later columns read lower
    addresses), v_addr of v[0], out_addr of row 0's lo word. One 64-byte load of 8 seed
    words feeds two VPCLMULQDQ: the even qword of each 128-bit lane gives rows 0, 2, 4, 6,
    the odd one rows 1, 3, 5, 7, each against v[c] broadcast.
    """
    sig = types.void(types.intp, types.intp, types.intp, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        s_int, v_int, count, out_int = args
        ptr, vptr = _I64.as_pointer(), _V8.as_pointer()
        fnty = ir.FunctionType(_V8, [_V8, _V8, _I8])
        fn = builder.module.declare_intrinsic("llvm.x86.pclmulqdq.512", fnty=fnty)
        s0, v0 = builder.inttoptr(s_int, ptr), builder.inttoptr(v_int, ptr)
        entry = builder.block
        loop = builder.append_basic_block("rows8.loop")
        done = builder.append_basic_block("rows8.done")
        zero = ir.Constant(_V8, [0] * 8)
        index_zero = ir.Constant(count.type, 0)
        builder.cbranch(builder.icmp_signed(">", count, index_zero), loop, done)
        builder.position_at_end(loop)
        c = builder.phi(count.type)
        even, odd = builder.phi(_V8), builder.phi(_V8)
        c.add_incoming(index_zero, entry)
        even.add_incoming(zero, entry)
        odd.add_incoming(zero, entry)
        seeds = builder.load(builder.bitcast(builder.gep(s0, [builder.neg(c)]), vptr), align=8)
        word = builder.load(builder.gep(v0, [c]), align=8)
        lane = builder.insert_element(ir.Constant(_V8, ir.Undefined), word, ir.Constant(_I32, 0))
        splat = ir.Constant(ir.VectorType(_I32, 8), [0] * 8)
        word8 = builder.shuffle_vector(lane, ir.Constant(_V8, ir.Undefined), splat)
        even_next = builder.xor(even, builder.call(fn, [seeds, word8, ir.Constant(_I8, 0x00)]))
        odd_next = builder.xor(odd, builder.call(fn, [seeds, word8, ir.Constant(_I8, 0x01)]))
        c_next = builder.add(c, ir.Constant(count.type, 1))
        c.add_incoming(c_next, loop)
        even.add_incoming(even_next, loop)
        odd.add_incoming(odd_next, loop)
        builder.cbranch(builder.icmp_signed("<", c_next, count), loop, done)
        builder.position_at_end(done)
        even_out, odd_out = builder.phi(_V8), builder.phi(_V8)
        for phi, value in ((even_out, even_next), (odd_out, odd_next)):
            phi.add_incoming(zero, entry)
            phi.add_incoming(value, loop)
        # Interleave the 128-bit lanes back into row order 0..3 and 4..7.
        first = ir.Constant(ir.VectorType(_I32, 8), [0, 1, 8, 9, 2, 3, 10, 11])
        second = ir.Constant(ir.VectorType(_I32, 8), [4, 5, 12, 13, 6, 7, 14, 15])
        out0 = builder.inttoptr(out_int, ptr)
        for offset, mask in ((0, first), (8, second)):
            target = builder.bitcast(builder.gep(out0, [ir.Constant(_I64, offset)]), vptr)
            rows = builder.shuffle_vector(even_out, odd_out, mask)
            builder.store(builder.xor(builder.load(target, align=8), rows), target, align=8)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def base_wide(
    s: npt.NDArray[np.uint64],
    so: int,
    v: npt.NDArray[np.uint64],
    vo: int,
    out: npt.NDArray[np.uint64],
    oo: int,
    k: int,
) -> None:
    """:func:`~labctl.qkd.privacy._toeplitz_gf2_jit.base_scalar` with VPCLMULQDQ; k % 8 == 0."""
    s_addr = s.ctypes.data + 8 * (so + k - 1)
    v_addr = v.ctypes.data + 8 * vo
    out_addr = out.ctypes.data + 8 * oo
    for r0 in range(0, k, 8):
        rows8(s_addr + 8 * r0, v_addr, k, out_addr + 16 * r0)  # type: ignore[call-arg]


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
    """:func:`labctl.qkd.privacy._toeplitz_gf2_jit.tiled` with VPCLMULQDQ leaves (8 rows at once,
    so a leaf whose size is not a multiple of 8 stays scalar)."""
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
                if f[3] % 8 == 0:
                    base_wide(mem, f[0], mem, f[1], mem, f[2], f[3])
                else:
                    base_scalar(mem, f[0], mem, f[1], mem, f[2], f[3])
                top -= 1

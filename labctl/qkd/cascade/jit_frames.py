"""numba kernels for a batch of frames laid out side by side (imported by ``_cascade_jit``).

Layout (see :mod:`labctl.qkd.cascade.layout`): K frames of n bits; key position of bit i
of frame f is f n + i; in pass j frame f occupies shuffled positions [f S_j, f S_j + n),
S_j = n rounded up to a multiple of the pass's block size, so blocks never cross frames
and the padding [f S_j + n, (f + 1) S_j) is never inside a block. ``layout`` is the tuple
(K, n, S) and the per-frame public shuffles sit in typed lists at index j K + f.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, cast

import numpy as np
import numpy.typing as npt
from numba import njit

if TYPE_CHECKING:
    from numba.typed.typedlist import List

    ArrayList: TypeAlias = List[npt.NDArray[np.int32]]
    """Per pass and frame shuffles (orders or positions), index j K + f."""

IndexArray = npt.NDArray[np.int64]
Bits = npt.NDArray[np.uint8]
Layout = tuple[int, int, IndexArray]
"""(K, n, S): frames, bits per frame, per-pass frame stride."""


def new_array_list() -> ArrayList:
    """An empty numba typed list of read-only int32 arrays (per pass and frame shuffles)."""
    from numba import types
    from numba.typed import List

    return cast("ArrayList", List.empty_list(types.Array(types.int32, 1, "C", readonly=True)))


@njit(cache=True, nogil=True)
def unshuffle(
    passes: IndexArray, shuffled: IndexArray, orders: ArrayList, layout: Layout
) -> IndexArray:
    """Key positions of bits given as (pass, shuffled position in the batch layout)."""
    frames, n, frame_stride = layout
    out = np.empty(passes.size, dtype=np.int64)
    for t in range(passes.size):
        p = passes[t]
        fs = frame_stride[p]
        f = shuffled[t] // fs
        out[t] = f * n + orders[p * frames + f][shuffled[t] - f * fs]
    return out


@njit(cache=True, nogil=True)
def flip_positions(
    key: Bits,
    flips: IndexArray,
    positions: ArrayList,
    started: int,
    rows: Bits,
    stride: int,
    row_ready: npt.NDArray[np.bool_],
    layout: Layout,
) -> tuple[IndexArray, IndexArray]:
    """Flip key bits (distinct), and in every ready shuffled row; returns (pass, shuffled
    position) of each flipped bit in each started pass, for the path toggles."""
    frames, n, frame_stride = layout
    count = flips.size
    passes = np.empty(started * count, dtype=np.int64)
    where = np.empty(started * count, dtype=np.int64)
    for r in range(count):
        key[flips[r]] ^= 1
    for j in range(started):
        fs = frame_stride[j]
        for r in range(count):
            f = flips[r] // n
            local = flips[r] - f * n
            q = f * fs + (local if j == 0 else np.int64(positions[j * frames + f][local]))
            passes[j * count + r] = j
            where[j * count + r] = q
            if row_ready[j]:
                rows[j * stride + q] ^= 1
    return passes, where


@njit(cache=True, nogil=True)
def build_row(
    rows: Bits, stride: int, j: int, key: Bits, orders: ArrayList, layout: Layout
) -> None:
    """Bob's row of pass j: rows[j stride + f S_j + p] = key[f n + order_f[p]]."""
    frames, n, frame_stride = layout
    fs = frame_stride[j]
    for f in range(frames):
        order = orders[j * frames + f]
        row0 = j * stride + f * fs
        for p in range(n):
            rows[row0 + p] = key[f * n + order[p]]


@njit(cache=True, nogil=True)
def fill_prefix(
    prefix: Bits, stride: int, j: int, key: Bits, orders: ArrayList, layout: Layout
) -> None:
    """Alice's prefix parities of pass j's row (padding counts as zeros), K S_j + 1 entries."""
    frames, n, frame_stride = layout
    fs = frame_stride[j]
    base = j * stride
    prefix[base] = 0
    acc = np.uint8(0)
    for f in range(frames):
        order = orders[j * frames + f]
        row0 = base + f * fs
        for p in range(n):
            acc ^= key[f * n + order[p]]
            prefix[row0 + p + 1] = acc
        for p in range(n, fs):
            prefix[row0 + p + 1] = acc


@njit(cache=True, nogil=True)
def head_parities_gather(
    key: Bits, orders: ArrayList, j: int, layout: Layout, block: int, count: int
) -> Bits:
    """Parities of the first ``count`` blocks of every frame in pass j, frame-major, from
    the permutation (key[order[p]] for p below count * block)."""
    frames, n, _ = layout
    out = np.empty(frames * count, dtype=np.uint8)
    for f in range(frames):
        order = orders[j * frames + f]
        key0 = f * n
        for blk in range(count):
            acc = np.uint8(0)
            for p in range(blk * block, min((blk + 1) * block, n)):
                acc ^= key[key0 + order[p]]
            out[f * count + blk] = acc
    return out


@njit(cache=True, nogil=True)
def head_parities(
    key: Bits, positions: ArrayList, j: int, layout: Layout, block: int, count: int
) -> Bits:
    """Parities of the first ``count`` blocks of every frame in pass j, frame-major.

    Scans the key and the inverse shuffle sequentially (bit i lands in block
    position[i] // block): streaming beats the random reads of :func:`head_parities_gather`
    (about 2x at 1e6) when the inverse is already there, but is not worth computing it.
    """
    frames, n, _ = layout
    out = np.zeros(frames * count, dtype=np.uint8)
    limit = count * block
    shift = 0
    while (1 << shift) < block:
        shift += 1
    power = (1 << shift) == block
    for f in range(frames):
        pos = positions[j * frames + f]
        key0 = f * n
        out0 = f * count
        if count == 1:
            acc = np.uint8(0)
            for i in range(n):
                if pos[i] < limit:
                    acc ^= key[key0 + i]
            out[out0] = acc
        elif power:
            for i in range(n):
                q = np.int64(pos[i])
                if q < limit:
                    out[out0 + (q >> shift)] ^= key[key0 + i]
        else:
            for i in range(n):
                q = np.int64(pos[i])
                if q < limit:
                    out[out0 + q // block] ^= key[key0 + i]
    return out


@njit(cache=True, nogil=True)
def alice_ranges(
    prefix: Bits,
    stride: int,
    passes: npt.NDArray[np.uint8],
    start: IndexArray,
    end: IndexArray,
    layout: Layout,
    n_passes: int,
    filled: npt.NDArray[np.bool_],
) -> tuple[Bits, int]:
    """Alice's parities of shuffled ranges from her prefix rows. Returns (parities, code):
    code 0 ok, 1 a pass out of range, 2 a range outside one frame, 3 a row not filled."""
    frames, n, frame_stride = layout
    out = np.empty(start.size, dtype=np.uint8)
    for t in range(start.size):
        p = np.int64(passes[t])
        if p >= n_passes:
            return out, 1
        s, e = start[t], end[t]
        fs = frame_stride[p]
        if s < 0 or e <= s or e > frames * fs or (e - 1) - (s // fs) * fs >= n:
            return out, 2
        if not filled[p]:
            return out, 3
        out[t] = prefix[p * stride + e] ^ prefix[p * stride + s]
    return out, 0

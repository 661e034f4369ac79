"""numba kernels behind :mod:`labctl.qkd.cascade.kernels` (imported only through ``load()``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from numba import njit

from labctl.qkd.cascade.jit_frames import (
    Bits,
    IndexArray,
    Layout,
    alice_ranges,
    build_row,
    fill_prefix,
    flip_positions,
    head_parities,
    head_parities_gather,
    new_array_list,
    unshuffle,
)
from labctl.qkd.cascade.jit_shuffle import fisher_yates, fisher_yates_many, inverse

if TYPE_CHECKING:
    from labctl.qkd.cascade.jit_frames import ArrayList

__all__ = [
    "alice_ranges",
    "answer",
    "build_row",
    "correct",
    "descend",
    "fill_prefix",
    "fisher_yates",
    "fisher_yates_many",
    "head_parities",
    "head_parities_gather",
    "inverse",
    "minimal_odd",
    "new_array_list",
    "record",
    "toggle_paths",
    "unshuffle",
]

# Bob's known-range store (see labctl.qkd.cascade.nodes for the heap numbering). State bits:
# 1 known, 2 odd, 4 scratch mark (set and cleared within one call).
_KNOWN = np.uint8(1)
_ODD = np.uint8(2)
_KNOWN_ODD = np.uint8(3)
_MARK = np.uint8(4)
_UNMARK = np.uint8(0xFB)

Flags = npt.NDArray[np.bool_]
Geometry = tuple[IndexArray, IndexArray, IndexArray, IndexArray, int]
"""(offset, slots, block_size, frame_stride, n) of the node store."""
Ranges = tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]
"""(pass, block, heap, start, end) of ranges."""
Queries = tuple[IndexArray, IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]
"""(pass, block, heap, start, mid, end) of queried ranges."""


@njit(cache=True, nogil=True, inline="always")
def _node_range(first: int, length: int, heap: int) -> tuple[int, int]:
    depth = 0
    while (heap >> (depth + 1)) != 0:
        depth += 1
    i = heap - (1 << depth)
    return first + ((i * length) >> depth), first + (((i + 1) * length) >> depth)


@njit(cache=True, nogil=True, inline="always")
def _block_span(blk: int, k: int, frame_stride: int, n: int) -> tuple[int, int]:
    """(first, length) of global block ``blk`` of size k: frames of n bits sit at multiples
    of ``frame_stride`` (n rounded up to a multiple of k), so a frame's last block is cut
    at the frame's end and no block crosses frames (one frame: frame_stride >= n)."""
    first = blk * k
    frame_end = (first // frame_stride) * frame_stride + n
    return first, min(first + k, frame_end) - first


@njit(cache=True, nogil=True, inline="always")
def _buffers(m: int) -> Ranges:
    """Five int64 arrays of m entries (pass, block, heap, start, end of ranges)."""
    return (
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.int64),
        np.empty(m, dtype=np.int64),
    )


@njit(cache=True, nogil=True)
def toggle_paths(
    state: Bits,
    old: IndexArray,
    passes: IndexArray,
    positions: IndexArray,
    offset: IndexArray,
    slots: IndexArray,
    block_size: IndexArray,
    frame_stride: IndexArray,
    n: int,
    levels: int,
) -> IndexArray:
    """Flip the odd flag on the known path nodes of each corrected bit; returns the new odd
    set (every node that is now known-odd among ``old`` and the touched nodes).

    Known nodes form a rooted subtree of every block (a range is recorded only as a child
    of a queried, hence known, range), and an unknown node's flag is overwritten when it
    is recorded, so the walk down from the root stops at the first unknown node."""
    touched = np.empty(passes.size * levels, dtype=np.int64)
    t = 0
    for r in range(passes.size):
        p = passes[r]
        k = block_size[p]
        pos = positions[r]
        blk = pos // k
        first, length = _block_span(blk, k, frame_stride[p], n)
        off = pos - first
        base = offset[p] + blk * slots[p]
        for d in range(levels):
            i = (((off + 1) << d) - 1) // length
            if (((i + 1) * length) >> d) - ((i * length) >> d) < 2:
                break
            node = base + (1 << d) + i
            if state[node] & _KNOWN == 0:
                break
            state[node] ^= _ODD
            touched[t] = node
            t += 1
    for x in old:
        state[x] |= _MARK
    became = np.empty(t, dtype=np.int64)
    nb = 0
    for r in range(t):
        x = touched[r]
        if state[x] == _KNOWN_ODD:
            became[nb] = x
            nb += 1
            state[x] |= _MARK
    out = np.empty(old.size + nb, dtype=np.int64)
    c = 0
    for x in old:
        state[x] &= _UNMARK
        if state[x] == _KNOWN_ODD:
            out[c] = x
            c += 1
    for r in range(nb):
        state[became[r]] &= _UNMARK
        out[c] = became[r]
        c += 1
    return out[:c]


@njit(cache=True, nogil=True)
def record(state: Bits, ids: IndexArray, odd: Flags) -> tuple[IndexArray, int]:
    """Mark nodes known with their odd flag; returns (nodes that became odd, newly known)."""
    fresh = np.empty(ids.size, dtype=np.int64)
    nf = 0
    new_known = 0
    for r in range(ids.size):
        x = ids[r]
        before = state[x]
        if before & _KNOWN == 0:
            new_known += 1
        if odd[r]:
            state[x] = _KNOWN_ODD
            if before != _KNOWN_ODD:
                fresh[nf] = x
                nf += 1
        else:
            state[x] = _KNOWN
    return fresh[:nf], new_known


@njit(cache=True, nogil=True)
def minimal_odd(
    ids: IndexArray,
    state: Bits,
    offset: IndexArray,
    slots: IndexArray,
    block_size: IndexArray,
    frame_stride: IndexArray,
    n: int,
) -> tuple[Ranges, IndexArray]:
    """Odd nodes with no odd descendant: (pass, block, heap, start, end) and their ids.

    ``ids`` need only hold every minimal odd node (plus any other odd nodes): an odd node
    that is not minimal can only become minimal when a bit on its path flips, and then
    :func:`toggle_paths` puts it back in the set, so callers keep just the returned ids."""
    m = ids.size
    p_all = np.searchsorted(offset, ids, side="right") - 1
    shift = np.zeros(slots.size, dtype=np.int64)  # slots are powers of two
    for p in range(slots.size):
        while (np.int64(1) << shift[p]) < slots[p]:
            shift[p] += 1
    heaps = np.empty(m, dtype=np.int64)
    blocks = np.empty(m, dtype=np.int64)
    for t in range(m):
        p = p_all[t]
        rest = ids[t] - offset[p]
        blocks[t] = rest >> shift[p]
        heaps[t] = rest & (slots[p] - 1)
    for t in range(m):
        up = heaps[t] >> 1
        base = ids[t] - heaps[t]
        while up >= 1:
            state[base + up] |= _MARK
            up >>= 1
    keep = np.empty(m, dtype=np.bool_)
    for t in range(m):
        keep[t] = (state[ids[t]] & _MARK) == 0
    for t in range(m):
        up = heaps[t] >> 1
        base = ids[t] - heaps[t]
        while up >= 1:
            state[base + up] &= _UNMARK
            up >>= 1
    c = int(keep.sum())
    op, ob, oh, os_, oe = _buffers(c)
    kept = np.empty(c, dtype=np.int64)
    r = 0
    for t in range(m):
        if keep[t]:
            p = p_all[t]
            first, length = _block_span(blocks[t], block_size[p], frame_stride[p], n)
            s, e = _node_range(first, length, heaps[t])
            op[r], ob[r], oh[r], os_[r], oe[r] = p, blocks[t], heaps[t], s, e
            kept[r] = ids[t]
            r += 1
    return (op, ob, oh, os_, oe), kept


@njit(cache=True, nogil=True)
def descend(
    p: IndexArray,
    b: IndexArray,
    h: IndexArray,
    s: IndexArray,
    e: IndexArray,
    state: Bits,
    offset: IndexArray,
    slots: IndexArray,
    block_size: IndexArray,
    frame_stride: IndexArray,
    n: int,
) -> tuple[
    IndexArray, IndexArray, IndexArray, IndexArray, IndexArray, IndexArray, IndexArray, IndexArray
]:
    """Walk each odd range down through known (hence even) left halves.

    Returns the queries (pass, block, heap, start, mid, end: ask for [start, mid)) and the
    ranges that shrank to one bit (pass, shuffled position): errors found locally.
    """
    m = p.size
    qp, qb, qh, qs, qe = _buffers(m)
    qm, fp, fpos, _, _ = _buffers(m)
    nq = 0
    nf = 0
    for t in range(m):
        pt, bt, ht, st, et = p[t], b[t], h[t], s[t], e[t]
        first, length = _block_span(bt, block_size[pt], frame_stride[pt], n)
        base = offset[pt] + bt * slots[pt]
        while True:
            if et - st == 1:
                fp[nf] = pt
                fpos[nf] = st
                nf += 1
                break
            mid = _node_range(first, length, 2 * ht)[1]
            if mid - st >= 2 and state[base + 2 * ht] & _KNOWN:
                st = mid
                ht = 2 * ht + 1
                continue
            qp[nq], qb[nq], qh[nq], qs[nq], qm[nq], qe[nq] = pt, bt, ht, st, mid, et
            nq += 1
            break
    return qp[:nq], qb[:nq], qh[:nq], qs[:nq], qm[:nq], qe[:nq], fp[:nf], fpos[:nf]


@njit(cache=True, nogil=True)
def range_parity(rows: Bits, stride: int, p: IndexArray, s: IndexArray, e: IndexArray) -> Bits:
    """Parity of rows[p * stride + s : p * stride + e] for each range."""
    out = np.empty(p.size, dtype=np.uint8)
    for t in range(p.size):
        base = p[t] * stride
        acc = 0
        for i in range(base + s[t], base + e[t]):
            acc += rows[i]
        out[t] = acc & 1
    return out


@njit(cache=True, nogil=True)
def settle(
    qp: IndexArray,
    qb: IndexArray,
    qh: IndexArray,
    qs: IndexArray,
    qm: IndexArray,
    qe: IndexArray,
    left_odd: Flags,
    state: Bits,
    offset: IndexArray,
    slots: IndexArray,
) -> tuple[
    IndexArray,
    IndexArray,
    IndexArray,
    IndexArray,
    IndexArray,
    IndexArray,
    IndexArray,
    IndexArray,
    int,
]:
    """Record both halves of every queried range (the right's parity is implied) and keep
    the odd one. Returns the next frontier (pass, block, heap, start, end), the one-bit
    odd halves (pass, position), the nodes that became odd and the count newly known."""
    m = qp.size
    op, ob, oh, os_, oe = _buffers(m)
    fp, fpos, fresh, _, _ = _buffers(m)
    nf = 0
    no = 0
    nfresh = 0
    new_known = 0
    for t in range(m):
        base = offset[qp[t]] + qb[t] * slots[qp[t]]
        lo = left_odd[t]
        for child, size, odd in (
            (2 * qh[t], qm[t] - qs[t], lo),
            (2 * qh[t] + 1, qe[t] - qm[t], not lo),
        ):
            if size >= 2:
                x = base + child
                before = state[x]
                if before & _KNOWN == 0:
                    new_known += 1
                if odd:
                    state[x] = _KNOWN_ODD
                    if before != _KNOWN_ODD:
                        fresh[nfresh] = x
                        nfresh += 1
                else:
                    state[x] = _KNOWN
        if lo:
            st, et, ht = qs[t], qm[t], 2 * qh[t]
        else:
            st, et, ht = qm[t], qe[t], 2 * qh[t] + 1
        if et - st == 1:
            fp[nf] = qp[t]
            fpos[nf] = st
            nf += 1
        else:
            op[no], ob[no], oh[no], os_[no], oe[no] = qp[t], qb[t], ht, st, et
            no += 1
    return (
        op[:no],
        ob[:no],
        oh[:no],
        os_[:no],
        oe[:no],
        fp[:nf],
        fpos[:nf],
        fresh[:nfresh],
        new_known,
    )


@njit(cache=True, nogil=True)
def correct(
    key: Bits,
    bits: IndexArray,
    positions: ArrayList,
    started: int,
    rows: Bits,
    stride: int,
    row_ready: Flags,
    state: Bits,
    odd: IndexArray,
    geometry: Geometry,
    levels: int,
    layout: Layout,
) -> tuple[int, IndexArray, Ranges]:
    """Flip the distinct ``bits`` everywhere (key, ready rows, path nodes of every started
    pass) and rescan. Returns (bits flipped, new odd set: the minimal odd nodes' ids,
    minimal odd ranges). ``layout``: (frames, n, frame_stride) as in :func:`unshuffle`."""
    offset, slots, block_size, frame_stride, n = geometry
    # Distinct bits (two passes can isolate the same error in one round): mark each in
    # the key's spare bit 1 instead of sorting.
    flips = np.empty(bits.size, dtype=np.int64)
    count = 0
    for x in bits:
        if key[x] & 2 == 0:
            key[x] |= 2
            flips[count] = x
            count += 1
    flips = flips[:count]
    for x in flips:
        key[x] &= 1
    passes, where = flip_positions(key, flips, positions, started, rows, stride, row_ready, layout)
    odd = toggle_paths(
        state, odd, passes, where, offset, slots, block_size, frame_stride, n, levels
    )
    frontier, kept = minimal_odd(odd, state, offset, slots, block_size, frame_stride, n)
    return flips.size, kept, frontier


@njit(cache=True, nogil=True)
def answer(
    query: Queries,
    alice: Bits,
    rows: Bits,
    stride: int,
    row_ready: Flags,
    state: Bits,
    offset: IndexArray,
    slots: IndexArray,
    orders: ArrayList,
    fp: IndexArray,
    fpos: IndexArray,
    layout: Layout,
) -> tuple[bool, Ranges, IndexArray, IndexArray, int]:
    """Bob's side of one reply: his parities of the queried halves, :func:`settle`, and the
    key positions of every bit found this round (``fp``/``fpos``: found while descending).

    Returns (ok, next frontier, found key positions, nodes that became odd, newly known);
    ok is False, with nothing changed, when a queried pass has no shuffled row yet.
    """
    qp, qb, qh, qs, qm, qe = query
    for t in range(qp.size):
        if not row_ready[qp[t]]:
            empty = np.empty(0, dtype=np.int64)
            return False, (empty, empty, empty, empty, empty), empty, empty, 0
    bob = range_parity(rows, stride, qp, qs, qm)
    op, ob, oh, os_, oe, sp, spos, fresh, new_known = settle(
        qp, qb, qh, qs, qm, qe, alice != bob, state, offset, slots
    )
    found = np.empty(fp.size + sp.size, dtype=np.int64)
    found[: fp.size] = unshuffle(fp, fpos, orders, layout)
    found[fp.size :] = unshuffle(sp, spos, orders, layout)
    return True, (op, ob, oh, os_, oe), found, fresh, new_known

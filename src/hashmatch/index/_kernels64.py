"""numba kernels for 64-bit hashes only: the bit-sliced (vertical) Flat scan.

CPUs without a vector popcount (AVX2) count bits with a nibble table: about ten vector
operations per four rows. Here the rows are stored transposed instead, in blocks of
``_BLOCK_ROWS``: word ``planes[b, j, l]`` holds bit ``j`` of the 64 rows
``b * _BLOCK_ROWS + 64 * l + (0 .. 63)``. XOR with the query's bit ``j`` spread over a
word gives "row differs in bit j" for 64 rows at once, and a carry-save adder tree
(Harley-Seal) adds these planes into per-row binary counts held bit-sliced, eight
planes at a time: about six logic operations per plane for 64 rows per lane (256 rows
per AVX2 register), and one ``vpternlogq`` per half adder on AVX-512.

The counts only grow, so after enough planes a block whose every row already
differs in more than ``r`` bits is dropped (for r = 8 most blocks stop after 40 of the
64 planes); a block that survives to the last plane has its exact counts, and only
its rows within ``r`` are written out. Everything in the plane loop is branch-free
over ``_LANES`` contiguous words, which LLVM vectorises.

Each kernel has a naive twin in ``tests/test_index64_kernels.py``.
"""

from __future__ import annotations

import math

import numpy as np

from numba import prange

from .._jit import njit
from ._kernels import popcount64

_LANES = 16  # 64-bit words per plane of a block (LLVM adds overlap checks only to loops of 16+)
_BLOCK_ROWS = 64 * _LANES
_PLANES = 64
_UNIT = 8  # planes added per step of the adder (one Harley-Seal round)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)  # bit b spread over a word: b * _ALL (no wraparound)
_STATE = 8  # adder words per lane: ones, twos, fours, then the eights in 5 bits


@njit(cache=True, nogil=True)
def sliced_planes(words):
    """The transposed copy of 64-bit ``words`` (n, 1): shape ``(blocks, 64, _LANES)``.

    Bit ``i`` of ``planes[b, j, l]`` is bit ``j`` (0 = least significant) of row
    ``b * _BLOCK_ROWS + 64 * l + i``; rows past the end are zero (and never reported).
    """
    n = words.shape[0]
    nb = (n + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    planes = np.zeros((nb, _PLANES * _LANES), dtype=np.uint64)
    flat = words.reshape(n)
    for b in range(nb):
        for lane in range(_LANES):
            r0 = b * _BLOCK_ROWS + 64 * lane
            m = min(64, n - r0)
            for j in range(_PLANES):
                w = _ZERO
                for i in range(max(m, 0)):
                    w |= ((flat[r0 + i] >> np.uint64(j)) & _ONE) << np.uint64(i)
                planes[b, j * _LANES + lane] = w
    return planes


@njit(cache=True, nogil=True, inline="always")
def _csa(a, b, c):
    """Full adder over 64 bit positions at once: (sum, carry)."""
    u = a ^ b
    return u ^ c, (a & b) | (u & c)


@njit(cache=True, nogil=True, inline="always")
def _add8(o, t, f, blk, lanes, qk, j, lane):
    """Harley-Seal round: add planes ``j .. j + 7`` (XOR the query) to the bit-sliced
    ones, twos and fours; returns them and the carry of weight eight."""
    o, ta = _csa(o, blk[j * lanes + lane] ^ qk[j], blk[(j + 1) * lanes + lane] ^ qk[j + 1])
    o, tb = _csa(o, blk[(j + 2) * lanes + lane] ^ qk[j + 2], blk[(j + 3) * lanes + lane] ^ qk[j + 3])
    t, fa = _csa(t, ta, tb)
    o, ta = _csa(o, blk[(j + 4) * lanes + lane] ^ qk[j + 4], blk[(j + 5) * lanes + lane] ^ qk[j + 5])
    o, tb = _csa(o, blk[(j + 6) * lanes + lane] ^ qk[j + 6], blk[(j + 7) * lanes + lane] ^ qk[j + 7])
    t, fb = _csa(t, ta, tb)
    f, eights = _csa(f, fa, fb)
    return o, t, f, eights


def prefilter_units(r):
    """Rounds of eight bits the first pass counts before dropping a block (0: none).

    The fewest rounds (3 to 6) after which a block of random rows still holds a row
    within ``r`` less than one time in ten; for larger ``r`` no early pass pays, and
    every block is counted in full.
    """
    for units in range(3, 7):
        bits = 8 * units
        p = sum(math.comb(bits, k) for k in range(min(r, bits) + 1)) / 2.0**bits
        if _BLOCK_ROWS * p <= 0.1:
            return units
    return 0


@njit(cache=True, nogil=True)
def sliced_chunk(planes, words, alive, queries, q0, q1, r, units, out_q, out_pos, out_dist, start, cap):
    """Range query of ``queries[q0:q1]`` over every row, from the transposed copy.

    ``r`` must be below 64 (a count needs 7 bits); ``units`` is
    :func:`prefilter_units` of ``r``: from that round on, a block stops once none
    of its rows is within ``r`` over the bits counted so far.
    """
    n = words.shape[0]
    flat = words.reshape(n)
    nq = q1 - q0
    qm = np.empty((nq, _PLANES), dtype=np.uint64)  # the queries' bits, each spread over a word
    for k in range(nq):
        q = queries[q0 + k, 0]
        for j in range(_PLANES):
            qm[k, j] = ((q >> np.uint64(j)) & _ONE) * _ALL
    # Every row's counter starts at 127 - r, so a row is past r exactly when its
    # counter reaches 128. Counters are ones + 2 twos + 4 fours + 8 eights with ones,
    # twos and fours single bits, so that is when the eights reach 16: one bit per
    # row says it, with no comparison.
    init = np.empty(_STATE, dtype=np.uint64)
    offset = np.uint64(127 - r)
    for i in range(_STATE - 1):
        init[i] = ((offset >> np.uint64(i)) & _ONE) * _ALL
    init[_STATE - 1] = _ZERO
    lanes = _LANES
    # One array holds the adder state (ones, twos, fours, then the eights count):
    # LLVM checks it once against the block for overlap and vectorises the lane loop
    # (it adds no such check to loops shorter than 16, hence 16 lanes).
    st = np.empty((_STATE, _LANES), dtype=np.uint64)
    steps = _PLANES // _UNIT
    check = units if units else steps
    cnt = 0
    for b in range(planes.shape[0]):
        blk = planes[b]
        for k in range(nq):
            qk = qm[k]
            for i in range(_STATE):
                st[i, :] = init[i]
            complete = True
            for s in range(steps):
                j = s * _UNIT
                for lane in range(lanes):
                    o, t, f, eights = _add8(st[0, lane], st[1, lane], st[2, lane], blk, lanes, qk, j, lane)
                    st[0, lane] = o
                    st[1, lane] = t
                    st[2, lane] = f
                    e1 = st[3, lane]  # add the carry to the bit-sliced count of eights
                    e2 = st[4, lane]
                    e4 = st[5, lane]
                    e8 = st[6, lane]
                    c = e1 & eights
                    c2 = e2 & c
                    c3 = e4 & c2
                    st[3, lane] = e1 ^ eights
                    st[4, lane] = e2 ^ c
                    st[5, lane] = e4 ^ c2
                    st[6, lane] = e8 ^ c3
                    st[7, lane] |= e8 & c3
                if s + 1 >= check and s + 1 < steps:
                    near = _ZERO
                    for lane in range(lanes):
                        near |= ~st[7, lane]
                    if near == _ZERO:  # every row of the block is already past r
                        complete = False
                        break
            if not complete:
                continue
            qi = q0 + k
            qv = queries[qi, 0]
            for lane in range(lanes):
                h = ~st[7, lane]
                while h != _ZERO:
                    low = h & ~(h - _ONE)
                    h ^= low
                    row = b * _BLOCK_ROWS + 64 * lane + np.int64(popcount64(low - _ONE))
                    if row < n and alive[row]:
                        if cnt < cap:
                            out_q[start + cnt] = qi
                            out_pos[start + cnt] = row
                            out_dist[start + cnt] = np.int32(popcount64(flat[row] ^ qv))
                        cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def sliced_query(planes, words, alive, queries, bounds, r, units, out_q, out_pos, out_dist, cap, counts):
    """:func:`sliced_chunk` for each chunk of queries, one thread."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = sliced_chunk(planes, words, alive, queries, bounds[c], bounds[c + 1], r, units,
                                 out_q, out_pos, out_dist, c * cap, cap)


@njit(cache=True, nogil=True, parallel=True)
def sliced_query_parallel(planes, words, alive, queries, bounds, r, units, out_q, out_pos, out_dist, cap, counts):
    """:func:`sliced_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = sliced_chunk(planes, words, alive, queries, bounds[c], bounds[c + 1], r, units,
                                 out_q, out_pos, out_dist, c * cap, cap)

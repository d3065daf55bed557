"""numba kernels of the bit-sliced (vertical) Flat scan, for any word count.

Without a vector popcount (AVX2), counting bits row by row costs about ten vector
operations per four 64-bit rows (a nibble table). Here the rows are stored transposed
instead, in blocks of ``_BLOCK_ROWS``: word ``planes[b, j * _LANES + l]`` holds bit ``j``
of the 64 rows ``b * _BLOCK_ROWS + 64 * l + (0 .. 63)`` (bit ``j`` of a row is bit
``j % 64``, least significant first, of its word ``j // 64``). A carry-save adder tree
(Harley-Seal) adds planes into per-row binary counts held bit-sliced, eight planes per
round: five logic operations per plane for 64 rows per lane (256 rows per AVX2
register; two ``vpternlogq`` per full adder on AVX-512).

Three things keep the work per row small:

- **No query XOR.** A row differs from the query in bit ``j`` when plane ``j`` is 1 and
  the query's bit is 0, or plane ``j`` is 0 and the query's bit is 1. The planes of
  the query's one-bits are added first, then the counter is complemented (``~V`` is
  ``2**K - 1 - V`` for a ``K``-bit count held as bits), then the planes of its
  zero-bits are added: with the start value ``2**K - 1 - (planes of one-bits)`` that
  leaves exactly the distance over those planes. Each query picks its planes so that
  both runs are whole rounds of eight, so no round needs the query at all.
- **Only some planes.** A query counts ``8 * rounds`` planes (:func:`sliced_rounds`);
  the distance over them is a lower bound on the full distance. A row whose partial
  distance is within ``r`` is then checked in full from the row-order words (scalar
  popcount), so the answer is exact whatever planes were chosen. For random rows,
  ``rounds`` is chosen so that such checks are rare (64 bits, r = 8: 40 planes, 0.1
  rows per block of 1,024; 256 bits, r = 31: 96 planes, 0.4 rows).
- **Branch-free lanes.** The adder loop runs over ``_LANES`` contiguous words with no
  data-dependent branch, which LLVM vectorises; the only branch per block and query
  is "does any row survive".

Each kernel has a naive twin in ``tests/test_sliced_kernels.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import njit
from ._kernels import popcount64

_LANES = 64  # 64-bit words per plane of a block
_BLOCK_ROWS = 64 * _LANES
_ROUND = 8  # inputs (groups of planes) added per Harley-Seal round
_GROUP = 4  # plane slots per group
_CBITS = 6  # counter bits: ones, twos, fours, then three bits of eights (counts up to 63)
_MAX_ROUNDS = 7  # 56 inputs: the count stays below 2**_CBITS
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)  # bit b spread over a word: b * _ALL (no wraparound)

# Cost model of :func:`sliced_rounds`, in CPU cycles per block of _BLOCK_ROWS rows and
# query: one round of eight planes, and one row checked in full (a mispredicted branch
# and a row read). Measured on the AMD EPYC of notes/issue-14-flat.md (AVX2 build).
_ROUND_COST = 40.0
_ROW_COST = 30.0


def sliced_rounds(r: int, nw: int) -> int:
    """Rounds of eight planes a query counts before checking rows in full, for radius
    ``r`` and ``nw`` words per row: the fewest expected cycles for random rows.

    At most ``8 * nw - 1`` rounds (a query picks whole rounds of its one-bits and its
    zero-bits, which leaves one round spare) and at most ``_MAX_ROUNDS``.
    """
    best, best_cost = 1, math.inf
    for rounds in range(1, min(8 * nw - 1, _MAX_ROUNDS) + 1):
        bits = _ROUND * rounds
        p = sum(math.comb(bits, k) for k in range(min(r, bits) + 1)) / 2.0**bits
        cost = rounds * _ROUND_COST + _BLOCK_ROWS * p * _ROW_COST
        if cost < best_cost:
            best, best_cost = rounds, cost
    return best


def sliced_cost(r: int, nw: int) -> float:
    """Expected cycles per row and query of the sliced scan at radius ``r`` (random rows)."""
    rounds = sliced_rounds(r, nw)
    bits = _ROUND * rounds
    p = sum(math.comb(bits, k) for k in range(min(r, bits) + 1)) / 2.0**bits
    return (rounds * _ROUND_COST + _BLOCK_ROWS * p * _ROW_COST) / _BLOCK_ROWS


@njit(cache=True, nogil=True)
def sliced_planes(words):
    """The transposed copy of ``words`` (n, nw): shape ``(blocks, 64 * nw * _LANES)``.

    Bit ``i`` of ``planes[b, j * _LANES + l]`` is bit ``j % 64`` (0 = least significant)
    of word ``j // 64`` of row ``b * _BLOCK_ROWS + 64 * l + i``; rows past the end are
    zero (and never reported).
    """
    n, nw = words.shape
    nb = (n + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    planes = np.zeros((nb, 64 * nw * _LANES), dtype=np.uint64)
    for b in range(nb):
        for lane in range(_LANES):
            r0 = b * _BLOCK_ROWS + 64 * lane
            m = max(0, min(64, n - r0))
            for k in range(nw):
                for bit in range(64):
                    w = _ZERO
                    for i in range(m):
                        w |= ((words[r0 + i, k] >> np.uint64(bit)) & _ONE) << np.uint64(i)
                    planes[b, (64 * k + bit) * _LANES + lane] = w
    return planes


@njit(cache=True, nogil=True, inline="always")
def _csa(a, b, c):
    """Full adder over 64 bit positions at once: (sum, carry)."""
    u = a ^ b
    return u ^ c, (a & b) | (u & c)


@njit(cache=True, nogil=True, inline="always")
def _add8(o, t, f, x0, x1, x2, x3, x4, x5, x6, x7):
    """Harley-Seal round: add eight inputs to the bit-sliced ones, twos and fours;
    returns them and the carry of weight eight."""
    o, ta = _csa(o, x0, x1)
    o, tb = _csa(o, x2, x3)
    t, fa = _csa(t, ta, tb)
    o, ta = _csa(o, x4, x5)
    o, tb = _csa(o, x6, x7)
    t, fb = _csa(t, ta, tb)
    f, c = _csa(f, fa, fb)
    return o, t, f, c


@njit(cache=True, nogil=True)
def _plane_order(queries, q0, q1, rounds, gmax, order, phase, init):
    """Per query: its groups of planes (offsets into a block; groups of its one-bits
    first, ``_GROUP`` slots each, short groups repeat their first plane), the rounds
    of one-bit groups (``phase``) and the counter's start value as spread bits."""
    nw = queries.shape[1]
    nbits = 64 * nw
    ones = np.empty(nbits, dtype=np.int64)
    zeros = np.empty(nbits, dtype=np.int64)
    for k in range(q1 - q0):
        c1 = 0
        c0 = 0
        for j in range(nbits):
            if (queries[q0 + k, j // 64] >> np.uint64(j % 64)) & _ONE:
                ones[c1] = j
                c1 += 1
            else:
                zeros[c0] = j
                c0 += 1
        # rounds of one-bit groups, in proportion, each group holding at least one plane
        a = (rounds * c1 + nbits // 2) // nbits
        a = max(rounds - c0 // _ROUND, min(a, c1 // _ROUND))
        for part in range(2):
            src = ones if part == 0 else zeros
            count = c1 if part == 0 else c0
            ngroups = _ROUND * (a if part == 0 else rounds - a)
            g0 = 0 if part == 0 else _ROUND * a
            for g in range(ngroups):
                for m in range(_GROUP):
                    i = g + m * ngroups
                    j = src[i] if m < gmax and i < count else src[g]
                    order[k, g0 + g, m] = np.uint64(j * _LANES)
        phase[k] = a
        start = (1 << _CBITS) - 1 - _ROUND * a
        for i in range(_CBITS):
            init[k, i] = np.uint64((start >> i) & 1) * _ALL


@njit(cache=True, nogil=True)
def sliced_chunk(planes, words, alive, queries, q0, q1, r, rounds, gmax, out_q, out_pos, out_dist, start, cap):
    """Range query of ``queries[q0:q1]`` over every row, from the transposed copy.

    ``rounds`` and ``gmax`` (planes per group): :func:`sliced_plan`.
    """
    n, nw = words.shape
    nq = q1 - q0
    order = np.empty((nq, _ROUND * rounds, _GROUP), dtype=np.uint64)
    phase = np.empty(nq, dtype=np.int64)
    init = np.empty((nq, _CBITS), dtype=np.uint64)
    _plane_order(queries, q0, q1, rounds, gmax, order, phase, init)
    # r's bits spread over words, for the bit-sliced "count > r" after the rounds
    rzero = np.empty(_CBITS, dtype=np.uint64)
    for i in range(_CBITS):
        rzero[i] = np.uint64(1 - ((min(r, (1 << _CBITS) - 1) >> i) & 1)) * _ALL
    lanes = _LANES
    ulanes = np.uint64(_LANES)
    # One array holds the counter (ones, twos, fours, then the eights): LLVM checks it
    # against the block for overlap once per round and vectorises the lane loop.
    st = np.empty((_CBITS, _LANES), dtype=np.uint64)
    near = np.empty(_LANES, dtype=np.uint64)
    rr = np.uint64(r)
    cnt = 0
    for b in range(planes.shape[0]):
        blk = planes[b]
        for k in range(nq):
            for lane in range(ulanes):
                for i in range(_CBITS):
                    st[i, lane] = init[k, i]
            for s in range(rounds):
                if s == phase[k]:  # one-bits done: complement, then add the zero-bits' groups
                    for lane in range(ulanes):
                        for i in range(_CBITS):
                            st[i, lane] ^= _ALL
                og = order[k, s * _ROUND : s * _ROUND + _ROUND]  # unsigned offsets: no wraparound
                p00, p01, p02, p03 = og[0, 0], og[0, 1], og[0, 2], og[0, 3]
                p10, p11, p12, p13 = og[1, 0], og[1, 1], og[1, 2], og[1, 3]
                p20, p21, p22, p23 = og[2, 0], og[2, 1], og[2, 2], og[2, 3]
                p30, p31, p32, p33 = og[3, 0], og[3, 1], og[3, 2], og[3, 3]
                p40, p41, p42, p43 = og[4, 0], og[4, 1], og[4, 2], og[4, 3]
                p50, p51, p52, p53 = og[5, 0], og[5, 1], og[5, 2], og[5, 3]
                p60, p61, p62, p63 = og[6, 0], og[6, 1], og[6, 2], og[6, 3]
                p70, p71, p72, p73 = og[7, 0], og[7, 1], og[7, 2], og[7, 3]
                if s < phase[k]:  # a group of one-bits: counted when all its planes are 1
                    for lane in range(ulanes):
                        o, t, f, c = _add8(
                            st[0, lane], st[1, lane], st[2, lane],
                            blk[p00 + lane] & blk[p01 + lane] & blk[p02 + lane] & blk[p03 + lane],
                            blk[p10 + lane] & blk[p11 + lane] & blk[p12 + lane] & blk[p13 + lane],
                            blk[p20 + lane] & blk[p21 + lane] & blk[p22 + lane] & blk[p23 + lane],
                            blk[p30 + lane] & blk[p31 + lane] & blk[p32 + lane] & blk[p33 + lane],
                            blk[p40 + lane] & blk[p41 + lane] & blk[p42 + lane] & blk[p43 + lane],
                            blk[p50 + lane] & blk[p51 + lane] & blk[p52 + lane] & blk[p53 + lane],
                            blk[p60 + lane] & blk[p61 + lane] & blk[p62 + lane] & blk[p63 + lane],
                            blk[p70 + lane] & blk[p71 + lane] & blk[p72 + lane] & blk[p73 + lane])
                        st[0, lane] = o
                        st[1, lane] = t
                        st[2, lane] = f
                        for i in range(3, _CBITS):  # add the carry of weight eight
                            e = st[i, lane]
                            st[i, lane] = e ^ c
                            c = e & c
                else:  # a group of zero-bits: counted when any of its planes is 1
                    for lane in range(ulanes):
                        o, t, f, c = _add8(
                            st[0, lane], st[1, lane], st[2, lane],
                            blk[p00 + lane] | blk[p01 + lane] | blk[p02 + lane] | blk[p03 + lane],
                            blk[p10 + lane] | blk[p11 + lane] | blk[p12 + lane] | blk[p13 + lane],
                            blk[p20 + lane] | blk[p21 + lane] | blk[p22 + lane] | blk[p23 + lane],
                            blk[p30 + lane] | blk[p31 + lane] | blk[p32 + lane] | blk[p33 + lane],
                            blk[p40 + lane] | blk[p41 + lane] | blk[p42 + lane] | blk[p43 + lane],
                            blk[p50 + lane] | blk[p51 + lane] | blk[p52 + lane] | blk[p53 + lane],
                            blk[p60 + lane] | blk[p61 + lane] | blk[p62 + lane] | blk[p63 + lane],
                            blk[p70 + lane] | blk[p71 + lane] | blk[p72 + lane] | blk[p73 + lane])
                        st[0, lane] = o
                        st[1, lane] = t
                        st[2, lane] = f
                        for i in range(3, _CBITS):  # add the carry of weight eight
                            e = st[i, lane]
                            st[i, lane] = e ^ c
                            c = e & c
            if phase[k] == rounds:  # every round was one-bits
                for lane in range(ulanes):
                    for i in range(_CBITS):
                        st[i, lane] ^= _ALL
            anyone = _ZERO
            for lane in range(ulanes):
                gt = _ZERO  # count > r, from the least significant bit up
                for i in range(_CBITS):
                    v = st[i, lane]
                    gt = (v & gt) | (rzero[i] & (v | gt))
                near[lane] = ~gt
                anyone |= ~gt
            if anyone == _ZERO:
                continue
            qi = q0 + k
            for lane in range(lanes):
                h = near[lane]
                while h != _ZERO:
                    low = h & ~(h - _ONE)
                    h ^= low
                    row = b * _BLOCK_ROWS + 64 * lane + np.int64(popcount64(low - _ONE))
                    if row < n and alive[row]:
                        d = _ZERO
                        for w in range(nw):
                            d += popcount64(words[row, w] ^ queries[qi, w])
                        if d <= rr:
                            if cnt < cap:
                                out_q[start + cnt] = qi
                                out_pos[start + cnt] = row
                                out_dist[start + cnt] = np.int32(d)
                            cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def sliced_query(planes, words, alive, queries, bounds, r, rounds, gmax, out_q, out_pos, out_dist, cap, counts):
    """:func:`sliced_chunk` for each chunk of queries, one thread."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = sliced_chunk(planes, words, alive, queries, bounds[c], bounds[c + 1], r, rounds, gmax,
                                 out_q, out_pos, out_dist, c * cap, cap)


@njit(cache=True, nogil=True, parallel=True)
def sliced_query_parallel(planes, words, alive, queries, bounds, r, rounds, gmax, out_q, out_pos, out_dist, cap, counts):
    """:func:`sliced_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = sliced_chunk(planes, words, alive, queries, bounds[c], bounds[c + 1], r, rounds, gmax,
                                 out_q, out_pos, out_dist, c * cap, cap)

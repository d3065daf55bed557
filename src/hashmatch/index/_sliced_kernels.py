"""numba kernels of the bit-sliced (vertical) Flat scan, for any word count.

Without a vector popcount (AVX2), counting bits row by row costs about ten vector
operations per four 64-bit rows (a nibble table). Here the rows are stored transposed,
in blocks of ``_BLOCK_ROWS`` rows, 64 rows per word: one "plane" of a block is
``_LANES`` words holding one bit of each of its rows, and logic operations on planes
work on 64 rows per word (256 per AVX2 register, 512 per AVX-512 one).

**Pair planes.** For each pair of bits ``(2i, 2i + 1)`` of a row (bit ``j`` is bit
``j % 64``, least significant first, of word ``j // 64``) the copy holds four planes,
one per value ``c`` a query can have in those two bits: plane ``4i + c`` is 1 where
the row's pair equals ``c``. So a query reads, for each pair, the plane of its own
value, with no XOR: 1 means "agrees with the query in both bits".

**A lower bound, then exact checks.** A query splits some of its pairs into ``8 *
rounds`` groups of ``group`` pairs. A group is 1 where the row agrees with the query
in all its bits (the AND of its pair planes); a row that differs from the query in
``d`` bits disagrees with at most ``d`` groups. A carry-save adder tree (Harley-Seal,
five logic operations per input, ``vpternlogq`` on AVX-512) counts the agreeing
groups ``A``, eight per round, bit-sliced; a row can be within ``r`` only if
``groups - A <= r``. Those few rows (for random rows, 0.016 in 8,192 at 64 bits and
r = 8, 2e-5 at 256 bits and r = 31, with the chosen plans) are checked in full from the
row-order words with scalar popcounts, so the answer is exact whatever groups were
chosen. Groups of
two pairs (four bits) disagree with a random row with probability 15/16, so 16
groups (two rounds, 98 logic operations per 256 rows) already separate a 64-bit
query at r = 8 from nearly every row; a bit-by-bit count needs 40 planes for that.

The round loop runs over ``_LANES`` contiguous words with no data-dependent branch,
which LLVM vectorises; the only branch per block and query is "does any row pass".
:func:`sliced_plan` picks ``rounds`` and ``group`` from ``r`` with a cost model, or
says the row-order scan is cheaper (large radii, where the bound prunes little).

Each kernel has a naive twin in ``tests/test_sliced_kernels.py``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numba import prange

from .._jit import njit
from ._kernels import popcount64

_LANES = 128  # words per plane of a block: 8,192 rows; a 64-bit query's 32 planes stay in L1
_BLOCK_ROWS = 64 * _LANES
_ROUND = 8  # inputs (groups) added per Harley-Seal round
_GROUP = 2  # pair planes per group slot (a one-pair group repeats its pair)
_CBITS = 6  # counter bits: ones, twos, fours, then three bits of eights (counts up to 63)
_MAX_ROUNDS = 7  # 56 groups: the count stays below 2**_CBITS
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)  # bit b spread over a word: b * _ALL (no wraparound)

# Cost model of :func:`sliced_plan`, in vector logic operations per 256 rows and query
# (one AVX2 register of each plane). A round: 35 adder operations, about 9 for the
# counter's upper bits and state, and one AND per extra pair of a group. A row that
# passes the bound: a random read of its row-order words, mostly a cache miss (about
# 300 cycles, 1,200 operations). A block with any passing row: a scan of its lanes.
# The row-order scan (nibble-table popcount): 2.1x to 3.5x of the chosen plans, measured
# on the AMD EPYC of notes/issue-14-flat.md (AVX2 build): 368 operations at 64 bits,
# 1,322 at 256.
_ROUND_OPS = 44.0
_ROW_OPS = 1200.0
_SCAN_OPS = 8.0 * _LANES / (_BLOCK_ROWS / 256)


def _row_order_ops(nw: int) -> float:
    return 50.0 + 318.0 * nw


def _pass_probability(groups: int, group: int, r: int) -> float:
    """Probability that a random row disagrees with at most ``r`` of ``groups`` groups
    of ``group`` pairs each (it then passes the bound and is checked in full)."""
    p = 1.0 - 4.0 ** (-group)  # a group disagrees
    return sum(math.comb(groups, k) * p**k * (1 - p) ** (groups - k) for k in range(min(r, groups) + 1))


@lru_cache(maxsize=512)
def sliced_plan(r: int, nw: int) -> tuple[int, int] | None:
    """``(rounds, group)`` for radius ``r`` and ``nw`` words per row: the fewest
    expected operations for random rows; None when the row-order scan costs less."""
    best: tuple[int, int] | None = None
    best_cost = _row_order_ops(nw)
    for group in (1, 2):
        for rounds in range(1, _MAX_ROUNDS + 1):
            if _ROUND * rounds * group > 32 * nw:  # more pairs than the row has
                break
            p = _pass_probability(_ROUND * rounds, group, r)
            any_in_block = 1.0 - (1.0 - p) ** _BLOCK_ROWS
            cost = rounds * (_ROUND_OPS + _ROUND * (group - 1)) + 256 * p * _ROW_OPS + any_in_block * _SCAN_OPS
            if cost < best_cost:
                best, best_cost = (rounds, group), cost
    return best


@njit(cache=True, nogil=True)
def sliced_planes(words):
    """The pair-plane copy of ``words`` (n, nw): shape ``(blocks, 128 * nw * _LANES)``.

    Bit ``i`` of word ``l`` of plane ``4 * pair + c`` of block ``b`` (at
    ``planes[b, (4 * pair + c) * _LANES + l]``) is 1 when bits ``2 * pair`` and
    ``2 * pair + 1`` of row ``b * _BLOCK_ROWS + 64 * l + i`` equal ``c & 1`` and
    ``c >> 1``. Rows past the end are zero rows (and never reported).
    """
    n, nw = words.shape
    nb = (n + _BLOCK_ROWS - 1) // _BLOCK_ROWS
    planes = np.zeros((nb, 128 * nw * _LANES), dtype=np.uint64)
    for b in range(nb):
        for lane in range(_LANES):
            r0 = b * _BLOCK_ROWS + 64 * lane
            m = max(0, min(64, n - r0))
            for k in range(nw):
                for bit in range(0, 64, 2):
                    lo = _ZERO
                    hi = _ZERO
                    for i in range(64):
                        w = words[r0 + i, k] if i < m else _ZERO
                        lo |= ((w >> np.uint64(bit)) & _ONE) << np.uint64(i)
                        hi |= ((w >> np.uint64(bit + 1)) & _ONE) << np.uint64(i)
                    at = (2 * (64 * k + bit)) * _LANES + lane  # 4 * pair planes in
                    planes[b, at] = ~lo & ~hi
                    planes[b, at + _LANES] = lo & ~hi
                    planes[b, at + 2 * _LANES] = ~lo & hi
                    planes[b, at + 3 * _LANES] = lo & hi
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
def group_order(queries, q0, q1, rounds, group, order):
    """Per query, the pair planes of its groups as offsets into a block:
    ``order[k, g, s]`` for group ``g`` and slot ``s`` (a one-pair group repeats it)."""
    for k in range(q1 - q0):
        for g in range(_ROUND * rounds):
            for s in range(_GROUP):
                pair = g * group + min(s, group - 1)
                bits = (queries[q0 + k, pair // 32] >> np.uint64(2 * (pair % 32))) & np.uint64(3)
                order[k, g, s] = np.uint64((4 * pair + np.int64(bits)) * _LANES)


@njit(cache=True, nogil=True)
def sliced_chunk(planes, words, alive, queries, q0, q1, r, rounds, group, out_q, out_pos, out_dist, start, cap):
    """Range query of ``queries[q0:q1]`` over every row, from the pair-plane copy;
    ``(rounds, group)`` from :func:`sliced_plan` (``8 * rounds * group`` pairs at most
    ``32 * nw``, ``rounds`` at most ``_MAX_ROUNDS``)."""
    n, nw = words.shape
    nq = q1 - q0
    ngroups = _ROUND * rounds
    order = np.empty((nq, ngroups, _GROUP), dtype=np.uint64)
    group_order(queries, q0, q1, rounds, group, order)
    # A row passes when it agrees with at least ngroups - r groups, i.e. when its
    # count is above ngroups - r - 1: that constant's zero bits, spread over words.
    # With ngroups - r <= 0 every row passes (the bound says nothing).
    need = ngroups - r - 1
    every = need < 0
    zero_bits = np.empty(_CBITS, dtype=np.uint64)
    for i in range(_CBITS):
        zero_bits[i] = np.uint64(1 - ((max(need, 0) >> i) & 1)) * _ALL
    lanes = np.uint64(_LANES)
    # One array holds the counter (ones, twos, fours, then the eights): LLVM checks it
    # against the planes for overlap once per round and vectorises the lane loop.
    st = np.empty((_CBITS, _LANES), dtype=np.uint64)
    rr = np.uint64(r)
    cnt = 0
    for b in range(planes.shape[0]):
        blk = planes[b]
        for k in range(nq):
            for lane in range(lanes):
                for i in range(_CBITS):
                    st[i, lane] = _ZERO
            for s in range(rounds):
                og = order[k, s * _ROUND : s * _ROUND + _ROUND]
                # unsigned offsets: no negative-index wraparound, so the loads vectorise
                p00, p01, p10, p11 = og[0, 0], og[0, 1], og[1, 0], og[1, 1]
                p20, p21, p30, p31 = og[2, 0], og[2, 1], og[3, 0], og[3, 1]
                p40, p41, p50, p51 = og[4, 0], og[4, 1], og[5, 0], og[5, 1]
                p60, p61, p70, p71 = og[6, 0], og[6, 1], og[7, 0], og[7, 1]
                for lane in range(lanes):
                    o, t, f, c = _add8(
                        st[0, lane], st[1, lane], st[2, lane],
                        blk[p00 + lane] & blk[p01 + lane], blk[p10 + lane] & blk[p11 + lane],
                        blk[p20 + lane] & blk[p21 + lane], blk[p30 + lane] & blk[p31 + lane],
                        blk[p40 + lane] & blk[p41 + lane], blk[p50 + lane] & blk[p51 + lane],
                        blk[p60 + lane] & blk[p61 + lane], blk[p70 + lane] & blk[p71 + lane])
                    st[0, lane] = o
                    st[1, lane] = t
                    st[2, lane] = f
                    for i in range(3, _CBITS):  # add the carry of weight eight
                        e = st[i, lane]
                        st[i, lane] = e ^ c
                        c = e & c
            anyone = _ZERO
            for lane in range(lanes):
                above = _ZERO  # count > need, from the least significant bit up
                for i in range(_CBITS):
                    v = st[i, lane]
                    above = (v & above) | (zero_bits[i] & (v | above))
                st[0, lane] = above  # the ones are no longer needed: rows that pass
                anyone |= above
            if anyone == _ZERO and not every:
                continue
            qi = q0 + k
            for lane in range(_LANES):
                h = _ALL if every else st[0, lane]
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
def sliced_query(planes, words, alive, queries, bounds, r, rounds, group, out_q, out_pos, out_dist, cap, counts):
    """:func:`sliced_chunk` for each chunk of queries, one thread."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = sliced_chunk(planes, words, alive, queries, bounds[c], bounds[c + 1], r, rounds, group,
                                 out_q, out_pos, out_dist, c * cap, cap)


@njit(cache=True, nogil=True, parallel=True)
def sliced_query_parallel(planes, words, alive, queries, bounds, r, rounds, group, out_q, out_pos, out_dist, cap,
                          counts):
    """:func:`sliced_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = sliced_chunk(planes, words, alive, queries, bounds[c], bounds[c + 1], r, rounds, group,
                                 out_q, out_pos, out_dist, c * cap, cap)

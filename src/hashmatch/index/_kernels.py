"""numba kernels of the exact Hamming indexes.

Plain C-contiguous arrays and scalars in and out; the Python classes validate and
shape. Every range-query kernel writes its matches for a chunk of queries into a
slice ``[chunk * cap, chunk * cap + cap)`` of three flat output arrays (query
position, entry position, distance) and returns how many matches each chunk *has*,
even past ``cap``: the caller reruns an overflowing chunk with the exact capacity.
That keeps the kernels allocation-free in the hot loop and lets ``prange`` chunks
write without sharing anything.

Each kernel has a naive twin in ``tests/test_index_kernels.py``.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numba.core import config

from .._jit import njit, prefetch

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_FOUR = np.uint64(4)
_SIXTY_FOUR = np.uint64(64)
_FIFTY_SIX = np.uint64(56)


@njit(cache=True, nogil=True, inline="always")
def popcount64(x):
    """Set bits of a uint64. LLVM turns this SWAR form into one ``popcnt``."""
    x = x - ((x >> _ONE) & _M1)
    x = (x & _M2) + ((x >> _TWO) & _M2)
    x = (x + (x >> _FOUR)) & _M4
    return (x * _H01) >> _FIFTY_SIX


if config.DISABLE_JIT:  # pragma: no cover - pure-Python runs for coverage
    # numpy scalars warn on the wrapping multiply above; warnings are errors in tests.
    def popcount64(x):  # type: ignore[no-redef]  # noqa: F811
        return np.uint64(int(x).bit_count())


@njit(cache=True, nogil=True, inline="always")
def row_distance(words, i, q, limit):
    """Hamming distance of ``words[i]`` to ``q``; stops early once past ``limit``."""
    d = np.uint64(0)
    for k in range(words.shape[1]):
        d += popcount64(words[i, k] ^ q[k])
        if d > limit:
            break
    return d


@njit(cache=True, nogil=True, inline="always")
def full_distance(words, i, q):
    """Hamming distance without an early exit: no data-dependent branch, so the CPU keeps
    many independent random-access loads in flight (a mispredicted exit would flush them)."""
    d = np.uint64(0)
    for k in range(words.shape[1]):
        d += popcount64(words[i, k] ^ q[k])
    return d


@njit(cache=True, nogil=True, inline="always")
def substring_key(row, start, length):
    """Bits ``[start, start + length)`` of a hash row (bit 0 = most significant), as an int.

    ``length`` is at most 32, so a substring spans at most two words.
    """
    w = start // 64
    o = start % 64
    mask = (np.uint64(1) << np.uint64(length)) - _ONE
    if o + length <= 64:
        return np.int64((row[w] >> np.uint64(64 - o - length)) & mask)
    high = 64 - o  # bits taken from word w
    low = length - high  # bits taken from the top of word w + 1
    value = (row[w] << np.uint64(low)) | (row[w + 1] >> np.uint64(64 - low))
    return np.int64(value & mask)


# ---------------------------------------------------------------------------------
# Flat: blocked brute-force scan, two passes
# ---------------------------------------------------------------------------------
# Pass 1 takes the least distance of a block of rows to one query: a loop with no
# data-dependent branch or store, over unit-stride memory, which LLVM vectorises
# (vpopcntq on AVX-512 VPOPCNTDQ, a vpshufb nibble table on AVX2; checked in the
# asm, see notes/issue-14.md). Pass 2 runs only for a block that holds a match, and
# writes the matches. Indexing slices with a range from 0 lets LLVM drop numba's
# negative-index wraparound, which otherwise turns the loads into gathers.
_FLAT_BLOCK = 2048  # rows per block: 16 KiB of 64-bit rows, in L1 across the query chunk
# Pass 1 keeps its minimum in 32-bit lanes: AVX2 has an unsigned 32-bit vector min
# but no 64-bit one (measured 1.5x on the AVX2 build, no change with AVX-512).
_NO_DISTANCE = np.uint32(1 << 20)  # above any distance


@njit(cache=True, nogil=True, inline="always")
def _least_distance(run, q0):
    """Least distance of a unit-stride run of 64-bit rows to ``q0`` (branch-free: vectorises)."""
    least = _NO_DISTANCE
    for j in range(run.shape[0]):
        least = min(least, np.uint32(popcount64(run[j] ^ q0)))
    return least


@njit(cache=True, nogil=True)
def _emit_block(words, alive, b0, b1, q, qi, rr, out_q, out_pos, out_dist, start, cap, cnt):
    """Pass 2: the rows of ``[b0, b1)`` within ``rr`` of ``q``, written out."""
    for i in range(b0, b1):
        d = full_distance(words, i, q)
        if d <= rr and alive[i]:
            if cnt < cap:
                out_q[start + cnt] = qi
                out_pos[start + cnt] = i
                out_dist[start + cnt] = np.int32(d)
            cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def flat_chunk_1(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    """64-bit rows."""
    n = words.shape[0]
    flat = words.reshape(n)
    rr = np.uint64(r)
    cnt = 0
    for b0 in range(0, n, _FLAT_BLOCK):
        b1 = min(n, b0 + _FLAT_BLOCK)
        blk = flat[b0:b1]
        for qi in range(q0, q1):
            if _least_distance(blk, queries[qi, 0]) <= rr:
                cnt = _emit_block(words, alive, b0, b1, queries[qi], qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def flat_chunk_4(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    """256-bit rows in row order (stride-4 loads; :func:`flat_query_blocked` avoids them)."""
    n = words.shape[0]
    flat = words.reshape(4 * n)
    rr = np.uint64(r)
    cnt = 0
    for b0 in range(0, n, _FLAT_BLOCK):
        b1 = min(n, b0 + _FLAT_BLOCK)
        blk = flat[4 * b0 : 4 * b1]
        for qi in range(q0, q1):
            qa = queries[qi, 0]
            qb = queries[qi, 1]
            qc = queries[qi, 2]
            qd = queries[qi, 3]
            least = _NO_DISTANCE
            for j in range(b1 - b0):
                d = (popcount64(blk[4 * j] ^ qa) + popcount64(blk[4 * j + 1] ^ qb)
                     + popcount64(blk[4 * j + 2] ^ qc) + popcount64(blk[4 * j + 3] ^ qd))
                least = min(least, np.uint32(d))
            if least <= rr:
                cnt = _emit_block(words, alive, b0, b1, queries[qi], qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def flat_chunk_n(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    """Any other word count: per-word passes into a block of distances, then its minimum."""
    n, nw = words.shape
    flat = words.reshape(n * nw)
    rr = np.uint64(r)
    dist = np.empty(_FLAT_BLOCK, dtype=np.uint64)
    cnt = 0
    for b0 in range(0, n, _FLAT_BLOCK):
        b1 = min(n, b0 + _FLAT_BLOCK)
        m = b1 - b0
        blk = flat[nw * b0 : nw * b1]
        for qi in range(q0, q1):
            dist[:m] = 0
            for k in range(nw):
                qk = queries[qi, k]
                for j in range(m):
                    dist[j] += popcount64(blk[nw * j + k] ^ qk)
            least = _NO_DISTANCE
            for j in range(m):
                least = min(least, np.uint32(dist[j]))
            if least <= rr:
                cnt = _emit_block(words, alive, b0, b1, queries[qi], qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def _flat_chunk(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    nw = words.shape[1]
    if nw == 1:
        return flat_chunk_1(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)
    if nw == 4:
        return flat_chunk_4(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)
    return flat_chunk_n(words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)


# Longer hashes scan a copy regrouped by word: in each block of _WIDE_BLOCK rows,
# word k of every row is one contiguous run, so pass 1 streams nw unit-stride runs
# (no stride-nw shuffles; measured 1.7x faster than row order for 256 bits).
_WIDE_BLOCK = 1024  # 32 KiB per block of 256-bit rows


@njit(cache=True, nogil=True)
def flat_blocks(words):
    """Word-major copy of ``words``: word k of row ``b * _WIDE_BLOCK + j`` sits at
    ``(b * nw + k) * _WIDE_BLOCK + j``; the last block is zero-padded."""
    n, nw = words.shape
    nb = (n + _WIDE_BLOCK - 1) // _WIDE_BLOCK
    out = np.zeros(nb * nw * _WIDE_BLOCK, dtype=np.uint64)
    for i in range(n):
        b = i // _WIDE_BLOCK
        j = i - b * _WIDE_BLOCK
        for k in range(nw):
            out[(b * nw + k) * _WIDE_BLOCK + j] = words[i, k]
    return out


# A 256-bit block is first bounded from its first two words: over 128 random bits at
# most _HALF_PASS_MAX_R differ with probability 2e-5, so for such radii nearly every
# block is dropped after half the work (exact: the distance only grows with more words).
_HALF_PASS_MAX_R = 40


@njit(cache=True, nogil=True)
def blocked_chunk_4(blocks, words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    n = words.shape[0]
    rr = np.uint64(r)
    half = r <= _HALF_PASS_MAX_R
    cnt = 0
    for b0 in range(0, n, _WIDE_BLOCK):
        b1 = min(n, b0 + _WIDE_BLOCK)
        m = b1 - b0
        base = 4 * b0  # (b0 // _WIDE_BLOCK) * 4 * _WIDE_BLOCK
        w0 = blocks[base : base + m]
        w1 = blocks[base + _WIDE_BLOCK : base + _WIDE_BLOCK + m]
        w2 = blocks[base + 2 * _WIDE_BLOCK : base + 2 * _WIDE_BLOCK + m]
        w3 = blocks[base + 3 * _WIDE_BLOCK : base + 3 * _WIDE_BLOCK + m]
        for qi in range(q0, q1):
            qa = queries[qi, 0]
            qb = queries[qi, 1]
            qc = queries[qi, 2]
            qd = queries[qi, 3]
            if half:
                least = _NO_DISTANCE
                for j in range(m):
                    least = min(least, np.uint32(popcount64(w0[j] ^ qa) + popcount64(w1[j] ^ qb)))
                if least > rr:
                    continue
            least = _NO_DISTANCE
            for j in range(m):
                d = (popcount64(w0[j] ^ qa) + popcount64(w1[j] ^ qb)
                     + popcount64(w2[j] ^ qc) + popcount64(w3[j] ^ qd))
                least = min(least, np.uint32(d))
            if least <= rr:
                cnt = _emit_block(words, alive, b0, b1, queries[qi], qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def blocked_chunk_n(blocks, words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    n, nw = words.shape
    rr = np.uint64(r)
    dist = np.empty(_WIDE_BLOCK, dtype=np.uint64)
    cnt = 0
    for b0 in range(0, n, _WIDE_BLOCK):
        b1 = min(n, b0 + _WIDE_BLOCK)
        m = b1 - b0
        base = nw * b0
        for qi in range(q0, q1):
            dist[:m] = 0
            for k in range(nw):
                wk = blocks[base + k * _WIDE_BLOCK : base + k * _WIDE_BLOCK + m]
                qk = queries[qi, k]
                for j in range(m):
                    dist[j] += popcount64(wk[j] ^ qk)
            least = _NO_DISTANCE
            for j in range(m):
                least = min(least, np.uint32(dist[j]))
            if least <= rr:
                cnt = _emit_block(words, alive, b0, b1, queries[qi], qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def _blocked_chunk(blocks, words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap):
    if words.shape[1] == 4:
        return blocked_chunk_4(blocks, words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)
    return blocked_chunk_n(blocks, words, alive, queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)


@njit(cache=True, nogil=True)
def flat_query_blocked(blocks, words, alive, queries, bounds, r, out_q, out_pos, out_dist, cap, counts):
    """:func:`flat_query` over the word-major copy ``blocks`` (:func:`flat_blocks`) of ``words``."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = _blocked_chunk(
            blocks, words, alive, queries, bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap
        )


@njit(cache=True, nogil=True, parallel=True)
def flat_query_blocked_parallel(blocks, words, alive, queries, bounds, r, out_q, out_pos, out_dist, cap, counts):
    """:func:`flat_query_blocked` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = _blocked_chunk(
            blocks, words, alive, queries, bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap
        )


@njit(cache=True, nogil=True)
def flat_query(words, alive, queries, bounds, r, out_q, out_pos, out_dist, cap, counts):
    """Range query of every query against every live row, chunk by chunk, one thread."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = _flat_chunk(
            words, alive, queries, bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap
        )


@njit(cache=True, nogil=True, parallel=True)
def flat_query_parallel(words, alive, queries, bounds, r, out_q, out_pos, out_dist, cap, counts):
    """:func:`flat_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = _flat_chunk(
            words, alive, queries, bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap
        )


# ---------------------------------------------------------------------------------
# Shared: counting sort by a small integer key
# ---------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def bucket_order(keys, nbuckets):
    """Stable counting sort by a small key (uint32 keys, fewer than 2**32 rows).

    Returns ``(order, offsets)``: bucket b is ``order[offsets[b]:offsets[b+1]]``, with
    ``order`` uint32. 32-bit row numbers halve the memory traffic of the scatter, which
    dominates (measured 2x faster than int64, and faster than a two-pass radix sort).
    """
    n = keys.shape[0]
    offsets = np.zeros(nbuckets + 1, dtype=np.int64)
    for i in range(n):
        offsets[np.int64(keys[i]) + 1] += 1
    for b in range(nbuckets):
        offsets[b + 1] += offsets[b]
    fill = offsets[:-1].astype(np.uint32)
    order = np.empty(n, dtype=np.uint32)
    for i in range(n):
        k = np.int64(keys[i])
        order[fill[k]] = np.uint32(i)
        fill[k] += np.uint32(1)
    return order, offsets


@njit(cache=True, nogil=True)
def substring_keys(words, start, length):
    n = words.shape[0]
    keys = np.empty(n, dtype=np.uint32)
    for i in range(n):
        keys[i] = np.uint32(substring_key(words[i], start, length))
    return keys


@njit(cache=True, nogil=True)
def probe_count(lengths, radii):
    """Buckets probed per query: sum over tables of the ball volume ``sum_k C(length, k)``."""
    total = 0
    for t in range(lengths.shape[0]):
        c = 1
        for k in range(min(radii[t], lengths[t]) + 1):
            total += c
            c = c * (lengths[t] - k) // (k + 1)
    return total


@njit(cache=True, nogil=True)
def list_probes(q, starts, lengths, radii, probe_t, probe_b):
    """Every bucket a multi-index query probes, as (table, bucket) pairs into ``probe_t``
    and ``probe_b`` (sized by :func:`probe_count`); returns how many. Table t's
    probes are its key xor every mask of ``lengths[t]`` bits with k bits set, k = 0 ..
    ``radii[t]``, enumerated with Gosper's hack."""
    np_ = 0
    for t in range(starts.shape[0]):
        rt = radii[t]
        if rt < 0:
            continue
        length = lengths[t]
        key = substring_key(q, starts[t], length)
        limit = np.int64(1) << length
        for k in range(rt + 1):
            mask = (np.int64(1) << k) - 1
            while mask < limit:
                probe_t[np_] = t
                probe_b[np_] = key ^ mask
                np_ += 1
                if k == 0:
                    break
                low = mask & -mask
                ripple = mask + low
                mask = (((ripple ^ mask) >> 2) // low) | ripple
    return np_


# ---------------------------------------------------------------------------------
# Multi-index hashing
# ---------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def mih_tables(words, starts, lengths, table_offsets_at, copy_words):
    """Build the substring tables over rows already in table 0's bucket order.

    Returns ``(offsets, entries, table_words)``. Table t's bucket b spans positions
    ``offsets[at + b] : offsets[at + b + 1]`` (``at = table_offsets_at[t]``), int32.
    Table 0's positions are the row numbers themselves. For t >= 1, position p is row
    ``entries[(t - 1) * n + p]`` (uint32), and with ``copy_words`` (64-bit hashes)
    ``table_words[(t - 1) * n + p]`` is a copy of that row, so a probe verifies its
    candidates from one contiguous run instead of one cache miss each.
    """
    n = words.shape[0]
    m = starts.shape[0]
    entries = np.empty((m - 1) * n, dtype=np.uint32)
    table_words = np.empty(((m - 1) * n if copy_words else 0, words.shape[1]), dtype=np.uint64)
    offsets = np.empty(table_offsets_at[m], dtype=np.int32)
    for t in range(m):
        _mih_table(words, starts, lengths, table_offsets_at, copy_words, t, entries, table_words, offsets)
    return offsets, entries, table_words


@njit(cache=True, nogil=True)
def _mih_table(words, starts, lengths, table_offsets_at, copy_words, t, entries, table_words, offsets):
    """Fill table t's slices of the arrays :func:`mih_tables` returns."""
    n = words.shape[0]
    nb = np.int64(1) << lengths[t]
    keys = substring_keys(words, starts[t], lengths[t])
    order, offs = bucket_order(keys, nb)
    at = table_offsets_at[t]
    for b in range(nb + 1):
        offsets[at + b] = np.int32(offs[b])
    if t == 0:
        return
    base = (t - 1) * n
    for i in range(n):
        entries[base + i] = order[i]
    if copy_words:
        for i in range(n):
            e = np.int64(order[i])
            for k in range(words.shape[1]):
                table_words[base + i, k] = words[e, k]


@njit(cache=True, nogil=True, parallel=True)
def mih_tables_parallel(words, starts, lengths, table_offsets_at, copy_words):
    """:func:`mih_tables` with the tables built on numba's threads (loads of big indexes)."""
    n = words.shape[0]
    m = starts.shape[0]
    entries = np.empty((m - 1) * n, dtype=np.uint32)
    table_words = np.empty(((m - 1) * n if copy_words else 0, words.shape[1]), dtype=np.uint64)
    offsets = np.empty(table_offsets_at[m], dtype=np.int32)
    for t in prange(m):
        _mih_table(words, starts, lengths, table_offsets_at, copy_words, t, entries, table_words, offsets)
    return offsets, entries, table_words


@njit(cache=True, nogil=True)
def _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos, out_dist, start, cap, cnt):
    # Kept out of line: it runs only for true matches, and inlining it slows the probe loop.
    if not alive[e]:
        return cnt
    # Reported already if an earlier table's probe ball holds this row.
    for s in range(t):
        if radii[s] >= 0:
            ks = substring_key(words[e], starts[s], lengths[s])
            kq = substring_key(q, starts[s], lengths[s])
            if popcount64(np.uint64(ks ^ kq)) <= np.uint64(radii[s]):
                return cnt
    if cnt < cap:
        out_q[start + cnt] = qi
        out_pos[start + cnt] = e
        out_dist[start + cnt] = np.int32(d)
    return cnt + 1


@njit(cache=True, nogil=True, inline="always")
def _mih_probe_bucket(
    words, alive, entries, table_words, offsets, at, bucket, t, starts, lengths, radii, q, qi, rr,
    out_q, out_pos, out_dist, start, cap, cnt,
):
    n = words.shape[0]
    lo = np.int64(offsets[at + bucket])
    hi = np.int64(offsets[at + bucket + 1])
    if t == 0:  # rows are in table 0's order
        if words.shape[1] == 1:
            q0 = q[0]
            # Two passes, as in the flat scan: a vectorised least distance over the
            # bucket, then the (rare) writing pass.
            if _least_distance(words.reshape(n)[lo:hi], q0) > rr:
                return cnt
            for e in range(lo, hi):
                d = popcount64(words[e, 0] ^ q0)
                if d <= rr:
                    cnt = _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos, out_dist, start, cap, cnt)
            return cnt
        for e in range(lo, hi):
            d = full_distance(words, e, q)
            if d <= rr:
                cnt = _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos, out_dist, start, cap, cnt)
        return cnt
    base = (t - 1) * n
    if table_words.shape[0] > 0:
        q0 = q[0]
        if _least_distance(table_words.reshape(table_words.shape[0])[base + lo : base + hi], q0) > rr:
            return cnt
        for p in range(base + lo, base + hi):
            d = popcount64(table_words[p, 0] ^ q0)
            if d <= rr:
                e = np.int64(entries[p])
                cnt = _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos, out_dist, start, cap, cnt)
        return cnt
    for p in range(base + lo, base + hi):
        e = np.int64(entries[p])
        d = full_distance(words, e, q)
        if d <= rr:
            cnt = _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def _mih_chunk(
    words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries, q0, q1, r,
    out_q, out_pos, out_dist, start, cap,
):
    m = starts.shape[0]
    rr = np.uint64(r)
    cnt = 0
    for qi in range(q0, q1):
        q = queries[qi]
        for t in range(m):
            rt = radii[t]
            if rt < 0:
                continue
            length = lengths[t]
            key = substring_key(q, starts[t], length)
            at = table_offsets_at[t]
            limit = np.int64(1) << length
            # Every mask of `length` bits with k bits set, k = 0 .. rt (Gosper's hack).
            for k in range(rt + 1):
                mask = (np.int64(1) << k) - 1
                while mask < limit:
                    cnt = _mih_probe_bucket(
                        words, alive, entries, table_words, offsets, at, key ^ mask, t, starts, lengths,
                        radii, q, qi, rr, out_q, out_pos, out_dist, start, cap, cnt,
                    )
                    if k == 0:
                        break
                    low = mask & -mask
                    ripple = mask + low
                    mask = (((ripple ^ mask) >> 2) // low) | ripple
    return cnt


# At 1M rows a query's probed buckets are mostly not cached: runs of word copies
# (64-bit) or scattered rows (longer hashes). The probes are listed first, then
# scanned in order while the CPU is told to fetch the buckets a few probes ahead, so
# several misses overlap instead of one after another.
_PREFETCH = True
_MAX_PROBES = 4096  # more probes than this per query: the plain loop (no prefetch)
_PREFETCH_AHEAD = 4  # probes (measured best of 2, 4, 8 at 1M rows)
_LINE_WORDS = 8  # uint64 per 64-byte cache line


@njit(cache=True, nogil=True, inline="always")
def _prefetch_run(words, entries, table_words, n, t, lo, hi):
    """Prefetch what scanning bucket ``[lo, hi)`` of table ``t`` will read."""
    nw = words.shape[1]
    flat = words.reshape(n * nw)
    if t == 0:  # rows in table 0's order: one run of rows
        for p in range(lo * nw, hi * nw, _LINE_WORDS):
            prefetch(flat, p)
    elif table_words.shape[0] > 0:  # 64-bit: one run of the table's word copies
        copies = table_words.reshape(table_words.shape[0])
        base = (t - 1) * n
        for p in range(base + lo, base + hi, _LINE_WORDS):
            prefetch(copies, p)
    else:  # longer rows: each candidate row, wherever it is
        base = (t - 1) * n
        for p in range(base + lo, base + hi):
            prefetch(flat, np.int64(entries[p]) * nw)


@njit(cache=True, nogil=True)
def _mih_chunk_prefetch(
    words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries, q0, q1, r,
    out_q, out_pos, out_dist, start, cap,
):
    n = words.shape[0]
    rr = np.uint64(r)
    total = probe_count(lengths, radii)  # the same for every query
    if total > _MAX_PROBES:  # huge radii: the plain loop
        return _mih_chunk(words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii,
                          queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)
    probe_t = np.empty(total, dtype=np.int64)
    probe_b = np.empty(total, dtype=np.int64)
    cnt = 0
    for qi in range(q0, q1):
        q = queries[qi]
        np_ = list_probes(q, starts, lengths, radii, probe_t, probe_b)
        for i in range(min(_PREFETCH_AHEAD, np_)):
            t = probe_t[i]
            at = table_offsets_at[t]
            _prefetch_run(words, entries, table_words, n, t, np.int64(offsets[at + probe_b[i]]),
                          np.int64(offsets[at + probe_b[i] + 1]))
        for i in range(np_):
            ahead = i + _PREFETCH_AHEAD
            if ahead < np_:
                ta = probe_t[ahead]
                at = table_offsets_at[ta]
                _prefetch_run(words, entries, table_words, n, ta, np.int64(offsets[at + probe_b[ahead]]),
                              np.int64(offsets[at + probe_b[ahead] + 1]))
            t = probe_t[i]
            cnt = _mih_probe_bucket(
                words, alive, entries, table_words, offsets, table_offsets_at[t], probe_b[i], t, starts, lengths,
                radii, q, qi, rr, out_q, out_pos, out_dist, start, cap, cnt,
            )
    return cnt


@njit(cache=True, nogil=True)
def _mih_chunk_any(
    words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries, q0, q1, r,
    out_q, out_pos, out_dist, start, cap,
):
    if _PREFETCH:
        return _mih_chunk_prefetch(words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii,
                             queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)
    return _mih_chunk(words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii,
                      queries, q0, q1, r, out_q, out_pos, out_dist, start, cap)


@njit(cache=True, nogil=True)
def mih_query(
    words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries, bounds, r,
    out_q, out_pos, out_dist, cap, counts,
):
    """Multi-index range query, chunk by chunk, one thread."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = _mih_chunk_any(
            words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries,
            bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap,
        )


@njit(cache=True, nogil=True, parallel=True)
def mih_query_parallel(
    words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries, bounds, r,
    out_q, out_pos, out_dist, cap, counts,
):
    """:func:`mih_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = _mih_chunk_any(
            words, alive, entries, table_words, offsets, table_offsets_at, starts, lengths, radii, queries,
            bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap,
        )


# ---------------------------------------------------------------------------------
# BK-tree
# ---------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def bktree_build(words):
    """Bulk-build a BK-tree in breadth-first node order.

    Returns ``(order, first_child, n_children, edge)``: node ``v`` holds row
    ``order[v]``; its children are nodes ``first_child[v] : first_child[v] + n_children[v]``,
    sorted by ``edge`` (their distance to ``v``), so the children within ``[d - r, d + r]``
    are one contiguous run. Each node's subtree is split by distance to its own row;
    rows identical to a node become leaf children at edge 0 instead of a chain.
    """
    n, nw = words.shape
    nbits = nw * 64
    order = np.empty(n, dtype=np.int64)
    first_child = np.zeros(n, dtype=np.int32)
    n_children = np.zeros(n, dtype=np.int32)
    edge = np.zeros(n, dtype=np.int32)
    if n == 0:
        return order, first_child, n_children, edge
    perm = np.arange(n, dtype=np.int64)
    scratch = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.int64)
    seg_lo = np.empty(n, dtype=np.int64)
    seg_hi = np.empty(n, dtype=np.int64)
    counts = np.empty(nbits + 2, dtype=np.int64)
    seg_lo[0] = 0
    seg_hi[0] = n
    next_node = 1
    for v in range(n):  # nodes are created before they are visited: breadth-first
        lo = seg_lo[v]
        hi = seg_hi[v]
        pivot = perm[lo]
        order[v] = pivot
        first_child[v] = next_node
        if hi - lo == 1:
            continue
        counts[:] = 0
        pw = words[pivot]
        for j in range(lo + 1, hi):
            d = np.int64(full_distance(words, perm[j], pw))
            dist[j] = d
            counts[d + 1] += 1
        for d in range(nbits + 1):
            counts[d + 1] += counts[d]
        # counts[d] is now where distance d's group starts, relative to lo + 1
        for d in range(nbits + 1):
            size = counts[d + 1] - counts[d]
            if size == 0:
                continue
            if d == 0:
                for k in range(size):  # duplicates of the pivot: leaves
                    seg_lo[next_node] = lo + 1 + counts[0] + k
                    seg_hi[next_node] = lo + 2 + counts[0] + k
                    edge[next_node] = 0
                    next_node += 1
            else:
                seg_lo[next_node] = lo + 1 + counts[d]
                seg_hi[next_node] = lo + 1 + counts[d + 1]
                edge[next_node] = d
                next_node += 1
        n_children[v] = next_node - first_child[v]
        for j in range(lo + 1, hi):
            d = dist[j]
            scratch[lo + 1 + counts[d]] = perm[j]
            counts[d] += 1
        for j in range(lo + 1, hi):
            perm[j] = scratch[j]
    return order, first_child, n_children, edge


@njit(cache=True, nogil=True)
def _bktree_chunk(
    words, alive, first_child, n_children, edge, queries, q0, q1, r, stack, stack_dist,
    out_q, out_pos, out_dist, start, cap,
):
    n = words.shape[0]
    cnt = 0
    if n == 0:
        return cnt
    for qi in range(q0, q1):
        q = queries[qi]
        sp = 1
        stack[0] = 0
        stack_dist[0] = np.int64(full_distance(words, 0, q))
        while sp > 0:
            sp -= 1
            v = stack[sp]
            d = stack_dist[sp]
            if d <= r and alive[v]:
                if cnt < cap:
                    out_q[start + cnt] = qi
                    out_pos[start + cnt] = v
                    out_dist[start + cnt] = np.int32(d)
                cnt += 1
            c0 = np.int64(first_child[v])
            c1 = c0 + np.int64(n_children[v])
            low = d - r
            high = d + r
            # Siblings are contiguous rows: measuring them together, as they are pushed,
            # reads memory in order instead of one scattered row per pop.
            for c in range(c0, c1):
                e = edge[c]
                if e < low:
                    continue
                if e > high:
                    break
                stack[sp] = c
                stack_dist[sp] = np.int64(full_distance(words, c, q))
                sp += 1
    return cnt


@njit(cache=True, nogil=True)
def bktree_query(
    words, alive, first_child, n_children, edge, queries, bounds, r, out_q, out_pos, out_dist, cap, counts
):
    """BK-tree range query (rows in node order), chunk by chunk, one thread."""
    stack = np.empty(words.shape[0] + 1, dtype=np.int64)
    stack_dist = np.empty(words.shape[0] + 1, dtype=np.int64)
    for c in range(bounds.shape[0] - 1):
        counts[c] = _bktree_chunk(
            words, alive, first_child, n_children, edge, queries, bounds[c], bounds[c + 1], r, stack,
            stack_dist, out_q, out_pos, out_dist, c * cap, cap,
        )


@njit(cache=True, nogil=True, parallel=True)
def bktree_query_parallel(
    words, alive, first_child, n_children, edge, queries, bounds, r, out_q, out_pos, out_dist, cap, counts
):
    """:func:`bktree_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        stack = np.empty(words.shape[0] + 1, dtype=np.int64)
        stack_dist = np.empty(words.shape[0] + 1, dtype=np.int64)
        counts[c] = _bktree_chunk(
            words, alive, first_child, n_children, edge, queries, bounds[c], bounds[c + 1], r, stack,
            stack_dist, out_q, out_pos, out_dist, c * cap, cap,
        )

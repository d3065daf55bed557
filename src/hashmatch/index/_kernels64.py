"""numba kernels for 64-bit hashes only: the multi-index tables of 32-bit partial words.

(The bit-sliced Flat scan that used to live here now serves every word count:
``_sliced_kernels``.)

Each kernel has a naive twin in ``tests/test_index64_kernels.py``.
"""

from __future__ import annotations

import numpy as np

from numba import prange

from .._jit import njit, prefetch
from ._kernels import _least_distance, _mih_hit, popcount64

_ZERO = np.uint64(0)
_ONE = np.uint64(1)


# ---------------------------------------------------------------------------------
# Multi-index hashing of 64-bit hashes: 32-bit partial words instead of row copies
# ---------------------------------------------------------------------------------
# Every table t keeps, per row in its own bucket order, 32 bits of the row: the word
# with substring t cut out (its bits are the bucket's, known at probe time), top 32
# bits. A probe checks its candidates from one run of these (half the bytes of a row
# copy), which bounds each row's distance from below. Table 0's are in row order (the
# rows are kept in table 0's bucket order), so a candidate that passes is a row
# number; for t >= 1 the partial word starts with substring 0, and a candidate that
# passes is found in table 0's bucket (by the table-0 partial word its known bits
# give) and checked in full there. No row numbers are stored: 4 bytes per row and
# table instead of 12.
_PART_BITS = 32


@njit(cache=True, nogil=True, inline="always")
def popcount32(x):
    """Set bits of a uint32 (numba widens 32-bit arithmetic, so a 32-bit SWAR form
    would need masking; the 64-bit popcount of the widened value is exact)."""
    return np.uint32(popcount64(np.uint64(x)))


@njit(cache=True, nogil=True, inline="always")
def key64(w, start, length):
    """Bits ``[start, start + length)`` of a 64-bit word (bit 0 most significant)."""
    return np.int64((w >> np.uint64(64 - start - length)) & ((_ONE << np.uint64(length)) - _ONE))


@njit(cache=True, nogil=True, inline="always")
def part64(w, start, length):
    """The top 32 bits of ``w`` with bits ``[start, start + length)`` cut out."""
    low_bits = 64 - start - length
    low = w & ((_ONE << np.uint64(low_bits)) - _ONE) if low_bits > 0 else _ZERO
    high = (w >> np.uint64(64 - start)) << np.uint64(low_bits) if start > 0 else _ZERO  # no shift by 64
    rest = high | low  # 64 - length bits
    return np.uint32(rest >> np.uint64(64 - length - _PART_BITS))


@njit(cache=True, nogil=True)
def _mih64_table(words, starts, lengths, table_offsets_at, t, parts, offsets):
    n = words.shape[0]
    start = starts[t]
    length = lengths[t]
    nb = np.int64(1) << length
    at = table_offsets_at[t]
    counts = np.zeros(nb + 1, dtype=np.int64)
    if t == 0:  # rows are already in table 0's order: the partial words follow them
        for i in range(n):
            w = words[i, 0]
            counts[key64(w, start, length) + 1] += 1
            parts[i] = part64(w, start, length)
    else:
        # Sorted by (bucket, partial word): equal partial words are adjacent in a
        # bucket, so a probe looks each of them up in table 0 once.
        composite = np.empty(n, dtype=np.uint64)
        for i in range(n):
            w = words[i, 0]
            k = key64(w, start, length)
            counts[k + 1] += 1
            composite[i] = (np.uint64(k) << np.uint64(_PART_BITS)) | np.uint64(part64(w, start, length))
        composite.sort()
        base = t * n
        for i in range(n):
            parts[base + i] = np.uint32(composite[i] & np.uint64(0xFFFFFFFF))
    for b in range(nb):
        counts[b + 1] += counts[b]
    for b in range(nb + 1):
        offsets[at + b] = np.int32(counts[b])


@njit(cache=True, nogil=True)
def _mih64_arrays(n, m, table_offsets_at):
    return np.empty(table_offsets_at[m], dtype=np.int32), np.empty(m * n, dtype=np.uint32)


@njit(cache=True, nogil=True)
def mih64_tables(words, starts, lengths, table_offsets_at):
    """Offsets (int32, as ``_kernels.mih_tables``) and every table's partial words
    (uint32, table t's at ``t * n``; table 0's in row order), over rows in table 0's order."""
    m = starts.shape[0]
    offsets, parts = _mih64_arrays(words.shape[0], m, table_offsets_at)
    for t in range(m):
        _mih64_table(words, starts, lengths, table_offsets_at, t, parts, offsets)
    return offsets, parts


@njit(cache=True, nogil=True, parallel=True)
def mih64_tables_parallel(words, starts, lengths, table_offsets_at):
    """:func:`mih64_tables` with the tables built on numba's threads."""
    m = starts.shape[0]
    offsets, parts = _mih64_arrays(words.shape[0], m, table_offsets_at)
    for t in prange(m):
        _mih64_table(words, starts, lengths, table_offsets_at, t, parts, offsets)
    return offsets, parts


@njit(cache=True, nogil=True, inline="always")
def unpart64(x, key, start, length):
    """The row whose bits ``[start, start + length)`` are ``key`` and whose other bits
    begin with ``x`` (the inverse of :func:`part64` and :func:`key64`; the bits ``x``
    does not hold are 0)."""
    low_bits = 64 - start - length
    rest = np.uint64(x) << np.uint64(64 - length - _PART_BITS)
    low = rest & ((_ONE << np.uint64(low_bits)) - _ONE) if low_bits > 0 else _ZERO
    high = (rest >> np.uint64(low_bits)) << np.uint64(64 - start) if start > 0 else _ZERO  # no shift by 64
    return high | (np.uint64(key) << np.uint64(low_bits)) | low


@njit(cache=True, nogil=True)
def _check_hits(words, alive, hit_e, hit_i, nh, pend_t, pend_b, pend_x, starts, lengths, radii, q, qi, rr,
                out_q, out_pos, out_dist, start, cap, cnt):
    """The rows found for pending candidates (prefetched), checked in full."""
    q0 = q[0]
    for h in range(nh):
        e = hit_e[h]
        i = hit_i[h]
        t = pend_t[i]
        w = words[e, 0]
        d = popcount64(w ^ q0)
        if d <= rr and key64(w, starts[t], lengths[t]) == pend_b[i] and part64(w, starts[t], lengths[t]) == pend_x[i]:
            cnt = _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def _mih64_resolve(words, alive, parts, offsets, pend_t, pend_b, pend_x, npend, hit_e, hit_i, starts, lengths, radii,
                   q, qi, rr, out_q, out_pos, out_dist, start, cap, cnt):
    """Find the rows of the pending candidates (table t's bucket ``pend_b``, partial word
    ``pend_x``) in table 0, and check them.

    A candidate's bucket and partial word fix most of its row's bits, and for the usual
    layouts every bit of its table-0 partial word: the row is found by comparing the known
    bits over table 0's bucket of 4-byte partial words (prefetched when the candidate was
    queued), not by reading the bucket's 8-byte rows. The rows found are prefetched, then
    checked in full from the rows, so the answer stays exact whatever the layout."""
    n = words.shape[0]
    flat = words.reshape(n)
    all_bits = np.uint32(0xFFFFFFFF)
    nh = 0
    for i in range(npend):
        t = pend_t[i]
        x = pend_x[i]
        known = unpart64(x, pend_b[i], starts[t], lengths[t])
        mask = unpart64(all_bits, (np.int64(1) << lengths[t]) - 1, starts[t], lengths[t])
        y = part64(known, starts[0], lengths[0])
        ymask = part64(mask, starts[0], lengths[0])
        k0 = np.int64(x >> np.uint32(_PART_BITS - lengths[0]))  # substring 0 leads every partial word
        for e in range(np.int64(offsets[k0]), np.int64(offsets[k0 + 1])):
            if (parts[e] & ymask) == y:
                if nh == hit_e.shape[0]:
                    cnt = _check_hits(words, alive, hit_e, hit_i, nh, pend_t, pend_b, pend_x, starts, lengths, radii,
                                      q, qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
                    nh = 0
                prefetch(flat, e)
                hit_e[nh] = e
                hit_i[nh] = i
                nh += 1
    return _check_hits(words, alive, hit_e, hit_i, nh, pend_t, pend_b, pend_x, starts, lengths, radii, q, qi, rr,
                       out_q, out_pos, out_dist, start, cap, cnt)


_MAX_PROBES = 4096
_PREFETCH_AHEAD = 4  # probes (8 measured no better at 1M rows)
_LINE_BYTES = 64
_PENDING = 64  # queued candidates of tables t >= 1 (8.6 a query at 1M rows, r = 8)


@njit(cache=True, nogil=True, inline="always")
def _mih64_prefetch(words, parts, offsets, table_offsets_at, t, bucket):
    n = words.shape[0]
    at = table_offsets_at[t]
    lo = np.int64(offsets[at + bucket])
    hi = np.int64(offsets[at + bucket + 1])
    base = t * n
    for p in range(base + lo, base + hi, _LINE_BYTES // 4):
        prefetch(parts, p)


@njit(cache=True, nogil=True)
def _list_probes(q0, starts, lengths, radii, skip, probe_t, probe_b, probe_k):
    """List the query's probes (table, bucket, bits flipped) from number ``skip`` on, as
    many as the arrays hold; returns how many probes the query has in all. Buckets
    within radius k: every mask of k set bits (Gosper's hack)."""
    total = 0
    cap = probe_t.shape[0]
    for t in range(starts.shape[0]):
        length = lengths[t]
        key = key64(q0, starts[t], length)
        limit = np.int64(1) << length
        for k in range(radii[t] + 1):  # radius -1: none
            mask = (np.int64(1) << k) - 1
            while mask < limit:
                i = total - skip
                if 0 <= i < cap:
                    probe_t[i] = t
                    probe_b[i] = key ^ mask
                    probe_k[i] = k
                total += 1
                if k == 0:
                    break
                low = mask & -mask
                ripple = mask + low
                mask = (((ripple ^ mask) >> 2) // low) | ripple
    return total


@njit(cache=True, nogil=True)
def mih64_chunk(words, alive, parts, offsets, table_offsets_at, starts, lengths, radii, queries, q0, q1, r,
                out_q, out_pos, out_dist, start, cap):
    """Multi-index range query of ``queries[q0:q1]`` (64-bit). Each query's probes are
    listed first (in batches, for huge radii), then scanned while the buckets a few
    probes ahead are prefetched. A probe bounds its bucket's distances from one run of
    partial words; table 0's candidates are rows and are checked at once, the other
    tables' are queued (their table-0 buckets prefetched) and resolved together after
    the query's probes (:func:`_mih64_resolve`), so their memory reads overlap."""
    rr = np.uint64(r)
    n = words.shape[0]
    flat = words.reshape(n)
    probe_t = np.empty(_MAX_PROBES, dtype=np.int64)
    probe_b = np.empty(_MAX_PROBES, dtype=np.int64)
    probe_k = np.empty(_MAX_PROBES, dtype=np.int64)
    pend_t = np.empty(_PENDING, dtype=np.int64)
    pend_b = np.empty(_PENDING, dtype=np.int64)
    pend_x = np.empty(_PENDING, dtype=np.uint32)
    hit_e = np.empty(4 * _PENDING, dtype=np.int64)
    hit_i = np.empty(4 * _PENDING, dtype=np.int64)
    cnt = 0
    for qi in range(q0, q1):
        q = queries[qi]
        qw = q[0]
        done = 0
        npend = 0
        while True:
            total = _list_probes(qw, starts, lengths, radii, done, probe_t, probe_b, probe_k)
            listed = min(total - done, _MAX_PROBES)
            for i in range(min(_PREFETCH_AHEAD, listed)):
                _mih64_prefetch(words, parts, offsets, table_offsets_at, probe_t[i], probe_b[i])
            for i in range(listed):
                ahead = i + _PREFETCH_AHEAD
                if ahead < listed:
                    _mih64_prefetch(words, parts, offsets, table_offsets_at, probe_t[ahead], probe_b[ahead])
                t = probe_t[i]
                bucket = probe_b[i]
                at = table_offsets_at[t]
                lo = np.int64(offsets[at + bucket])
                hi = np.int64(offsets[at + bucket + 1])
                # The bucket's bits differ from the query's in k places; the partial word
                # bounds the rest from below.
                left = np.uint32(rr - np.uint64(probe_k[i]))
                qp = part64(qw, starts[t], lengths[t])
                run = parts[t * n + lo : t * n + hi]
                if _least_distance(run, qp) > left:
                    continue
                if t == 0:  # table 0's partial words are in row order: the candidate is row lo + p
                    for p in range(hi - lo):
                        if popcount32(run[p] ^ qp) <= left:
                            e = lo + p
                            d = popcount64(flat[e] ^ qw)
                            if d <= rr:
                                cnt = _mih_hit(words, alive, e, d, t, starts, lengths, radii, q, qi, out_q, out_pos,
                                               out_dist, start, cap, cnt)
                    continue
                for p in range(hi - lo):
                    x = run[p]
                    # Equal partial words are adjacent (sorted): each is resolved once.
                    if popcount32(x ^ qp) <= left and (p == 0 or run[p - 1] != x):
                        if npend == _PENDING:
                            cnt = _mih64_resolve(words, alive, parts, offsets, pend_t, pend_b, pend_x, npend, hit_e,
                                                 hit_i, starts, lengths, radii, q, qi, rr, out_q, out_pos, out_dist,
                                                 start, cap, cnt)
                            npend = 0
                        pend_t[npend] = t
                        pend_b[npend] = bucket
                        pend_x[npend] = x
                        npend += 1
                        k0 = np.int64(x >> np.uint32(_PART_BITS - lengths[0]))
                        for j in range(np.int64(offsets[k0]), np.int64(offsets[k0 + 1]), _LINE_BYTES // 4):
                            prefetch(parts, j)
            done += listed
            if done >= total:
                break
        if npend:
            cnt = _mih64_resolve(words, alive, parts, offsets, pend_t, pend_b, pend_x, npend, hit_e, hit_i, starts,
                                 lengths, radii, q, qi, rr, out_q, out_pos, out_dist, start, cap, cnt)
    return cnt


@njit(cache=True, nogil=True)
def mih64_query(words, alive, parts, offsets, table_offsets_at, starts, lengths, radii, queries, bounds, r,
                out_q, out_pos, out_dist, cap, counts):
    """:func:`mih64_chunk` for each chunk of queries, one thread."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = mih64_chunk(words, alive, parts, offsets, table_offsets_at, starts, lengths, radii, queries,
                                bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap)


@njit(cache=True, nogil=True, parallel=True)
def mih64_query_parallel(words, alive, parts, offsets, table_offsets_at, starts, lengths, radii, queries, bounds, r,
                         out_q, out_pos, out_dist, cap, counts):
    """:func:`mih64_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = mih64_chunk(words, alive, parts, offsets, table_offsets_at, starts, lengths, radii, queries,
                                bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap)

"""numba kernels of the local stage's descriptor tables (:mod:`._tables`).

An exact range query over 256-bit descriptor rows, cut into ``m`` substrings of
about 256 / m bits (multi-index hashing), whose tables are *two-level*: the top
``dbits`` bits of a substring pick a bucket of a directory (CSR offsets), and each
entry of the bucket holds the substring's remaining low bits (uint16) next to its
row number (uint32). A probe of radius ``rt`` visits the buckets within ``k`` bits
of the query's top bits and accepts an entry whose low bits are within ``rt - k``
of the query's, so the substring is checked in full from one contiguous run, and a
row is read (one cache miss into the rows) only for entries whose whole substring is
within the table's radius. Row-number tables of 16-bit substrings read a row for
every entry of every probed bucket instead (~780 per query at 1.6M uniform rows).

Rows are ``(n, 4)`` uint64 words, bit 0 = the most significant bit of word 0
(``hashmatch.index``'s layout). Naive twin: ``tests/test_local_tables.py``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, prefetch
from ..index._kernels import full_distance, list_probes, popcount64, probe_count, substring_key

_AHEAD = 8  # visits between a run's prefetch and its check (4, 16 and 32 measured no better)


@njit(cache=True, nogil=True)
def tables_build(words, starts, lengths, dbits):
    """``(offsets, low, rows)``: table t's bucket b is positions
    ``offsets[t, b] : offsets[t, b + 1]`` of ``low[t]`` (the substring's bits below its
    top ``dbits``) and ``rows[t]`` (row numbers); ``lengths[t] - dbits`` is at most 16."""
    offsets, low, rows = _tables_alloc(words.shape[0], starts.shape[0], dbits)
    for t in range(starts.shape[0]):
        _table(words, starts, lengths, dbits, t, offsets, low, rows)
    return offsets, low, rows


@njit(cache=True, nogil=True, parallel=True)
def tables_build_parallel(words, starts, lengths, dbits):
    """:func:`tables_build` with the tables built on numba's threads (loads of big snapshots)."""
    offsets, low, rows = _tables_alloc(words.shape[0], starts.shape[0], dbits)
    for t in prange(starts.shape[0]):
        _table(words, starts, lengths, dbits, t, offsets, low, rows)
    return offsets, low, rows


@njit(cache=True, nogil=True)
def _tables_alloc(n, m, dbits):
    offsets = np.zeros((m, (np.int64(1) << dbits) + 1), dtype=np.int32)
    return offsets, np.empty((m, n), dtype=np.uint16), np.empty((m, n), dtype=np.uint32)


@njit(cache=True, nogil=True)
def _table(words, starts, lengths, dbits, t, offsets, low, rows):
    """Fill table t: a counting sort of the rows by their substring's top ``dbits`` bits."""
    n = words.shape[0]
    nb = np.int64(1) << dbits
    shift = lengths[t] - dbits
    lowmask = (np.int64(1) << shift) - 1
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        k = substring_key(words[i], starts[t], lengths[t])
        keys[i] = k
        offsets[t, (k >> shift) + 1] += 1
    for b in range(nb):
        offsets[t, b + 1] += offsets[t, b]
    fill = offsets[t, :nb].astype(np.int64)
    for i in range(n):
        b = keys[i] >> shift
        p = fill[b]
        fill[b] = p + 1
        low[t, p] = np.uint16(keys[i] & lowmask)
        rows[t, p] = np.uint32(i)


@njit(cache=True, nogil=True, inline="always")
def _seen_before(words, e, q, t, starts, lengths, radii):
    """Whether an earlier table's ball holds row ``e`` (then it was reported there)."""
    for s in range(t):
        if radii[s] >= 0:
            ks = substring_key(words[e], starts[s], lengths[s])
            kq = substring_key(q, starts[s], lengths[s])
            if popcount64(np.uint64(ks ^ kq)) <= np.uint64(radii[s]):
                return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _fetch_run(offsets, low, vt, vb, vlo, vhi, v):
    """Read visit ``v``'s directory entry (prefetched before) and prefetch its run of low bits."""
    t = vt[v]
    lo = np.int64(offsets[t, vb[v]])
    hi = np.int64(offsets[t, vb[v] + 1])
    vlo[v] = lo
    vhi[v] = hi
    for p in range(lo, hi, 32):
        prefetch(low[t], p)


@njit(cache=True, nogil=True)
def tables_query(words, alive, offsets, low, rows, starts, lengths, dlengths, radii, queries, q0, q1, r,
                 out_q, out_pos, out_dist, start, cap):
    """Every (query, live row) pair within ``r`` bits for queries ``q0 .. q1 - 1``, each
    once, written from ``start`` on; returns how many there are (only ``cap`` are
    written: the caller runs the chunk again with room for all, as ``hashmatch.index``).

    ``radii`` split ``r`` by the pigeonhole principle (``sum(radii + 1) >= r + 1``);
    ``dlengths[t]`` is the directory's bit count (the same for every table). A query's
    bucket visits (the directory keys within ``radii[t]`` bits of its own, listed by the
    index's ``list_probes``: a substring's top bits are a substring too) run as a
    pipeline: visit ``v`` is checked while visit ``v + _AHEAD``'s run of low bits and
    visit ``v + 2 _AHEAD``'s directory entry are prefetched, so the two dependent cache
    misses of a visit overlap those of others (they were the whole cost otherwise).
    Until round 6 the three steps ran as three passes over all ~1 500 visits of a wide
    query, which issued more prefetches than the CPU keeps in flight; the pipeline took
    a few per cent off the lookups (issue 12, round 6 notes).
    """
    m = starts.shape[0]
    rr = np.uint64(r)
    total = probe_count(dlengths, radii)
    vt = np.empty(total, dtype=np.int64)
    vb = np.empty(total, dtype=np.int64)
    vlo = np.empty(total, dtype=np.int64)
    vhi = np.empty(total, dtype=np.int64)
    hq = np.empty(m, dtype=np.int64)  # the query's directory key in each table
    lq = np.empty(m, dtype=np.uint64)  # and its low bits
    cnt = 0
    for qi in range(q0, q1):
        q = queries[qi]
        for t in range(m):
            shift = lengths[t] - dlengths[t]
            kq = substring_key(q, starts[t], lengths[t])
            hq[t] = kq >> shift
            lq[t] = np.uint64(kq & ((np.int64(1) << shift) - 1))
        nv = list_probes(q, starts, dlengths, radii, vt, vb)
        for v in range(min(2 * _AHEAD, nv)):
            prefetch(offsets[vt[v]], vb[v])
        for v in range(min(_AHEAD, nv)):
            _fetch_run(offsets, low, vt, vb, vlo, vhi, v)
        for v in range(nv):
            if v + 2 * _AHEAD < nv:
                prefetch(offsets[vt[v + 2 * _AHEAD]], vb[v + 2 * _AHEAD])
            if v + _AHEAD < nv:
                _fetch_run(offsets, low, vt, vb, vlo, vhi, v + _AHEAD)
            t = vt[v]
            # The low bits may differ by what the directory key left of the table's radius.
            allowed = np.uint64(radii[t]) - popcount64(np.uint64(vb[v] ^ hq[t]))
            for p in range(vlo[v], vhi[v]):
                if popcount64(np.uint64(low[t, p]) ^ lq[t]) <= allowed:
                    e = np.int64(rows[t, p])
                    d = full_distance(words, e, q)
                    if d <= rr and alive[e] and not _seen_before(words, e, q, t, starts, lengths, radii):
                        if cnt < cap:
                            out_q[start + cnt] = qi
                            out_pos[start + cnt] = e
                            out_dist[start + cnt] = np.int32(d)
                        cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def two_nearest(ref, query_t):
    """For each row of ``ref`` (``(n, 4)`` uint64 words), its nearest row of the query
    (given word-major: ``query_t`` is ``(4, m)``, ``m >= 2``) and the two least
    distances: ``(best, d1, d2)``. Ties go to the lower row number, and the second is
    the next in (distance, row) order: what OpenCV's ``BFMatcher.knnMatch(k=2)`` returns
    (its ``batchDistance`` keeps an entry only when strictly nearer). The distances to
    every query row are computed in one vectorised loop per reference row."""
    n, m = ref.shape[0], query_t.shape[1]
    best = np.empty(n, dtype=np.int64)
    d1 = np.empty(n, dtype=np.int64)
    d2 = np.empty(n, dtype=np.int64)
    dist = np.empty(m, dtype=np.int64)
    w0, w1, w2, w3 = query_t[0], query_t[1], query_t[2], query_t[3]
    for i in range(n):
        r0, r1, r2, r3 = ref[i, 0], ref[i, 1], ref[i, 2], ref[i, 3]
        for j in range(m):
            dist[j] = np.int64(popcount64(w0[j] ^ r0) + popcount64(w1[j] ^ r1)
                               + popcount64(w2[j] ^ r2) + popcount64(w3[j] ^ r3))
        b, first, second = -1, np.int64(1 << 30), np.int64(1 << 30)
        for j in range(m):
            d = dist[j]
            if d < second:
                if d < first:
                    second = first
                    first = d
                    b = j
                else:
                    second = d
        best[i] = b
        d1[i] = first
        d2[i] = second
    return best, d1, d2

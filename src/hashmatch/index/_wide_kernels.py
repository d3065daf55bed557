"""numba kernels of the multi-index for hashes longer than 64 bits (PDQ's 256 bits).

At 1M PDQ rows and r = 31 a query probes 272 buckets (16 tables of 16 bits, radius 1)
and meets about 4,150 candidates. Reading each candidate's row is one cache miss
into a 32 MB array, and those misses were the whole cost (notes/index.md). So every
entry of tables 1 .. m-1 is a 16-byte *record* holding a 96-bit filter (three 32-bit
chunks of the row, away from the table's own substring) and the row number:

    record[p, 0] = chunk_a << 32 | chunk_b        record[p, 1] = chunk_c << 32 | row

The filter's distance to the query's same chunks is a lower bound on the full
distance, and for a random row it is over 31 with probability 1 - 4e-4, so a probe
checks its bucket from one contiguous run of records and reads a row (and verifies it
with the full popcount) only for the rare survivors. Table 0 needs no records: rows
are kept in its bucket order, so its buckets already are contiguous runs of rows.

Chunk c of a row is bits ``[32c, 32c + 32)`` (bit 0 most significant), i.e. the high
half of word ``c // 2`` for even c. The kernels take plain arrays; the Python layer
(:mod:`hashmatch.index.mih`) checks and shapes. Naive twins: ``tests/test_index_wide.py``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import njit, prefetch
from ._kernels import list_probes, popcount64, probe_count, substring_key

_ONE = np.uint64(1)
_NO_DISTANCE = np.uint64(1 << 20)  # above any distance
_LOW32 = np.uint64(0xFFFFFFFF)
_THIRTY_TWO = np.uint64(32)
_LINE_WORDS = 8  # uint64 per 64-byte cache line
# Probes whose buckets are prefetched ahead of the one being checked, and how far ahead
# the offsets they need are prefetched (measured on the 1M x 256-bit case).
_AHEAD = 8
_LAG = 16  # rows that passed the filter, verified this many rows later
_QUEUE_MASK = 31  # ring buffer of 32 > _LAG


@njit(cache=True, nogil=True, inline="always")
def chunk32(row, c):
    """32-bit chunk ``c`` of a row (bits ``[32c, 32c + 32)``), as a uint64."""
    w = row[c // 2]
    if c % 2 == 0:
        return w >> _THIRTY_TWO
    return w & _LOW32


@njit(cache=True, nogil=True, inline="always")
def _bits_at(hi_word, lo_word, o, length):
    """``length`` bits starting ``o`` bits into ``hi_word`` (bit 0 most significant) and
    running on into ``lo_word``, as an int: :func:`_kernels.substring_key` on two scalar
    words (scalars, so no array reference counting in the candidate loop)."""
    mask = (_ONE << np.uint64(length)) - _ONE
    if o + length <= 64:
        return np.int64((hi_word >> np.uint64(64 - o - length)) & mask)
    low = length - (64 - o)
    return np.int64(((hi_word << np.uint64(low)) | (lo_word >> np.uint64(64 - low))) & mask)


@njit(cache=True, nogil=True)
def _table_records(words, entries, chunks, t, out):
    n = words.shape[0]
    base = (t - 1) * n
    ca, cb, cc = chunks[t, 0], chunks[t, 1], chunks[t, 2]
    for p in range(base, base + n):
        e = np.int64(entries[p])
        row = words[e]
        out[p, 0] = (chunk32(row, ca) << _THIRTY_TWO) | chunk32(row, cb)
        out[p, 1] = (chunk32(row, cc) << _THIRTY_TWO) | np.uint64(e)


@njit(cache=True, nogil=True)
def wide_records(words, entries, chunks, out):
    """Fill ``out`` with the records of tables 1 .. m-1 from their row numbers ``entries``
    (table t's bucket-ordered rows at ``entries[(t - 1) * n : t * n]``) and each table's
    filter chunks ``chunks[t]`` (three chunk numbers). ``out`` comes from numpy, which
    backs big arrays with huge pages: random probes into hundreds of MB of records then
    miss the TLB far less than in numba-allocated memory (measured 1.3x at 1M rows)."""
    n = words.shape[0]
    if n == 0:
        return
    for t in range(1, entries.shape[0] // n + 1):
        _table_records(words, entries, chunks, t, out)


@njit(cache=True, nogil=True, parallel=True)
def wide_records_parallel(words, entries, chunks, out):
    """:func:`wide_records` with the tables spread over numba's threads."""
    n = words.shape[0]
    if n == 0:
        return
    for t in prange(1, entries.shape[0] // n + 1):
        _table_records(words, entries, chunks, t, out)


@njit(cache=True, nogil=True)
def _wide_chunk(
    words, alive, records, chunks, offsets, table_at, starts, lengths, radii, queries, q0, q1, r,
    out_q, out_pos, out_dist, start, cap, ahead,
):
    # One flat loop on purpose: numba increments and decrements the reference count of
    # every array passed to a helper (inlined or not), and at 272 probes a query those
    # atomic updates profiled as most of the time (2.5x at 1M rows); where a query has
    # about 100 matches, a helper call per hit made the query 1.65x slower.
    n, nw = words.shape
    m = starts.shape[0]
    flat_words = words.reshape(n * nw)
    flat_records = records.reshape(records.shape[0] * 2)
    rr = np.uint64(r)
    total = probe_count(lengths, radii)
    probe_t = np.empty(total, dtype=np.int64)
    probe_b = np.empty(total, dtype=np.int64)
    qa_t = np.empty(m, dtype=np.uint64)
    qc_t = np.empty(m, dtype=np.uint64)
    qkey_t = np.empty(m, dtype=np.int64)
    pend_e = np.empty(_QUEUE_MASK + 1, dtype=np.int64)
    pend_t = np.empty(_QUEUE_MASK + 1, dtype=np.int64)
    cnt = 0
    for qi in range(q0, q1):
        q = queries[qi]
        for t in range(m):
            qa_t[t] = (chunk32(q, chunks[t, 0]) << _THIRTY_TWO) | chunk32(q, chunks[t, 1])
            qc_t[t] = chunk32(q, chunks[t, 2])
            qkey_t[t] = substring_key(q, starts[t], lengths[t])
        np_ = list_probes(q, starts, lengths, radii, probe_t, probe_b)  # every probe first
        # Then check them in order while the buckets `ahead` probes on are fetched (and
        # the offsets those need, twice as far), so the misses overlap.
        for i in range(min(2 * ahead, np_)):
            prefetch(offsets, table_at[probe_t[i]] + probe_b[i])
        # Rows that pass the filter wait in a small queue, their lines prefetched, and
        # are verified _LAG rows later instead of stalling on each (1.07-1.1x, measured on
        # uniform rows and on clustered PDQ-like ones). After the last probe, _LAG
        # dummy rows (-1) push the real ones out.
        head = tail = 0
        for i in range(-ahead, np_ + 1):
            far = i + 2 * ahead
            if far < np_:
                prefetch(offsets, table_at[probe_t[far]] + probe_b[far])
            near = i + ahead
            if near < np_:
                t = probe_t[near]
                at = table_at[t] + probe_b[near]
                lo = np.int64(offsets[at])
                hi = np.int64(offsets[at + 1])
                if t == 0:  # rows are in table 0's order: one run of rows
                    for p in range(lo * nw, hi * nw, _LINE_WORDS):
                        prefetch(flat_words, p)
                else:
                    base = 2 * (t - 1) * n
                    for p in range(base + 2 * lo, base + 2 * hi, _LINE_WORDS):
                        prefetch(flat_records, p)
            if i < 0:
                continue
            t, lo, hi = -1, 0, _LAG
            if i < np_:
                t = probe_t[i]
                at = table_at[t] + probe_b[i]
                lo = np.int64(offsets[at])
                hi = np.int64(offsets[at + 1])
            qa = qa_t[t]
            qc = qc_t[t]
            base = (t - 1) * n
            if t > 0 and hi > lo:
                # Pass 1, branch-free: the least filter distance in the bucket (unsigned
                # positions spare numba's negative-index wraparound, so it vectorises).
                least = _NO_DISTANCE
                for j in range(np.uint64(2 * (base + lo)), np.uint64(2 * (base + hi)), np.uint64(2)):
                    least = min(least, popcount64(flat_records[j] ^ qa)
                                + popcount64((flat_records[j + _ONE] >> _THIRTY_TWO) ^ qc))
                if least > rr:
                    continue
            for p in range(lo, hi):
                if t <= 0:  # rows are in table 0's order (or the dummies)
                    e = p if t == 0 else -1
                else:
                    low = records[base + p, 1]
                    if popcount64(records[base + p, 0] ^ qa) + popcount64((low >> _THIRTY_TWO) ^ qc) > rr:
                        continue  # the usual case: the row is never read
                    e = np.int64(low & _LOW32)
                    prefetch(flat_words, e * nw)
                pend_e[tail & _QUEUE_MASK] = e
                pend_t[tail & _QUEUE_MASK] = t
                tail += 1
                if tail - head <= _LAG:
                    continue
                e = pend_e[head & _QUEUE_MASK]
                te = pend_t[head & _QUEUE_MASK]
                head += 1
                if e < 0:
                    continue
                d = np.uint64(0)
                for k in range(nw):
                    d += popcount64(words[e, k] ^ q[k])
                if d > rr or not alive[e]:
                    continue
                # A match is reported from the first table whose probe ball holds it.
                first = True
                for s in range(te):
                    if radii[s] >= 0:
                        o = starts[s] % 64
                        w = starts[s] // 64
                        hi_word = words[e, w]
                        lo_word = words[e, w + 1] if o + lengths[s] > 64 else np.uint64(0)
                        key = _bits_at(hi_word, lo_word, o, lengths[s])
                        if popcount64(np.uint64(key ^ qkey_t[s])) <= np.uint64(radii[s]):
                            first = False
                            break
                if first:
                    if cnt < cap:
                        out_q[start + cnt] = qi
                        out_pos[start + cnt] = e
                        out_dist[start + cnt] = np.int32(d)
                    cnt += 1
    return cnt


@njit(cache=True, nogil=True)
def wide_query(
    words, alive, records, chunks, offsets, table_at, starts, lengths, radii, queries, bounds, r,
    out_q, out_pos, out_dist, cap, counts,
):
    """Multi-index range query over wide rows with filter records, chunk by chunk, one thread
    (output contract of :mod:`hashmatch.index._kernels`)."""
    for c in range(bounds.shape[0] - 1):
        counts[c] = _wide_chunk(
            words, alive, records, chunks, offsets, table_at, starts, lengths, radii, queries,
            bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap, _AHEAD,
        )


@njit(cache=True, nogil=True, parallel=True)
def wide_query_parallel(
    words, alive, records, chunks, offsets, table_at, starts, lengths, radii, queries, bounds, r,
    out_q, out_pos, out_dist, cap, counts,
):
    """:func:`wide_query` with the chunks spread over numba's threads."""
    for c in prange(bounds.shape[0] - 1):
        counts[c] = _wide_chunk(
            words, alive, records, chunks, offsets, table_at, starts, lengths, radii, queries,
            bounds[c], bounds[c + 1], r, out_q, out_pos, out_dist, c * cap, cap, _AHEAD,
        )

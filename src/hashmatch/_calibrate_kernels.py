"""numba kernels for false-positive calibration: histograms of all-pairs distances.

Millions of pairs per algorithm, so these count distances instead of storing them;
a histogram gives the false-positive rate at every threshold exactly. Plain
C-contiguous uint64 arrays in (rows of packed words, as ``HashBatch.words``), int64
histograms out. Naive twins live in ``tests/test_calibrate.py``.
"""

from __future__ import annotations

import numpy as np
from ._jit import njit

from .index._kernels import popcount64  # the one popcount, with its twin for NUMBA_DISABLE_JIT


@njit(cache=True, nogil=True)
def pair_histogram(words, bits):
    """Counts of Hamming distances over all unordered pairs ``i < j`` of rows of ``words``.

    ``words`` is (n, w) uint64; returns int64 of length ``bits + 1``.
    """
    n, w = words.shape
    hist = np.zeros(bits + 1, dtype=np.int64)
    for i in range(n):
        for j in range(i + 1, n):
            d = np.uint64(0)
            for k in range(w):
                d += popcount64(words[i, k] ^ words[j, k])
            hist[d] += 1
    return hist


@njit(cache=True, nogil=True)
def query_pair_histogram(queries, refs, query_ok, bits):
    """Counts of distances over ordered pairs ``i != j``: query ``i`` against reference ``j``.

    ``queries`` is (n, v, w): ``v`` hashes per image (8 dihedral variants, or 1), the
    pair's distance being the least over them; ``refs`` is (n, w). Queries with
    ``query_ok[i]`` false are not counted (a quality gate refuses them, as the Matcher
    refuses low-quality uploads); references are never gated.
    """
    n, v, w = queries.shape
    hist = np.zeros(bits + 1, dtype=np.int64)
    for i in range(n):
        if not query_ok[i]:
            continue
        for j in range(n):
            if j == i:
                continue
            best = np.uint64(bits)
            for a in range(v):
                d = np.uint64(0)
                for k in range(w):
                    d += popcount64(queries[i, a, k] ^ refs[j, k])
                if d < best:
                    best = d
            hist[best] += 1
    return hist


@njit(cache=True, nogil=True)
def joint_query_pair_histogram(queries_a, refs_a, bits_a, query_ok_a, queries_b, refs_b, bits_b):
    """As :func:`query_pair_histogram` for two algorithms at once: a 2-D histogram.

    ``hist[da, db]`` counts ordered pairs whose least distances are ``da`` under the
    first algorithm and ``db`` under the second, so that either/both/score policies
    can be evaluated at every pair of thresholds. Queries refused by the first
    algorithm's gate (``query_ok_a[i]`` false) land in the extra row ``da = bits_a + 1``,
    which no threshold matches; the second algorithm is not gated.
    """
    n, va, wa = queries_a.shape
    vb = queries_b.shape[1]
    wb = queries_b.shape[2]
    hist = np.zeros((bits_a + 2, bits_b + 1), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            best_a = np.uint64(bits_a + 1)
            if query_ok_a[i]:
                best_a = np.uint64(bits_a)
                for a in range(va):
                    d = np.uint64(0)
                    for k in range(wa):
                        d += popcount64(queries_a[i, a, k] ^ refs_a[j, k])
                    if d < best_a:
                        best_a = d
            best_b = np.uint64(bits_b)
            for b in range(vb):
                d = np.uint64(0)
                for k in range(wb):
                    d += popcount64(queries_b[i, b, k] ^ refs_b[j, k])
                if d < best_b:
                    best_b = d
            hist[best_a, best_b] += 1
    return hist


@njit(cache=True, nogil=True)
def policy_candidates(q_pdq, q_ok, q_ph, q_ph_ok, r_pdq, r_ph, owner, only_owner, pdq_max, ph_max, cap):
    """The pairs a two-hash policy could match, with what the policy looks at.

    Queries are uploads hashed as the Matcher hashes them: ``q_pdq`` (n, v, 4) and
    ``q_ph`` (n, v, 1) hold the PDQ and pHash words of the same ``v`` variants (views x
    dihedral orientations, in the same order), ``q_ok`` (n, v) whether PDQ's quality gate
    passes that variant and ``q_ph_ok`` whether pHash's content gate does (a gated
    variant's pHash distance counts as 65, beyond any threshold). References are ``r_pdq`` (m, 4) and ``r_ph`` (m, 1).
    ``owner[i]`` is the reference that is query ``i``'s own original (-1 for none):
    with ``only_owner`` only that pair is looked at, else every other reference.

    For each pair, ``min_pdq`` is the least gated PDQ distance over the variants (257
    when every variant is gated out), ``min_ph`` the least pHash distance, and
    ``conf[e]`` (``e`` = 0 .. ph_max) the least gated PDQ distance over the variants whose
    pHash distance is at most ``e``, on *the same variant* (257 when none), and
    ``as_is`` the pHash distance of variant 0 (the upload as it is). A pair is
    returned when ``min_pdq <= pdq_max`` or ``min_ph <= ph_max``; any policy with PDQ
    threshold <= pdq_max and pHash thresholds <= ph_max matches no other pair.

    Returns ``(count, qi, rj, min_pdq, min_ph, conf, as_is)`` filled up to ``min(count, cap)``;
    a ``count`` above ``cap`` means "call again with a larger cap".
    """
    n, v, wp = q_pdq.shape
    m = r_pdq.shape[0]
    qi = np.zeros(cap, dtype=np.int64)
    rj = np.zeros(cap, dtype=np.int64)
    out_pdq = np.zeros(cap, dtype=np.int16)
    out_ph = np.zeros(cap, dtype=np.int16)
    conf = np.zeros((cap, ph_max + 1), dtype=np.int16)
    as_is = np.zeros(cap, dtype=np.int16)
    dp = np.zeros(v, dtype=np.int64)
    dh = np.zeros(v, dtype=np.int64)
    count = 0
    for i in range(n):
        lo = 0
        hi = m
        if only_owner:
            if owner[i] < 0:
                continue
            lo = owner[i]
            hi = owner[i] + 1
        for j in range(lo, hi):
            if j == owner[i] and not only_owner:
                continue
            best_p = 257
            best_h = 65
            for a in range(v):
                d = np.uint64(0)
                for k in range(wp):
                    d += popcount64(q_pdq[i, a, k] ^ r_pdq[j, k])
                dp[a] = np.int64(d) if q_ok[i, a] else 257
                dh[a] = np.int64(popcount64(q_ph[i, a, 0] ^ r_ph[j, 0])) if q_ph_ok[i, a] else 65
                if dp[a] < best_p:
                    best_p = dp[a]
                if dh[a] < best_h:
                    best_h = dh[a]
            if best_p > pdq_max and best_h > ph_max:
                continue
            if count < cap:
                qi[count] = i
                rj[count] = j
                out_pdq[count] = best_p
                out_ph[count] = best_h
                as_is[count] = dh[0]
                for e in range(ph_max + 1):
                    c = 257
                    for a in range(v):
                        if dh[a] <= e and dp[a] < c:
                            c = dp[a]
                    conf[count, e] = c
            count += 1
    return count, qi, rj, out_pdq, out_ph, conf, as_is

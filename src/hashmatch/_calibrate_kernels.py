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

"""Flat (bit-sliced and row-order) against MultiIndexHash at 64 bits, 1M rows, by radius.

Issue 12 round 2 (notes/issue-12-fastpath.md): which index the policy's pHash radius 14
should use on each build. Ms per call of 8 queries, best of 5 interleaved rounds. Run it
once natively and once as the AVX2 build (bench_quick's BUILDS), e.g.::

    NUMBA_CACHE_DIR=/tmp/nc NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES="$(python -c \
      'from bench_quick import BUILDS; print(BUILDS["avx2"][1])')" python benchmarks/fastpath_radius.py [phash|uniform]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from bench_fastpath import phash_words
from hashmatch.hashes import HashBatch
from hashmatch.index import Flat, MultiIndexHash
from hashmatch.index import _sliced_kernels as sk


def main() -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    kind = sys.argv[1] if len(sys.argv) > 1 else "phash"
    if kind == "phash":
        w, q = phash_words(rng, n), phash_words(rng, 320)
    else:
        w, q = (rng.integers(0, 2**64, k, dtype=np.uint64) for k in (n, 320))
    batch = HashBatch(w.reshape(-1, 1), algorithm="phash", bits=64)
    sliced = Flat.build(batch)
    row_order = Flat.build(batch)
    row_order._planes = None  # the row-order scan, whatever the CPU
    mih = MultiIndexHash.build(batch)
    print("cpu", os.environ.get("NUMBA_CPU_NAME", "native"), kind, "Flat sliced:", sliced._planes is not None, "mih m", mih.substrings)
    queries = [HashBatch(q[i:i + 8].reshape(-1, 1), algorithm="phash", bits=64) for i in range(0, len(q), 8)]
    radii = [8, 10, 11, 12, 13, 14]
    cases = [(name, ix, r) for r in radii for name, ix in (("flat", sliced), ("roworder", row_order), ("mih", mih))]
    for _, ix, r in cases:
        ix.query(queries[0], r)
    best: dict[tuple[str, int], float] = {}
    for _ in range(5):
        for name, ix, r in cases:
            t = time.perf_counter()
            for qq in queries:
                ix.query(qq, r)
            ms = (time.perf_counter() - t) / len(queries) * 1e3
            best[(name, r)] = min(best.get((name, r), ms), ms)
    for r in radii:
        f, o, m = (best[(k, r)] for k in ("flat", "roworder", "mih"))
        print(f"r={r:2d} sliced plan={sk.sliced_plan(r, 1)} mih scans={mih.scans_at(r)} "
              f"ms/8 queries: Flat {f:.3f} row-order {o:.3f} MultiIndexHash {m:.3f}")


if __name__ == "__main__":
    main()

"""The 64-bit multi-index's two table layouts in one process: partial words (the
default since issue 14) against row numbers plus per-table row copies (before).

Both answer the same queries over the same 1M rows (r = 8, one thread, m = 5), checked
equal first, then timed in interleaved rounds with faiss ``IndexBinaryFlat`` as the
peer. The old layout is built and queried with ``_kernels.mih_tables(copy_words=True)``
and ``_kernels.mih_query``, which 256-bit hashes still use (without the copies).
Run it as ``benchmarks/bench_quick.py`` runs the AVX2 build to compare that build.

    PYTHONPATH=src .venv/bin/python benchmarks/mih64_layouts.py [--n 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import cpu_label  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import faiss
    import numba
    import numpy as np

    from bench_index import make_queries, random_words
    from hashmatch.hashes import HashBatch
    from hashmatch.index import MultiIndexHash
    from hashmatch.index import _kernels as K
    from hashmatch.index.mih import probe_radii

    numba.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    n, r, nq = args.n, 8, 1000
    rng = np.random.default_rng(0)
    refs = random_words(rng, n, 1)
    queries = make_queries(rng, refs, nq, r)
    qbatch = HashBatch(queries, algorithm="bench", bits=64)
    flat = faiss.IndexBinaryFlat(64)
    flat.add(refs.view(np.uint8).reshape(n, -1))
    qcodes = queries.view(np.uint8).reshape(nq, -1)
    new = MultiIndexHash.build(HashBatch(refs, algorithm="bench", bits=64), substrings=5)
    off, entries, copies = K.mih_tables(new._words, new._starts, new._lengths, new._table_at, True)
    bounds = np.array([0, nq], np.int64)
    cap = 1 << 20
    out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int32))
    counts = np.zeros(1, np.int64)
    radii = probe_radii(r, 5)

    def old() -> int:
        K.mih_query(new._words, new._alive, entries, copies, off, new._table_at, new._starts, new._lengths, radii,
                    queries, bounds, r, *out, cap, counts)
        return int(counts[0])

    found = new.query(qbatch, r)
    if old() != len(found):
        raise SystemExit("the two layouts disagree")
    old_bytes = new.nbytes - new._entries.nbytes + entries.nbytes + copies.nbytes
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in (("faiss", lambda: flat.range_search(qcodes, r + 1)), ("row copies", old),
                         ("partial words", lambda: new.query(qbatch, r))):
            start = time.perf_counter()
            fn()
            best[name] = max(best.get(name, 0.0), nq / (time.perf_counter() - start))
    build = os.environ.get("NUMBA_CPU_NAME", "native")
    for name, per_ref in (("row copies", old_bytes / n), ("partial words", new.nbytes / n)):
        print(f"{name:<14} {best[name]:>9.0f} q/s  {best[name] / best['faiss']:5.1f}x faiss flat "
              f"({best['faiss']:.0f} q/s)  {per_ref:5.1f} B/ref  [{build}] {cpu_label()} load {os.getloadavg()[0]:.1f}")
    print(f"partial words / row copies: {best['partial words'] / best['row copies']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

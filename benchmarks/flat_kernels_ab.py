"""A/B of the Flat scan kernels, called directly, against faiss ``IndexBinaryFlat``: one
process, same data, one thread, peers interleaved, best round of thread CPU time.

    python benchmarks/flat_kernels_ab.py --bits 64 --r 8 --plans 2x2,3x1 --isa avx2
    python benchmarks/flat_kernels_ab.py --bits 256 --r 31 --plans 6x2 --isa icelake

``--plans ROUNDSxGROUP,...`` are bit-sliced plans to time besides the chosen one
(``_sliced_kernels.sliced_plan``); the row-order kernel of the word count is always
timed. ``--isa`` recompiles for another CPU as bench_quick does (avx2, icelake, skx).
Every kernel's result is checked against the first and against faiss before timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run(args: argparse.Namespace) -> None:
    import faiss
    import numba
    import numpy as np

    from _common import cpu_label
    from bench_index import make_queries, random_words
    from bench_quick import _faiss_levels
    from hashmatch._jit import target_cpu, target_features
    from hashmatch.index import _kernels, _sliced_kernels

    numba.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    nw = args.bits // 64
    rng = np.random.default_rng(args.seed)
    refs = random_words(rng, args.n, nw)
    nq = args.queries
    qs = np.ascontiguousarray(make_queries(rng, refs, nq, args.r))
    alive = np.ones(args.n, np.uint8)
    cap = nq * 64
    out = (np.empty(cap, np.int64), np.empty(cap, np.int64), np.empty(cap, np.int32))
    counts = np.zeros(1, np.int64)
    fl = faiss.IndexBinaryFlat(args.bits)
    fl.add(refs.view(np.uint8).reshape(args.n, -1))
    qcodes = qs.view(np.uint8).reshape(nq, -1)
    level, at_level = _faiss_levels(faiss)
    r = args.r
    peers: dict[str, Any] = {f"faiss@{level}": lambda: fl.range_search(qcodes, r + 1)}
    at_avx2 = at_level("AVX2")
    if at_avx2 is not None:
        peers["faiss@AVX2"] = lambda: at_avx2(lambda: fl.range_search(qcodes, r + 1))
    if nw == 1:
        peers["row order"] = lambda: counts.__setitem__(0, _kernels.flat_chunk_1(refs, alive, qs, 0, nq, r, *out, 0, cap))
    else:
        blocks = _kernels.flat_blocks(refs)
        chunk = _kernels.blocked_chunk_4 if nw == 4 else _kernels.blocked_chunk_n
        peers["word-major"] = lambda: counts.__setitem__(0, chunk(blocks, refs, alive, qs, 0, nq, r, *out, 0, cap))
    tiny = refs[:16]
    start = time.process_time()
    _sliced_kernels.sliced_planes(tiny)
    compile_planes = time.process_time() - start
    start = time.process_time()
    _sliced_kernels.sliced_chunk(_sliced_kernels.sliced_planes(tiny), tiny, alive[:16], tiny, 0, 1, 3, 1, 1, *out, 0, cap)
    compile_query = time.process_time() - start
    start = time.perf_counter()
    planes = _sliced_kernels.sliced_planes(refs)
    build = time.perf_counter() - start
    chosen = _sliced_kernels.sliced_plan(r, nw)
    plans = [tuple(int(x) for x in p.split("x")) for p in args.plans.split(",") if p]
    for rounds, group in ([chosen] if chosen else []) + [p for p in plans if p != chosen]:
        name = f"sliced {rounds}x{group}" + (" (chosen)" if (rounds, group) == chosen else "")
        peers[name] = lambda rounds=rounds, group=group: counts.__setitem__(0, _sliced_kernels.sliced_chunk(
            planes, refs, alive, qs, 0, nq, r, rounds, group, *out, 0, cap))
    expect = None
    for name, fn in peers.items():
        if name.startswith("faiss"):
            continue
        fn()
        got = sorted(zip(out[0][: counts[0]].tolist(), out[1][: counts[0]].tolist()))
        expect = got if expect is None else expect
        if got != expect:
            raise SystemExit(f"{name}: results differ")
    if expect is None or len(fl.range_search(qcodes, r + 1)[2]) != len(expect):
        raise SystemExit("results differ from faiss")
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, fn in peers.items():
            start = time.thread_time()
            fn()
            best[name] = max(best.get(name, 0.0), nq / (time.thread_time() - start))
    vec = " ".join(sorted(f for f in target_features() if f.startswith("avx512") or f == "avx2"))
    print(f"{args.bits}-bit n={args.n:,} r={r} queries={nq}; kernels for {target_cpu()} [{vec}]; {cpu_label()}")
    print(f"  sliced kernels' first calls (compile, or load from the cache): copy {compile_planes:.2f} s, "
          f"query {compile_query:.2f} s CPU; the copy of {args.n:,} rows: {build:.2f} s")
    base = [k for k in best if k.startswith("faiss")]
    for name, value in best.items():
        ratios = "  ".join(f"{value / best[b]:6.2f}x {b}" for b in base)
        print(f"  {name:22s} {value:10.0f} q/s  {ratios}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=0, help="default: 1000 (64-bit), 300 (longer)")
    parser.add_argument("--plans", default="", help="extra sliced plans, ROUNDSxGROUP,...")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--isa", default="native", help="native, or a bench_quick build: avx2, icelake, skx")
    args = parser.parse_args(argv)
    args.queries = args.queries or (1000 if args.bits == 64 else 300)
    if args.isa != "native" and "NUMBA_CPU_NAME" not in os.environ:
        from bench_quick import BUILDS

        cpu_name, features = BUILDS[args.isa]
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CPU_NAME": cpu_name, "NUMBA_CPU_FEATURES": features, "NUMBA_CACHE_DIR": cache}
            return subprocess.run([sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])],
                                  env=env, check=False).returncode
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Flat (as built, and row-order) against MultiIndexHash at 64 bits, by radius.

Issue 12 round 2 and issue 14 round 7 (notes/issue-14-flat.md): which index the policy's
pHash radius 14 should use on each build. The multi-index is timed PROBING at every
radius (its scan fallback, ``scans_at``, is switched off for the timing), and the
column ``picks`` says what ``build_index`` chooses there with the shipped cap and cost
model. Ms per call of 8 queries (an upload's variants), best of ``--rounds``
interleaved rounds. ``--isa all`` runs the host build and bench_quick's BUILDS, each in
its own process with ``NUMBA_CPU_NAME``, ``NUMBA_CPU_FEATURES`` and a fresh
``NUMBA_CACHE_DIR``::

    PYTHONPATH=src python benchmarks/fastpath_radius.py --isa all --kind phash --n 1000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import cpu_label, pin_malloc  # noqa: E402
from bench_fastpath import phash_words  # noqa: E402


def rows(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "uniform":
        return rng.integers(0, 2**64, n, dtype=np.uint64)
    # In chunks: phash_words holds 64 floats per row while it works.
    return np.concatenate([phash_words(rng, min(100_000, n - i)) for i in range(0, n, 100_000)])


def measure(kind: str, n: int, radii: list[int], rounds: int) -> None:
    from hashmatch.hashes import HashBatch
    from hashmatch.index import Flat, MultiIndexHash, build_index
    from hashmatch.index import _sliced_kernels as sk
    from hashmatch.index import mih as mih_module

    rng = np.random.default_rng(1)
    w, q = rows(kind, rng, n), rows(kind, rng, 320)
    batch = HashBatch(w.reshape(-1, 1), algorithm="phash", bits=64)
    sliced = Flat.build(batch)
    row_order = Flat.build(batch)
    row_order._planes = None  # the row-order scan, whatever the CPU
    mih = MultiIndexHash.build(batch)
    picks = {r: type(build_index(batch, max_distance=r)).__name__ for r in radii}
    scans = {r: mih.scans_at(r) for r in radii}
    # From here on the multi-index probes at every radius (what is being measured).
    mih_module.mih64_max_radius = lambda: 64
    mih_module.scan_cost_ns = lambda bits, n: float("inf")
    assert not any(mih.scans_at(r) for r in radii)
    print(f"cpu {os.environ.get('NUMBA_CPU_NAME', 'native')} ({cpu_label()}) {kind} n={n} "
          f"Flat sliced: {sliced._planes is not None}, mih m={mih.substrings}", flush=True)
    queries = [HashBatch(q[i:i + 8].reshape(-1, 1), algorithm="phash", bits=64) for i in range(0, len(q), 8)]
    structures = (("flat", sliced), ("roworder", row_order), ("mih", mih))
    for r in radii:  # exact either way, and warm
        ref = sliced.query(queries[0], r)
        for _, ix in structures[1:]:
            got = ix.query(queries[0], r)
            assert np.array_equal(np.sort(got.ids), np.sort(ref.ids)), r
    best: dict[tuple[str, int], float] = {}
    for _ in range(rounds):
        for r in radii:
            for name, ix in structures:
                t = time.perf_counter()
                for qq in queries:
                    ix.query(qq, r)
                ms = (time.perf_counter() - t) / len(queries) * 1e3
                best[(name, r)] = min(best.get((name, r), ms), ms)
    for r in radii:
        f, o, m = (best[(k, r)] for k in ("flat", "roworder", "mih"))
        print(f"r={r:2d} sliced plan={sk.sliced_plan(r, 1)} picks={picks[r]} (mih scans_at={scans[r]}) "
              f"ms/8 queries: Flat {f:.3f} row-order {o:.3f} MIH {m:.3f}  MIH/Flat {m / f:.2f} "
              f"MIH/row-order {m / o:.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["phash", "uniform"], default="phash")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--radii", default="8,9,10,11,12,13,14,15,16")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--isa", default="native", help="native, avx2, icelake, skx, or all (comma list)")
    args = parser.parse_args()
    pin_malloc()
    isas = ["native", "avx2", "icelake", "skx"] if args.isa == "all" else args.isa.split(",")
    if isas == ["native"] or (len(isas) == 1 and os.environ.get("NUMBA_CPU_NAME")):
        measure(args.kind, args.n, [int(r) for r in args.radii.split(",")], args.rounds)
        return 0
    from bench_quick import BUILDS

    code = 0
    for isa in isas:
        with tempfile.TemporaryDirectory() as cache:
            env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
            if isa != "native":
                env.update(NUMBA_CPU_NAME=BUILDS[isa][0], NUMBA_CPU_FEATURES=BUILDS[isa][1], NUMBA_CACHE_DIR=cache)
            print(f"== {isa}  load: {os.getloadavg()[0]:.1f}", flush=True)
            cmd = [sys.executable, __file__, "--kind", args.kind, "--n", str(args.n), "--radii", args.radii,
                   "--rounds", str(args.rounds), "--isa", isa]
            code |= subprocess.run(cmd, env=env, check=False).returncode
    return code


if __name__ == "__main__":
    raise SystemExit(main())

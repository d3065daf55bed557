"""Two fixed costs of a scan's matching process, on the CPU clock (issue 14).

1. Start-up, in a fresh interpreter per round: ``import hashmatch`` plus
   ``Matcher.from_store``, then ``spec.warmup()`` (the hashing kernels the workers inherit
   by fork: numba's first dispatch in the process), with and without ``scipy.linalg``
   imported beforehand (numba's BLAS probe imports it on the first dispatch), then the
   index kernels.
2. One index call with a chunk's rows (64 files x 8 dihedral variants = 512 pHashes) on
   bench_scan.py's 1,020 references: numba's parallel kernels (the index's choice from 64
   rows, from the main thread) against one thread.

Run bench_scan.py first to create the data. Malloc pinned by the caller.

    cd benchmarks && PYTHONPATH=../src python scan_startup_parts.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _common import cpu_label

DATA = Path(__file__).resolve().parent / "data"
STORE = str(DATA / "scan-1024x768-s7-n2000-refs.db")


def _startup(pre: str) -> None:
    c0 = time.process_time()
    from hashmatch import Matcher

    matcher = Matcher.from_store(STORE, algorithms=["phash"], dihedral=True)
    c1 = time.process_time()
    if pre == "scipy":
        import scipy.linalg  # noqa: F401
    c2 = time.process_time()
    matcher.spec.warmup()
    c3 = time.process_time()
    matcher.warmup()
    c4 = time.process_time()
    print(f"start-up ({pre:5s}): import + Matcher.from_store {c1 - c0:.3f} s, scipy.linalg first {c2 - c1:.3f} s, "
          f"spec.warmup {c3 - c2:.3f} s, index kernels {c4 - c3:.3f} s (CPU)")


def _batch_query() -> None:
    import numba
    import numpy as np

    from hashmatch import Matcher
    from hashmatch.hashes import HashBatch

    refs = Matcher.from_store(STORE, algorithms=["phash"]).index("phash")
    radius = 14  # pHash's search radius with the default bands
    rng = np.random.default_rng(1)
    batch = HashBatch(rng.integers(0, 2**63, size=(512, 1), dtype=np.uint64), algorithm="phash", bits=64)
    for threads in (numba.get_num_threads(), 1, numba.get_num_threads(), 1):
        numba.set_num_threads(threads)
        refs.query(batch, radius)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(50):
            refs.query(batch, radius)
        print(f"512-row query on {type(refs).__name__} of {len(refs)}, {threads} thread(s) ({numba.threading_layer()}): "
              f"{(time.process_time() - cpu) / 50 * 1e3:.3f} ms CPU, {(time.perf_counter() - wall) / 50 * 1e3:.3f} ms wall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part", choices=["startup", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--pre", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "startup":
        return _startup(args.pre)
    if args.part == "query":
        return _batch_query()
    print(cpu_label())
    for _ in range(args.rounds):
        for pre in ("none", "scipy"):
            subprocess.run([sys.executable, __file__, "--part", "startup", "--pre", pre], check=True)
    subprocess.run([sys.executable, __file__, "--part", "query"], check=True)


if __name__ == "__main__":
    main()

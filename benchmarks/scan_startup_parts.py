"""Two fixed costs of a scan's matching process, on the CPU clock (issue 14).

1. Start-up, in a fresh interpreter per round: ``import hashmatch`` plus
   ``Matcher.from_store``, then ``spec.warmup()`` (the hashing kernels the workers inherit
   by fork: numba's first dispatch in the process), with and without ``scipy.linalg``
   imported beforehand (numba's BLAS probe imports it on the first dispatch), then the
   index kernels.
2. One index call with a chunk's rows (64 files x 8 dihedral variants = 512 pHashes) on
   bench_scan.py's 1,020 references: numba's parallel kernels (the index's choice from 64
   rows, from the main thread) against one thread.

3. ``--ab OLD_SRC``: a 2,000-file ``hashmatch.scan`` (2 workers, the bench_scan ``scan``
   peer's clock: from after ``Matcher.from_store`` to the last result), in a fresh
   interpreter per round, alternating this tree's ``src`` and ``OLD_SRC`` (e.g. ``git
   archive main src`` unpacked). Per round: the scanning process's CPU and wall until the
   first chunk goes to the pool (the serial start-up: the workers are forked by that
   submit), wall to the first result and to the end, and the CPU of the whole scan
   (this process and its workers). Then ``hashmatch scan`` (the CLI, JSONL report) of the
   same files: wall and CPU of the whole command. Medians per code. On a shared machine
   the CPU columns are the steady ones; the serial start-up's CPU is wall time on an idle one.

Run bench_scan.py first to create the data. Malloc pinned by the caller.

    cd benchmarks && PYTHONPATH=../src python scan_startup_parts.py [--rounds 3]
    cd benchmarks && python scan_startup_parts.py --ab /tmp/old/src [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import cpu_label

DATA = Path(__file__).resolve().parent / "data"
STORE = str(DATA / "scan-1024x768-s7-n2000-refs.db")
FOLDER = str(DATA / "scan-1024x768-s7-n2000")
SRC = str(Path(__file__).resolve().parents[1] / "src")


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


def _scan_round() -> None:
    from concurrent.futures import ProcessPoolExecutor

    import hashmatch
    from hashmatch import Matcher

    matcher = Matcher.from_store(STORE, algorithms=["phash"], dihedral=True)
    marks: dict[str, tuple[float, float]] = {}
    submit = ProcessPoolExecutor.submit

    def first_submit(self: ProcessPoolExecutor, *args: object, **kwargs: object) -> object:
        marks.setdefault("submit", (time.perf_counter(), time.process_time()))
        return submit(self, *args, **kwargs)

    ProcessPoolExecutor.submit = first_submit  # type: ignore[method-assign]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.perf_counter(), time.process_time()
    files = 0
    for _ in hashmatch.scan(FOLDER, matcher, workers=2, include=["*.jpg"],
                            mmap_threshold=hashmatch._scan.DEFAULT_MMAP_THRESHOLD):
        files += 1
        if files == 1:
            first = time.perf_counter() - wall
    end = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    own = time.process_time() - cpu
    print(json.dumps({"files": files, "prefork_cpu": marks["submit"][1] - cpu, "prefork_wall": marks["submit"][0] - wall,
                      "first_result": first, "seconds": end, "parent_cpu": own, "scan_cpu": own + workers,
                      "scipy_linalg": "scipy.linalg" in sys.modules}))


def _cli_round(env: dict[str, str]) -> dict[str, float]:
    report = DATA / "scan-startup-parts-report.jsonl"
    report.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hashmatch", "scan", FOLDER, "--store", STORE, "-a", "phash", "-j", "2",
                           "--include", "*.jpg", "--out", str(report), "-q"], env=env, check=False)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"hashmatch scan failed with exit code {proc.returncode}")
    report.unlink()
    return {"cli_seconds": wall, "cli_cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)}


def _ab(old_src: str, rounds: int) -> None:
    print(cpu_label())
    runs: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    for i in range(rounds):
        for code, src in (("old", old_src), ("new", SRC)) if i % 2 else (("new", SRC), ("old", old_src)):
            env = {**os.environ, "PYTHONPATH": src}
            out = subprocess.run([sys.executable, __file__, "--part", "scan"], env=env, check=True,
                                 capture_output=True, text=True)
            runs[code].append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = runs[code][-1]
            r.update(_cli_round(env))
            print(f"round {i + 1} {code}: load {os.getloadavg()[0]:.2f}, pre-fork {r['prefork_cpu']:.3f} s CPU "
                  f"({r['prefork_wall']:.3f} s wall), first result {r['first_result']:.3f} s, end {r['seconds']:.3f} s, "
                  f"parent CPU {r['parent_cpu']:.3f} s, scan CPU {r['scan_cpu']:.3f} s, scipy.linalg {r['scipy_linalg']}; "
                  f"CLI {r['cli_seconds']:.3f} s, CPU {r['cli_cpu']:.3f} s")
    keys = ["prefork_cpu", "prefork_wall", "first_result", "seconds", "parent_cpu", "scan_cpu", "cli_seconds", "cli_cpu"]
    print(f"medians over {rounds} rounds (s):\n      " + "  ".join(f"{k:>12s}" for k in keys))
    for code in ("old", "new"):
        print(f"  {code}:" + "  ".join(f"{statistics.median(r[k] for r in runs[code]):12.3f}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part", choices=["startup", "query", "scan"], help=argparse.SUPPRESS)
    parser.add_argument("--ab", metavar="OLD_SRC", help="A/B the scan's start-up against the code in OLD_SRC")
    parser.add_argument("--pre", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "startup":
        return _startup(args.pre)
    if args.part == "query":
        return _batch_query()
    if args.part == "scan":
        return _scan_round()
    if args.ab:
        return _ab(args.ab, args.rounds)
    print(cpu_label())
    for _ in range(args.rounds):
        for pre in ("none", "scipy"):
            subprocess.run([sys.executable, __file__, "--part", "startup", "--pre", pre], check=True)
    subprocess.run([sys.executable, __file__, "--part", "query"], check=True)


if __name__ == "__main__":
    main()

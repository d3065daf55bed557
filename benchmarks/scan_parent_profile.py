"""Where the scanning process's own CPU goes during a 2,000-file scan (issue 14).

Runs ``hashmatch.scan`` three times over bench_scan.py's data (run it first to create the
data) with 2 workers: once to warm up, once to measure the scanning process's wall and
CPU seconds (all its threads: getrusage), once under cProfile on the process CPU clock,
and prints the top functions. Malloc is pinned by the caller
(``MALLOC_MMAP_THRESHOLD_=134217728 MALLOC_TRIM_THRESHOLD_=268435456``).

    cd benchmarks && PYTHONPATH=../src python scan_parent_profile.py
"""

from __future__ import annotations

import cProfile
import pstats
import time
from pathlib import Path

import hashmatch
from hashmatch import Matcher

from bench_scan import ALGORITHMS
from _common import cpu_label

DATA = Path(__file__).resolve().parent / "data"
FOLDER = str(DATA / "scan-1024x768-s7-n2000")
STORE = str(DATA / "scan-1024x768-s7-n2000-refs.db")


def main() -> None:
    print(cpu_label())
    matcher = Matcher.from_store(STORE, algorithms=ALGORITHMS, dihedral=True)
    profile = cProfile.Profile(time.process_time)
    for round_ in ("warm-up", "measured", "profiled"):
        wall, cpu = time.perf_counter(), time.process_time()
        if round_ == "profiled":
            profile.enable()
        run = hashmatch.scan(FOLDER, matcher, workers=2, include=["*.jpg"],
                             mmap_threshold=hashmatch._scan.DEFAULT_MMAP_THRESHOLD)
        files = sum(1 for _ in run)
        if round_ == "profiled":
            profile.disable()
        cpu = time.process_time() - cpu
        print(f"{round_}: {files} files, wall {time.perf_counter() - wall:.2f} s, "
              f"this process's CPU {cpu:.3f} s ({cpu / files * 1e3:.3f} ms a file)")
    pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()

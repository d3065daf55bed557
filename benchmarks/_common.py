"""Shared benchmark plumbing: pinned allocator, machine facts, timing, result files.

Results go to ``benchmarks/scratch/`` (untracked) unless a script is run with
``--record``: only then are the figures in ``benchmarks/results/`` (which the README
and the closing notes quote) replaced, so a smoke run never overwrites them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"  # recorded figures, tracked
SCRATCH = Path(__file__).resolve().parent / "scratch"  # everything else, gitignored
MMAP_THRESHOLD = "134217728"
TRIM_THRESHOLD = "268435456"


def pin_malloc() -> None:
    """Pin glibc's mmap and trim thresholds the way hashmatch's scan workers do (the one
    rule lives in the library), in this process and, through the environment, in every
    process it starts.

    Without it, each multi-megabyte pixel buffer is a fresh mmap and a full 1024x768
    decode costs 4.6 ms instead of 1.8 ms on these machines.
    """
    from hashmatch._scan import pin_malloc as pin  # benchmark plumbing: not public API

    pin(int(MMAP_THRESHOLD))


VECTOR_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vpopcntdq", "avx512_bitalg")


def cpu_facts() -> tuple[str, list[str]]:
    """The CPU model and which of :data:`VECTOR_FLAGS` it has (recorded with every figure)."""
    cpu, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return cpu, [f for f in VECTOR_FLAGS if f in flags]


def cpu_label() -> str:
    cpu, flags = cpu_facts()
    return f"{cpu} [{' '.join(flags) or 'no avx2'}]"


def machine() -> dict[str, Any]:
    cpu, flags = cpu_facts()
    versions = {}
    for pkg in ("hashmatch", "numpy", "pillow", "imagehash", "numba", "scipy", "pdqhash", "faiss-cpu", "pybktree"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "vector_features": flags,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "versions": versions,
        "load_average_at_start": os.getloadavg(),
    }


def rate(fn: Callable[[Any], Any], items: list[Any], repeats: int = 3) -> float:
    """Best items-per-second over ``repeats`` passes (after one warm-up call)."""
    fn(items[0])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = max(best, len(items) / (time.perf_counter() - start))
    return best


def rates_interleaved(fns: dict[str, Callable[[Any], Any]], items: list[Any], repeats: int = 3) -> dict[str, float]:
    """Best items-per-second of each function, the functions taking turns in every round,
    so that a change in the machine's load hits every peer alike."""
    for fn in fns.values():
        fn(items[0])
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for item in items:
                fn(item)
            best[name] = max(best[name], len(items) / (time.perf_counter() - start))
    return best


HEAP_LAYOUTS = 8
"""Heap layouts :func:`times_over_layouts` measures each function at."""


def _layout_spacer(i: int) -> Any:
    """What is held during a timed call of layout ``i`` (allocated before it, freed after
    it), so that the call's multi-megabyte buffers land elsewhere in the (pinned) heap.
    Even layouts: one untouched block of 0-5 MB below them. Odd layouts: a free hole of
    3.3-4.3 MB with a small block after it, so that one buffer of a few megabytes falls
    into the hole and the next one somewhere else (two buffers allocated back to back
    land at the same offset within a page, which can slow a filter that reads one
    while writing the other: notes/issue-14-pdq.md)."""
    import numpy as np

    if i % 2 == 0:
        return np.empty(i * 1_000_000 + 1_000 * i + 1, dtype=np.uint8)
    hole = np.empty(3_300_000 + (i // 2) * 333_333, dtype=np.uint8)
    guard = np.empty(4096 + 512 * i, dtype=np.uint8)
    del hole
    return guard


def times_over_layouts(fns: dict[str, Callable[[Any], Any]], items: list[Any], rounds: int = 3,
                       layouts: int = HEAP_LAYOUTS) -> dict[str, dict[str, list[float]]]:
    """Seconds per item of each function, wall and thread CPU, at each of ``layouts``
    heap layouts (best of ``rounds`` per layout): ``{name: {"wall": [...], "cpu": [...]}}``.

    Why layouts: a peer's speed can hang on where its buffers land. pdqhash.compute
    filters between two 3 MB float buffers that it allocates back to back; when their
    addresses are 4 KiB-aliased (same offset within a page, the usual outcome on a
    fresh heap) it takes 19 ms on a 1024x768 image instead of 14 ms (measured on this
    project's AMD EPYC, notes/issue-14-pdq.md), so a ratio measured at one layout
    depends on what ran earlier in the process. Here every function is measured at the
    same spread of layouts (a spacer block allocated before each call, :func:`_layout_spacer`),
    the functions taking turns (which goes first alternating), each over all items in a
    row as a real workload runs. (Not item by item: a 17 ms peer call between two 1 ms
    ones evicts the fast side's tables and code, measured 1.15 against 0.86 ms a call.)
    """
    for fn in fns.values():
        for item in items:
            fn(item)
    names = list(fns)
    best = {name: {"wall": [float("inf")] * layouts, "cpu": [float("inf")] * layouts} for name in names}
    for r in range(rounds):
        for layout in range(layouts):
            for name in (names if (r + layout) % 2 == 0 else names[::-1]):
                fn = fns[name]
                wall = cpu = 0.0
                for item in items:
                    spacer = _layout_spacer(layout)
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    fn(item)
                    wall += time.perf_counter() - start
                    cpu += time.thread_time() - start_cpu
                    del spacer
                best[name]["wall"][layout] = min(best[name]["wall"][layout], wall / len(items))
                best[name]["cpu"][layout] = min(best[name]["cpu"][layout], cpu / len(items))
    return best


def cold_start(code: str) -> float:
    """Seconds for a fresh interpreter to run ``code`` (numba cache already on disk)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def add_record_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record", action="store_true",
        help=f"write results to {RESULTS.name}/ (the recorded figures) instead of {SCRATCH.name}/",
    )


def results_dir(record: bool) -> Path:
    """Where a run writes: the recorded figures only when asked to record."""
    return RESULTS if record else SCRATCH


def write_results(name: str, payload: dict[str, Any], *, record: bool) -> Path:
    folder = results_dir(record)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)

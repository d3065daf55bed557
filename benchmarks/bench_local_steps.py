"""Where the local stage's time goes, step by step (issue 12, round 6).

Builds the index of ``bench_local.py --latency-only`` (its 1024 x 768 JPEG uploads, synthetic
retrieval rows of ``--refs`` references, one thread) and times :meth:`LocalIndex.match` per
upload with thread-CPU timers around each step: JPEG decode (``_grey``), contrast stretch,
ORB detection and description (``_orb``), feature ordering (``retrieval_order``), region
proposals, resizes of the region views, retrieval (``LocalIndex._shortlist``: the descriptor
tables' lookups and the vote), verification (``verify``). Prints each step's mean per upload,
over all uploads and over the slowest 15 % (what the p95 is made of), and the rest.

Run: ``PYTHONPATH=src python benchmarks/bench_local_steps.py --refs 100000``
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_label, pin_malloc  # noqa: E402

STEPS = (("_features", "_grey"), ("_features", "_stretched"), ("_features", "_orb"), ("_features", "retrieval_order"),
         ("_features", "propose_regions"), ("_features", "resize"), ("_index", "verify"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=int, default=100_000)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--features", type=int, default=100, help="distinct references whose features verification reads")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    pin_malloc()
    import numba

    from bench_local import latency_uploads, synthetic_retrieval
    from hashmatch.local import RETRIEVAL_FEATURES, LocalIndex, _features, _index, reference_features
    from hashmatch.local._opencv import opencv
    from hashmatch.testing.synthetic import generate_image, image_seed

    numba.set_num_threads(1)
    opencv().setNumThreads(1)
    feats = [reference_features(generate_image(image_seed(args.seed, i), long_side=512)) for i in range(args.features)]
    rng = np.random.default_rng(args.seed)
    data = latency_uploads(args.uploads, rng, args.seed)
    retrieval = synthetic_retrieval(np.concatenate([f.descriptors for f in feats]), args.refs, RETRIEVAL_FEATURES, rng)
    index = LocalIndex(retrieval, np.repeat(np.arange(args.refs, dtype=np.int64), RETRIEVAL_FEATURES),
                       lambda wanted: {i: feats[i % args.features] for i in wanted})
    index.match(data[0])
    spent: collections.Counter[str] = collections.Counter()

    def timed(name: str, fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            c0 = time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.thread_time() - c0
        return run

    modules = {"_features": _features, "_index": _index}
    for mod, name in STEPS:  # module globals, so the stage's own calls go through the timers
        setattr(modules[mod], name, timed(name, getattr(modules[mod], name)))
    LocalIndex._shortlist = timed("retrieval", LocalIndex._shortlist)  # type: ignore[method-assign]
    rows = []
    for upload in data:
        spent.clear()
        c0 = time.thread_time()
        index.match(upload)
        total = time.thread_time() - c0
        rows.append((total, dict(spent)))
    totals = np.array([t for t, _ in rows])
    slow = [r for r in rows if r[0] >= np.percentile(totals, 85)]
    names = [n for _, n in STEPS[:-1]] + ["retrieval", "verify"]
    print(f"{cpu_label()}; {args.refs} references, {len(rows)} uploads; thread CPU per upload, ms")
    print(f"total: p50 {1e3 * np.percentile(totals, 50):.1f}, p95 {1e3 * np.percentile(totals, 95):.1f}")
    print(f"{'step':<18}{'mean':>8}{'slowest 15 %':>14}")
    for name in names + ["rest"]:
        def part(r: tuple[float, dict[str, float]]) -> float:
            return r[0] - sum(r[1].values()) if name == "rest" else r[1].get(name, 0.0)
        print(f"{name:<18}{1e3 * np.mean([part(r) for r in rows]):>8.2f}{1e3 * np.mean([part(r) for r in slow]):>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

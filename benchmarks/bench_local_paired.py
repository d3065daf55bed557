"""Local-stage latency of two (or more) source trees, paired upload by upload (issue 12, round 6).

Each tree (a ``src`` folder, e.g. ``git archive main src`` unpacked) runs in a worker process
of its own, which builds the same 100k-reference index as ``bench_local.py --latency-only``
(its uploads and synthetic retrieval rows, seed for seed) and matches the upload the driver
names; the driver asks every worker in turn, in a rotating order, so the machine's load weighs
on each alike. Reported per tree: thread-CPU and wall p50/p95 of :meth:`LocalIndex.match`,
the ratio of each p95 to the first tree's, and whether every upload's outcome (each candidate
verified, passed or not, with its verification's numbers; ``keep_failed=True``) equals the
first tree's.

Run: ``python benchmarks/bench_local_paired.py /tmp/old/src src --refs 100000 --uploads 100``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def worker(refs: int, uploads: int, features: int, seed: int) -> None:
    """Build the index, then answer ``<upload number>`` lines with one JSON line each."""
    sys.path.insert(0, str(HERE))
    from _common import pin_malloc

    pin_malloc()
    import numba

    from bench_local import latency_uploads, synthetic_retrieval
    from hashmatch.local import RETRIEVAL_FEATURES, LocalIndex, reference_features
    from hashmatch.local._opencv import opencv
    from hashmatch.testing.synthetic import generate_image, image_seed

    numba.set_num_threads(1)
    opencv().setNumThreads(1)
    feats = [reference_features(generate_image(image_seed(seed, i), long_side=512)) for i in range(features)]
    rng = np.random.default_rng(seed)
    data = latency_uploads(uploads, rng, seed)
    retrieval = synthetic_retrieval(np.concatenate([f.descriptors for f in feats]), refs, RETRIEVAL_FEATURES, rng)
    index = LocalIndex(retrieval, np.repeat(np.arange(refs, dtype=np.int64), RETRIEVAL_FEATURES),
                       lambda wanted: {i: feats[i % features] for i in wanted})
    index.match(data[0])
    print(json.dumps({"ready": True, "bytes_per_reference": index.nbytes / refs}), flush=True)
    for line in sys.stdin:
        k = int(line)
        t0, c0 = time.perf_counter(), time.thread_time()
        found = index.match(data[k], keep_failed=True)
        cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
        outcome = [[m.entry_id, m.score, m.verification.passed, m.verification.reason, m.verification.tentative,
                    m.inliers, m.verification.coverage, m.verification.spread] for m in found]
        print(json.dumps({"cpu": cpu, "wall": wall, "outcome": outcome}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trees", nargs="+", help="src folders; the first is the baseline")
    ap.add_argument("--refs", type=int, default=100_000)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--features", type=int, default=300, help="distinct references whose features verification reads")
    ap.add_argument("--rounds", type=int, default=1, help="passes over the uploads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.refs, args.uploads, args.features, args.seed)
        return 0
    procs = []
    for tree in args.trees:
        env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
        cmd = [sys.executable, __file__, "--worker", "--refs", str(args.refs), "--uploads", str(args.uploads),
               "--features", str(args.features), "--seed", str(args.seed), "x"]
        procs.append(subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    ready = [json.loads(p.stdout.readline()) for p in procs]  # type: ignore[union-attr]
    load_start = os.getloadavg()
    cpu: list[list[float]] = [[] for _ in procs]
    wall: list[list[float]] = [[] for _ in procs]
    same = [0] * len(procs)
    for r in range(args.rounds):
        for k in range(args.uploads):
            order = [(j + k + r) % len(procs) for j in range(len(procs))]
            outcome: dict[int, Any] = {}
            for j in order:
                procs[j].stdin.write(f"{k}\n")  # type: ignore[union-attr]
                procs[j].stdin.flush()  # type: ignore[union-attr]
                reply = json.loads(procs[j].stdout.readline())  # type: ignore[union-attr]
                cpu[j].append(reply["cpu"])
                wall[j].append(reply["wall"])
                outcome[j] = reply["outcome"]
            for j in range(len(procs)):
                same[j] += outcome[j] == outcome[0]
    load_end = os.getloadavg()
    for p in procs:
        p.stdin.close()  # type: ignore[union-attr]
        p.wait()
    rows = []
    base = np.percentile(cpu[0], 95)
    for j, tree in enumerate(args.trees):
        row = {"tree": tree, "bytes_per_reference": ready[j]["bytes_per_reference"],
               **{f"{name}_p{q}_ms": 1e3 * float(np.percentile(v[j], q)) for name, v in (("cpu", cpu), ("wall", wall)) for q in (50, 95)},
               "cpu_p95_ratio_to_first": float(np.percentile(cpu[j], 95) / base),
               "uploads_identical_to_first": f"{same[j]}/{args.uploads * args.rounds}"}
        rows.append(row)
        print(f"{tree}: CPU p50 {row['cpu_p50_ms']:.1f} ms, p95 {row['cpu_p95_ms']:.1f} ms "
              f"(x{row['cpu_p95_ratio_to_first']:.3f}); wall p50 {row['wall_p50_ms']:.1f}, p95 {row['wall_p95_ms']:.1f} ms; "
              f"outcomes identical to the first tree: {row['uploads_identical_to_first']}")
    print(f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    if args.out:
        sys.path.insert(0, str(HERE))
        from _common import cpu_label

        result = {"refs": args.refs, "uploads": args.uploads, "rounds": args.rounds, "seed": args.seed,
                  "features": args.features, "threads": 1, "machine": cpu_label(),
                  "clock": "cpu = time.thread_time in the worker; wall = time.perf_counter",
                  "load_average": [load_start[0], load_end[0]], "trees": rows}
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

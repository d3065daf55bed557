"""Retrieval settings of the local stage compared in one run (issue 12, round 5): rows per
reference, radius, and the second chance's radius and lookups.

Each variant is a comma list of ``rows=<retrieval rows per reference>``, ``radius=<r>``,
``sr=<second chance radius, 0 = off>``, ``sl=<second chance lookups>`` (the whole upload's first
``sl`` rows and ``sl`` shared by its other views), ``base`` for none; variants are ``;``-separated.
Every variant runs :meth:`LocalIndex.match_features` with the default rule on the same views of
the same queries (positives of ``--split``, as ``bench_local_misses.py``: ``--refs`` synthetic +
every real photo as references, the first ``--positives`` synthetic and every real original
altered by each transform of ``--only``), and reports hits per transform and every wrong
reference that passed.

Run: ``python benchmarks/bench_local_second.py --only 25,26,27,28 "base;rows=20;rows=20,sr=26,sl=10"``

``--latency N``: instead, thread-CPU time of :meth:`LocalIndex.match` per 1024 × 768 JPEG upload
(bench_local's uploads and its synthetic retrieval rows, N references, one thread) for each
variant, the variants alternating upload by upload in one process, so that the machine's load
weighs on each alike (round 5: the machine was shared at load 5-11).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_malloc  # noqa: E402
from bench_local import real_photos  # noqa: E402


_NAMES = {"radius": "radius", "sr": "second_radius", "sl": "second_lookups"}


def build(variant: str, feats: list[Any]) -> Any:
    from hashmatch.local import RETRIEVAL_FEATURES, LocalIndex

    opts = dict(part.split("=") for part in variant.split(",") if "=" in part)
    rows = int(opts.pop("rows", RETRIEVAL_FEATURES))
    names = _NAMES
    unknown = set(opts) - set(names)
    if unknown:
        raise SystemExit(f"unknown setting(s) {sorted(unknown)} in {variant!r}")
    kept = [f.descriptors[:rows] for f in feats]
    retrieval = np.ascontiguousarray(np.concatenate(kept))
    owners = np.repeat(np.arange(len(feats), dtype=np.int64), [k.shape[0] for k in kept])
    return LocalIndex(retrieval, owners, lambda wanted: {i: feats[i] for i in wanted},
                      **{names[k]: int(v) for k, v in opts.items()})


def latency(variants: list[str], refs: int, uploads: int, seed: int) -> None:
    import time

    import numba

    from bench_local import latency_uploads, synthetic_retrieval
    from hashmatch.local import LocalIndex, reference_features
    from hashmatch.local._opencv import opencv
    from hashmatch.testing.synthetic import generate_image, image_seed

    numba.set_num_threads(1)
    opencv().setNumThreads(1)
    feats = [reference_features(generate_image(image_seed(seed, i), long_side=512)) for i in range(300)]
    pool = np.concatenate([f.descriptors for f in feats])
    data = latency_uploads(uploads, np.random.default_rng(seed), seed)
    indexes = []
    for v in variants:
        opts = dict(part.split("=") for part in v.split(",") if "=" in part)
        rows = int(opts.pop("rows", 20))
        retrieval = synthetic_retrieval(pool, refs, rows, np.random.default_rng(seed))
        index = LocalIndex(retrieval, np.repeat(np.arange(refs, dtype=np.int64), rows), lambda w: {i: feats[i % 300] for i in w},
                           **{_NAMES[k]: int(x) for k, x in opts.items()})
        index.match(data[0])
        indexes.append(index)
    cpu: list[list[float]] = [[] for _ in variants]
    for u in data:
        for k, index in enumerate(indexes):
            c0 = time.thread_time()
            index.match(u)
            cpu[k].append(time.thread_time() - c0)
    for v, c, index in zip(variants, cpu, indexes):
        print(f"{v}: CPU p50 {1e3 * np.percentile(c, 50):.1f} ms, p95 {1e3 * np.percentile(c, 95):.1f} ms, "
              f"{index.nbytes / refs:.0f} B/ref ({len(c)} uploads, {refs} references)")


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refs", type=int, default=2000)
    ap.add_argument("--positives", type=int, default=60)
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--only", default="", help="comma list of transform indexes (default: all)")
    ap.add_argument("--latency", type=int, default=0, help="references for the latency mode (0: recall mode)")
    ap.add_argument("--uploads", type=int, default=100)
    args = ap.parse_args(argv)
    if args.latency:
        latency(args.variants.split(";"), args.latency, args.uploads, args.seed)
        return 0

    from hashmatch.local import extract_views, reference_features
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    suite = hard_suite(seed=args.seed)
    label = [s.label if not isinstance(s, tuple) else " + ".join(x.label for x in s) for _, s in suite]
    only = [int(x) for x in args.only.split(",") if x] or list(range(len(suite)))
    real = real_photos()
    names = [f"synthetic/{i}" for i in range(args.refs)] + [n for n, _ in real]

    def original(i: int) -> Any:
        return generate_image(image_seed(args.seed, i), long_side=512) if i < args.refs else real[i - args.refs][1]

    feats = [reference_features(original(i)) for i in range(len(names))]
    variants = [(v, build(v, feats)) for v in args.variants.split(";")]
    pos = list(range(min(args.positives, args.refs))) + list(range(args.refs, len(names)))
    pos = [o for k, o in enumerate(pos) if k % 2 == args.split]
    hits: dict[str, collections.Counter[int]] = {v: collections.Counter() for v, _ in variants}
    wrong: dict[str, list[str]] = {v: [] for v, _ in variants}
    for j in only:
        for o in pos:
            views = extract_views(apply_chain(original(o), suite[j][1]))
            for v, index in variants:
                found = index.match_features(views)
                hits[v][j] += any(m.entry_id == o for m in found)
                wrong[v] += [f"{names[o]} / {label[j]} -> {names[m.entry_id]} ({m.inliers})" for m in found if m.entry_id != o]
    print(f"split {args.split}: {len(pos)} originals x {len(only)} transforms, {len(names)} references")
    for v, _ in variants:
        h = hits[v]
        print(f"{v}: {sum(h.values())}/{len(pos) * len(only)}; per transform " + " ".join(f"{j}:{h[j]}" for j in only)
              + f"; wrong references passed: {len(wrong[v])} {wrong[v][:5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

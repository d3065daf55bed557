"""Local stage (issue 12, latency round): descriptor retrieval, DescriptorIndex against
MultiIndexHash (row-number tables, main's), and where an upload's time goes.

* Default: at each ``--sizes`` (references, 16 retrieval rows each: real ORB descriptors of
  300 synthetic references with 25 % of bits flipped, as ``bench_local.py``'s latency rows),
  both indexes over the same rows, queried in turn with the descriptors one unrelated
  1024 × 768 JPEG upload looks up when both steps run (300 of the whole upload + 100 of each
  rescaled view or region), one thread; thread-CPU p50/p95 per upload, the ratio, bytes per
  reference, build seconds and the process's peak RSS.
* ``--profile``: cProfile of ``LocalIndex.match`` (the whole stage) at the first size over
  ``--uploads`` uploads (half unrelated photos, half altered unrelated images, as
  ``bench_local_variants.py --profile``), the top functions by own time; ``--mih`` with
  main's ``MultiIndexHash`` as the retrieval index (thread CPU time).

Run: ``python benchmarks/bench_local_retrieval.py --sizes 10000 100000 1000000``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, results_dir  # noqa: E402


def retrieval_rows(pool: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` descriptors as index words: pool rows with 25 % of bits flipped, made in
    chunks (``bench_local.synthetic_retrieval`` holds every bit as a float at once)."""
    from hashmatch.local._index import descriptor_words

    words = np.empty((rows, 4), np.uint64)
    for a in range(0, rows, 250_000):
        b = min(rows, a + 250_000)
        bits = np.unpackbits(pool[rng.integers(0, pool.shape[0], b - a)], axis=1)
        bits ^= (rng.random(bits.shape, dtype=np.float32) < 0.25).astype(np.uint8)
        words[a:b] = descriptor_words(np.packbits(bits, axis=1))
    return words


def uploads(rng: np.random.Generator, count: int) -> list[bytes]:
    from hashmatch.testing.synthetic import generate_image
    from hashmatch.testing.transforms import apply_chain, hard_suite

    suite = hard_suite(seed=0)
    out = []
    for k in range(count):
        img = (apply_chain(generate_image(int(rng.integers(0, 2**31)), long_side=512), suite[k % len(suite)][1]).resize((1024, 768))
               if k % 2 else generate_image(int(rng.integers(0, 2**31)), size=(1024, 768)))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--uploads", type=int, default=30)
    ap.add_argument("--radius", type=int, default=16)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--mih", action="store_true", help="--profile with MultiIndexHash (main's) as the retrieval index")
    add_record_option(ap)
    args = ap.parse_args(argv)

    import cv2
    import numba

    from hashmatch.hashes import HashBatch
    from hashmatch.index import MultiIndexHash
    from hashmatch.local import RETRIEVAL_FEATURES, LocalIndex, extract_views, reference_features
    from hashmatch.local._index import DEFAULT_QUERY_LOOKUPS, DEFAULT_REGION_LOOKUPS, descriptor_words
    from hashmatch.local._tables import DescriptorIndex
    from hashmatch.testing.synthetic import generate_image, image_seed

    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    feats = [reference_features(generate_image(image_seed(args.seed, i), long_side=512)) for i in range(300)]
    pool = np.concatenate([f.descriptors for f in feats])
    ups = uploads(rng, args.uploads)
    out: dict[str, Any] = {"machine": machine(), "radius": args.radius, "uploads": len(ups), "threads": 1}
    if args.profile:
        n = args.sizes[0]
        words = retrieval_rows(pool, n * RETRIEVAL_FEATURES, rng)
        rows = np.frombuffer(words.astype(">u8").tobytes(), np.uint8).reshape(-1, 32)
        owners = np.repeat(np.arange(n, dtype=np.int64), RETRIEVAL_FEATURES)
        local = LocalIndex(rows, owners, lambda w: {i: feats[i % 300] for i in w})
        if args.mih:  # main's retrieval index over the same rows
            local._index = MultiIndexHash.build(HashBatch(words, algorithm="orb", bits=256), owners, filter_records=False)
        local.match(ups[0])
        prof = cProfile.Profile(time.thread_time)  # this thread's CPU time, not wall (the machine is shared)
        prof.enable()
        for u in ups:
            local.match(u)
        prof.disable()
        print(f"{type(local._index).__name__} at {n} references, {len(ups)} uploads: own time per upload")
        stats = pstats.Stats(prof).sort_stats("tottime")
        for (path, line, fn), (_, calls, own, _, _) in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]:  # type: ignore[attr-defined]
            print(f"  {1e3 * own / len(ups):6.2f} ms  {calls / len(ups):5.1f} calls  {Path(path).name}:{line}({fn})")
        return 0
    qsets = []
    for u in ups:
        views = extract_views(u)
        q = np.concatenate([views[0].descriptors[:DEFAULT_QUERY_LOOKUPS]] + [v.descriptors[:DEFAULT_REGION_LOOKUPS] for v in views[1:]])
        qsets.append(HashBatch(descriptor_words(q), algorithm="orb", bits=256))
    out["lookups_per_upload_mean"] = float(np.mean([len(q) for q in qsets]))
    for cls in (DescriptorIndex, MultiIndexHash):  # build times without the kernels' first load
        cls.build(HashBatch(np.zeros((2048, 4), np.uint64), algorithm="orb", bits=256)).query(qsets[0], args.radius)
    for n in args.sizes:
        batch = HashBatch(retrieval_rows(pool, n * RETRIEVAL_FEATURES, rng), algorithm="orb", bits=256)
        ids = np.repeat(np.arange(n, dtype=np.int64), RETRIEVAL_FEATURES)
        built, times = {}, {}
        for name in ("DescriptorIndex", "MultiIndexHash"):
            t0 = time.perf_counter()
            built[name] = (DescriptorIndex.build(batch, ids) if name == "DescriptorIndex"
                           else MultiIndexHash.build(batch, ids, filter_records=False))
            times[name] = {"build_s": time.perf_counter() - t0, "bytes_per_reference": built[name].nbytes / n, "cpu": []}
            built[name].query(qsets[0], args.radius)
        answers = {}
        for q in qsets:  # in turn, so both see the same load
            for name, index in built.items():
                c0 = time.thread_time()
                res = index.query(q, args.radius)
                times[name]["cpu"].append(time.thread_time() - c0)
                answers[name] = (res.query_index.tobytes(), res.ids.tobytes())
            if answers["DescriptorIndex"] != answers["MultiIndexHash"]:
                raise SystemExit("the two indexes answered differently")
        row = {}
        for name, t in times.items():
            cpu = t.pop("cpu")
            row[name] = {**t, "cpu_p50_ms": 1e3 * float(np.percentile(cpu, 50)), "cpu_p95_ms": 1e3 * float(np.percentile(cpu, 95))}
        row["ratio_p50"] = row["DescriptorIndex"]["cpu_p50_ms"] / row["MultiIndexHash"]["cpu_p50_ms"]
        row["ratio_p95"] = row["DescriptorIndex"]["cpu_p95_ms"] / row["MultiIndexHash"]["cpu_p95_ms"]
        row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        out[str(n)] = row
        print(json.dumps({str(n): row}, indent=1), flush=True)
        del built
    folder = results_dir(args.record)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "local_retrieval.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

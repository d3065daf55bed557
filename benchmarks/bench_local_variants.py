"""Local stage variants, compared in one run (issue 12, round 2): recall of the local stage
on the hard transforms where it missed most, and the most inliers any wrong reference got.

Usage: ``python benchmarks/bench_local_variants.py NREF NPOS NNEG VARIANTS`` where VARIANTS is a
comma list of ``whole`` (upload features only), ``views<side>`` (region views at that long
side), ``r<radius>``, ``l<lookups>``, ``rl<region lookups>``, ``c<candidates>``,
``scale<f>`` (one more view of the upload at f of its scale), ``rs<f>[+<f>...]`` (the second
step's rescaled views at these scales instead of ``RESCALED``). Each variant runs the code of
the current checkout with that setting changed; figures in notes/issue-12.md come from
``1000 10 100 ...``: 1000 synthetic + the real photos as references, 10 synthetic + every
real original × 17 hard transforms (crop 0.1, crop_resize ×2, rotate 1°, every screenshot,
collage and combined, meme 0.12, frame gradient), 100 altered negatives; a positive counts
at >= 20 inliers with inlier ratio >= 0.3. ``python benchmarks/bench_local_variants.py --latency``
times LocalIndex.match at 100k synthetic retrieval rows for region lookups 150 vs 100;
``--scan`` times a scan worker per file with and without local views; ``--profile V1,V2``
gives each variant's thread-CPU time per part of the stage at 100k references (round 3).
Round 3 variant names (``&``-joined): ``base``, ``rs-`` (no rescaled views), ``rs<f>[+<f>]``,
``rescan<k>``, ``side<N>``, ``od<k>``, ``fast<t>``, ``qf<t>``, ``rsl<n>``, ``rwr``, ``r<radius>``,
``l<lookups>``, ``rl<region lookups>``, ``c<candidates>``, ``ee<early exit>`` (see
``bench_local_variants_settings.py``).
"""
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_local import real_photos, PERMISSIVE
from bench_local_variants_settings import settings_for
from hashmatch.testing.synthetic import generate_image, image_seed
from hashmatch.testing.transforms import apply_chain, hard_suite
from hashmatch.local import LocalIndex, VerificationRule, reference_features, extract_features, extract_views
import hashmatch.local._features as F


def index_100k() -> LocalIndex:
    """One thread (numba, OpenCV); 100k synthetic retrieval rows over 300 real feature sets."""
    import cv2
    import numba
    from bench_local import synthetic_retrieval
    from hashmatch.local import RETRIEVAL_FEATURES

    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    n = 100_000
    refs = [reference_features(generate_image(image_seed(0, i), long_side=512)) for i in range(300)]
    pool = np.concatenate([f.descriptors for f in refs])
    return LocalIndex(synthetic_retrieval(pool, n, RETRIEVAL_FEATURES, np.random.default_rng(0)),
                      np.repeat(np.arange(n, dtype=np.int64), RETRIEVAL_FEATURES), lambda w: {i: refs[i % 300] for i in w})


def latency_ab() -> None:
    """LocalIndex.match at 100k synthetic retrieval rows: region lookups 150 vs 100."""
    import io

    idx = index_100k()
    suite = hard_suite(seed=0)
    ups = []
    for k in range(40):
        img = (generate_image(7 * 10**6 + k, size=(1024, 768)) if k % 2 == 0 else
               apply_chain(generate_image(image_seed(0, k * 7 % 300), long_side=512), suite[k % len(suite)][1]).resize((1024, 768)))
        b = io.BytesIO()
        img.save(b, format="JPEG", quality=90)
        ups.append(b.getvalue())
    times: dict[int, list[float]] = {150: [], 100: []}
    for _ in range(2):
        for u in ups:
            for rl in times:
                idx.region_lookups = rl
                t = time.perf_counter()
                idx.match(u)
                times[rl].append(time.perf_counter() - t)
    for rl, v in times.items():
        print(f"region lookups {rl}: p50 {1e3 * np.percentile(v, 50):.1f} ms, p95 {1e3 * np.percentile(v, 95):.1f} ms")


def scan_cost() -> None:
    """A scan worker's time per 1024 x 768 JPEG: hashes (PDQ, pHash) vs hashes + local views."""
    import dataclasses
    import tempfile

    import cv2
    from hashmatch import QuerySpec
    from hashmatch._scan._worker import hash_chunk

    cv2.setNumThreads(1)
    folder = Path(tempfile.mkdtemp())
    files = []
    for k in range(40):
        p = folder / f"{k}.jpg"
        generate_image(k, size=(1024, 768)).save(p, quality=90)
        files.append((str(p), p.stat().st_size, p.stat().st_mtime_ns))
    specs = {"hashes": QuerySpec(algorithms=("pdq", "phash"))}
    specs["hashes + local views"] = dataclasses.replace(specs["hashes"], local_features=True)
    times: dict[str, list[float]] = {k: [] for k in specs}
    for s in specs.values():
        hash_chunk(files[:2], s)  # warm-up
    for _ in range(3):
        for name, s in specs.items():
            t = time.perf_counter()
            hash_chunk(files, s)
            times[name].append(time.perf_counter() - t)
    for name, v in times.items():
        print(f"{name}: median {1e3 * np.median(v) / len(files):.1f} ms per file")


def profile(variants: list[str]) -> None:
    """Thread-CPU time per part of LocalIndex.match at 100k synthetic retrieval rows, per
    variant and per number of proposed regions (100 uploads of 1024 x 768, as bench_local's)."""
    import io

    from hashmatch.local import _regions as R

    idx = index_100k()
    suite = hard_suite(seed=0)
    rng = np.random.default_rng(0)
    ups = []
    for k in range(100):
        img = (apply_chain(generate_image(int(rng.integers(0, 2**31)), long_side=512), suite[k % len(suite)][1]).resize((1024, 768))
               if k % 2 else generate_image(int(rng.integers(0, 2**31)), size=(1024, 768)))
        b = io.BytesIO()
        img.save(b, format="JPEG", quality=90)
        ups.append(b.getvalue())
    for v in variants:
        changes = settings_for(v, F, idx)
        saved = {k: getattr(*k) for k in changes}
        for (obj, attr), value in changes.items():
            setattr(obj, attr, value)
        idx.match(ups[0])
        rows = []
        for u in ups:
            c0 = time.thread_time()
            whole, grey, factor = F._whole_view(u, F.DEFAULT_LIMITS, F.QUERY_FEATURES)
            c1 = time.thread_time()
            idx._verify_views([whole], [(0, idx.query_lookups)])
            c2 = time.thread_time()
            nreg = len(R.propose_regions(np.asarray(grey), F.REGION_LIMIT))
            c3 = time.thread_time()
            views = F.region_views(grey, factor, whole)  # proposes the regions again
            c4 = time.thread_time()
            spans = [(idx.query_lookups, idx.query_lookups + idx.rescan_lookups)] + [(0, idx.region_lookups)] * len(views)
            idx._verify_views([whole, *views], spans)
            c5 = time.thread_time()
            rows.append((nreg, c1 - c0, c2 - c1, c3 - c2, c4 - c3 - (c3 - c2), c5 - c4, c5 - c0))
        a = np.array(rows)
        print(f"{v}: both steps always (an unrelated upload), thread CPU p50 {1e3 * np.percentile(a[:, 6], 50):.1f} ms, "
              f"p95 {1e3 * np.percentile(a[:, 6], 95):.1f} ms")
        for nr in np.unique(a[:, 0]):
            s = a[a[:, 0] == nr]
            print(f"   regions {int(nr)} (n={len(s)}) mean ms: decode+ORB {1e3 * s[:, 1].mean():.1f}, retrieval+verification "
                  f"{1e3 * s[:, 2].mean():.1f}, proposals {1e3 * s[:, 3].mean():.1f}, second-step views {1e3 * s[:, 4].mean():.1f}, "
                  f"their retrieval+verification {1e3 * s[:, 5].mean():.1f}, total {1e3 * s[:, 6].mean():.1f}")
        for (obj, attr), value in saved.items():
            setattr(obj, attr, value)


if sys.argv[1] == "--profile":
    profile(sys.argv[2].split(","))
    sys.exit(0)
if sys.argv[1] == "--scan":
    scan_cost()
    sys.exit(0)
if sys.argv[1] == "--latency":
    latency_ab()
    sys.exit(0)
NREF, NPOS, NNEG = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
suite = hard_suite(seed=0)
pick = [j for j,(f,s) in enumerate(suite) if f in ("screenshot","collage","combined") or "crop_resize" in str(s) or j in (0,8,21,23)]
synth=[generate_image(image_seed(0,i), long_side=512) for i in range(NREF)]
real=[im for _,im in real_photos()]
orig=synth+real
t=time.perf_counter(); feats=[reference_features(im) for im in orig]; print("refs", time.perf_counter()-t, file=sys.stderr)
index = LocalIndex.from_features(feats, rule=VerificationRule(**PERMISSIVE))
pos=list(range(NPOS))+list(range(NREF,len(orig)))
queries=[(o,j,apply_chain(orig[o], suite[j][1])) for o in pos for j in pick]
queries+=[(-1,pick[k%len(pick)],apply_chain(generate_image(image_seed(1000,k),long_side=512), suite[pick[k%len(pick)]][1])) for k in range(NNEG)]
if len(sys.argv) > 5 and sys.argv[5] == "up":  # uploads as large as the latency benchmark's (long side 1024)
    queries=[(o,j,img.resize((round(img.width*1024/max(img.size)), round(img.height*1024/max(img.size))))) for o,j,img in queries]
def run(name, fn, through_match=False):
    t=time.perf_counter(); found={}; wrong=[]
    for o,j,img in queries:
        for m in (index.match(img, keep_failed=True) if through_match else index.match_features(fn(img), keep_failed=True)):
            v=m.verification
            ok = v.reason in ("verified","too few inliers","too few of the correspondences agree","inliers cover too little of the reference") and v.inliers/max(v.tentative,1)>=0.3
            if not ok: continue
            if m.entry_id==o: found[(o,j)]=max(found.get((o,j),0),v.inliers)
            else:
                wrong.append(v.inliers)
                if v.inliers >= 10:
                    print(f"   wrong: query of {o} / transform {j} -> reference {m.entry_id}: {v.inliers} inliers", flush=True)
    dt=time.perf_counter()-t
    fams={}
    for o,j,_ in queries:
        if o<0: continue
        fams.setdefault(suite[j][0],[]).append(found.get((o,j),0))
    tr={}
    for o,j,_ in queries:
        if o<0: continue
        tr.setdefault(j,[]).append(found.get((o,j),0))
    w=sorted(wrong)[-3:]
    print(f"{name:28s} {dt:6.1f}s maxwrong {w} | "+" ".join(f"{f}:{100*np.mean(np.array(v)>=20):.0f}" for f,v in fams.items())+f" | all:{100*np.mean([x>=20 for v in fams.values() for x in v]):.1f}")
    print("   per-transform:", " ".join(f"{j}:{100*np.mean(np.array(v)>=20):.0f}" for j,v in tr.items()))
    sys.stdout.flush()
def settings(variant: str) -> dict[tuple[object, str], object]:
    return settings_for(variant, F, index)


def views_of(img):  # noqa: ANN001, ANN201 - the stage's own two steps, as LocalIndex.match runs them
    return img


def run_match(name: str) -> None:
    """As run(), through LocalIndex.match (the second step's views made only when needed)."""
    run(name, views_of, through_match=True)


for v in sys.argv[4].split(","):
    if v == "whole":
        run("whole", extract_features)
        continue
    if v.startswith("views") or v.startswith("scale"):
        raise SystemExit("views/scale variants were round 2's; use rs/rescan/side/od/fast/r/l/rl/c/ee")
    changes = settings(v)
    saved = {k: getattr(*k) for k in changes}
    for (obj, attr), value in changes.items():
        setattr(obj, attr, value)
    run_match(v)
    for (obj, attr), value in saved.items():
        setattr(obj, attr, value)

"""Local stage (issue 12): recall per hard family, false positives, latency and memory.

What it measures, on one seeded run:

* **References**: ``--refs`` synthetic originals (long side 512, ``hashmatch.testing.synthetic``)
  plus every real photo found offline (scikit-image's data, the PDQ test images, matplotlib's
  sample photo), each hashed exactly (PDQ and pHash, ``fast=False``) and with local features.
* **Positives**: the first ``--positives`` synthetic originals and every real photo, altered by
  each transform of :func:`hashmatch.testing.transforms.hard_suite` (crops, rotations,
  screenshots, collages, memes, frames, combinations). A positive is found when the stage
  reports its own original.
* **Negatives**: ``--negatives`` unrelated synthetic images (another seed), each altered by one
  hard transform, against every reference; plus every positive query against every reference
  that is *not* its original. Every (query, reference) pair counts once; a pair is a false
  positive when the stage reports that reference. The local stage verifies only its
  shortlist; pairs left off the shortlist are non-matches by construction, so the per-pair
  rate is the system's.
* **Global stage**: ``Matcher.from_hashes`` with the default policy (PDQ 31 / pHash 9 and
  pHash's bands, dihedral, border trimming, both gates; an image's two hashes share an external
  id, so PDQ can confirm pHash's bands). **Local stage**: :meth:`hashmatch.local.LocalIndex.match`
  as the Matcher runs it (the whole upload, then its region views when needed).
  **Combined**: local runs when the global stage found nothing (the Matcher's ``"auto"``).
* **Calibration**: originals and negatives with an even index form the calibration split, on
  which the verification rule (minimum inliers, coverage, inlier ratio) is chosen: the most
  permissive rule with no false positive there. Recall and false positives are reported on the
  odd split only.
* **Global policies**: today's global matches re-filtered offline (pHash 9 everywhere, or only
  off the identity orientation of the untrimmed view), recall per family and false pairs.
* **Latency and memory**: the local stage on 1024 × 768 JPEG uploads (decode, ORB, retrieval,
  verification; one thread: numba and OpenCV single-threaded) at ``--latency-refs`` references,
  whose retrieval descriptors are drawn from the real ORB descriptors of the synthetic
  references with 25 % of bits flipped (so copies are ~96 bits apart, as unrelated ORB
  descriptors are), and the global stage on the same uploads as the peer.

Run: ``python benchmarks/bench_local.py`` (pins malloc itself), ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, results_dir, table  # noqa: E402

PERMISSIVE = dict(min_inliers=4, min_coverage=0.0, min_inlier_ratio=0.0)
INLIER_GRID = (6, 8, 10, 12, 14, 16, 20, 25, 30, 40)
COVERAGE_GRID = (0.0, 0.01, 0.02, 0.05, 0.1)
RATIO_GRID = (0.0, 0.1, 0.2, 0.3)
SPREAD_GRID = (0.0, 0.05, 0.1, 0.15)  # round 4: inliers spread across a line (VerificationRule.min_spread)


def real_photos() -> list[tuple[str, Any]]:
    """(name, RGB PIL image) of every real photo available offline; bridge variants of the
    PDQ set (one photo altered) count once. Left out: scikit-image's ``motorcycle_right``
    (the same scene as ``motorcycle_left`` from another viewpoint: finding it is right, so
    it is neither a positive nor a negative), its chessboards and matplotlib's clip art."""
    from PIL import Image

    out: list[tuple[str, Any]] = []
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        for name in ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "color", "grass",
                     "gravel", "horse", "hubble_deep_field", "ihc", "microaneurysms", "moon", "motorcycle_left",
                     "page", "retina", "rocket", "text", "logo", "clock_motion", "phantom"):
            for ext in ("png", "jpg"):
                p = data / f"{name}.{ext}"
                if p.exists():
                    out.append((f"skimage/{name}", Image.open(p).convert("RGB")))
    except ImportError:
        print("scikit-image not installed: fewer real photos", file=sys.stderr)
    pdq = Path("/work/shared/testdata/pdq/images")
    if pdq.is_dir():
        for p in sorted(pdq.rglob("*")):
            rel = p.relative_to(pdq).as_posix()
            # Copies of one photo count once: the bridge variants, its letterboxed copy,
            # c.png (= pen-and-coaster.png, found by this stage) and the EXIF pair.
            dup = ("bridge" in rel and "aaa-orig" not in rel) or any(
                k in rel for k in ("exif-rotn-6", "letterboxed_sample", "misc-images/c.png"))
            if not p.is_file() or dup:
                continue
            try:
                img = Image.open(p).convert("RGB")
            except Exception:  # noqa: BLE001 - a test image Pillow cannot read is skipped
                continue
            if min(img.size) >= 64:
                out.append((f"pdq/{rel}", img))
    try:
        import sklearn

        for p in sorted((Path(sklearn.__file__).parent / "datasets" / "images").glob("*.jpg")):
            out.append((f"sklearn/{p.stem}", Image.open(p).convert("RGB")))
    except ImportError:
        print("scikit-learn not installed: fewer real photos", file=sys.stderr)
    try:
        import matplotlib

        hopper = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if hopper.exists():
            out.append(("matplotlib/grace_hopper", Image.open(hopper).convert("RGB")))
    except ImportError:
        pass
    # Same scale as the synthetic originals: long side 512.
    resized = []
    for name, img in out:
        f = 512 / max(img.size)
        resized.append((name, img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))))))
    return resized


def global_hashes(img: Any) -> list[Any]:
    from hashmatch.hashers import compute_hashes

    res = compute_hashes(img, ["pdq", "phash"], fast=False)
    return [res["pdq"][0], res["phash"][0]]


def rule_pass(rec: np.ndarray, inl: int, cov: float, ratio: float, spread: float = 0.0) -> np.ndarray:
    """Offline re-application of the verification rule to recorded RANSAC outcomes."""
    return rec["ok"] & (rec["inliers"] >= inl) & (rec["coverage"] >= cov) & (rec["ratio"] >= ratio) & (rec["spread"] >= spread)


REC = np.dtype([("query", np.int64), ("entry", np.int64), ("inliers", np.int32), ("coverage", np.float32),
                ("ratio", np.float32), ("spread", np.float32), ("ok", np.bool_)])


def run_queries(queries: list[tuple[int, Any]], matcher: Any, index: Any) -> tuple[dict[int, set[int]], np.ndarray, float, float]:
    """Global matches per query, and every verified local candidate as a record."""
    glob: dict[int, list[tuple[int, str, int, str | None]]] = {}
    recs = []
    t_g = t_l = 0.0
    for qid, img in queries:
        t0 = time.perf_counter()
        glob[qid] = [(m.entry_id, m.algorithm, m.distance, m.orientation) for m in matcher.match(img)]
        t1 = time.perf_counter()
        for m in index.match(img, keep_failed=True):
            v = m.verification
            ok = v.reason in ("verified", "too few inliers", "too few of the correspondences agree",
                              "inliers cover too little of the reference", "inliers lie along a line")
            recs.append((qid, m.entry_id, v.inliers, v.coverage, v.inliers / max(v.tentative, 1), v.spread, ok))
        t2 = time.perf_counter()
        t_g += t1 - t0
        t_l += t2 - t1
    return glob, np.array(recs, dtype=REC), t_g, t_l


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refs", type=int, default=12_500, help="synthetic references (12 500: >= 25M pairs per split)")
    ap.add_argument("--global-refs", type=int, default=2000,
                    help="synthetic references also hashed for the global stage (the rest are local-only distractors: "
                         "exact hashing costs 3x the local features, and the global stage is round 2's)")
    ap.add_argument("--positives", type=int, default=60, help="synthetic originals altered by every hard transform")
    ap.add_argument("--negatives", type=int, default=1200, help="unrelated altered queries")
    ap.add_argument("--latency-refs", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--latency-uploads", type=int, default=100)
    ap.add_argument("--radius", type=int, default=None, help="retrieval radius (default: LocalIndex's)")
    ap.add_argument("--lookups", type=int, default=None, help="upload descriptors looked up (default: LocalIndex's)")
    ap.add_argument("--candidates", type=int, default=None, help="shortlist size (default: LocalIndex's)")
    ap.add_argument("--latency-only", action="store_true", help="only the latency and memory part")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, help="folder for local.{json,md} (default: see --record)")
    add_record_option(ap)
    args = ap.parse_args(argv)
    args.out = args.out or results_dir(args.record)
    if args.quick:
        args.refs, args.positives, args.negatives, args.latency_refs, args.latency_uploads = 60, 4, 20, [2000], 10

    from hashmatch import Matcher
    from hashmatch.local import LocalIndex, VerificationRule, reference_features
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    t_start = time.perf_counter()
    if args.latency_only:
        feats = [reference_features(generate_image(image_seed(args.seed, i), long_side=512)) for i in range(min(args.refs, 2000))]
        refs = [generate_image(image_seed(args.seed, i), long_side=512) for i in range(200)]
        matcher = Matcher.from_hashes([h.hash for img in refs for h in global_hashes(img)])
        latency = measure_latency(args, feats, args.refs, matcher)
        print(json.dumps({"radius": args.radius, "lookups": args.lookups, "latency": latency}, indent=1))
        return 0
    suite = hard_suite(seed=args.seed)
    fam_names = list(dict.fromkeys(f for f, _ in suite))
    label = [s.label if not isinstance(s, tuple) else " + ".join(x.label for x in s) for _, s in suite]

    # -- references ------------------------------------------------------------------------
    t0 = time.perf_counter()
    real = real_photos()
    n_ref = args.refs + len(real)
    names = [f"synthetic/{i}" for i in range(args.refs)] + [n for n, _ in real]
    # Synthetic references are made, hashed and featurised one at a time (tens of
    # thousands of 512 px images do not fit in memory); only those altered into
    # positives are kept.
    originals: dict[int, Any] = {}
    hashes, hash_ids = [], []
    feats = []
    for i in range(n_ref):
        img = generate_image(image_seed(args.seed, i), long_side=512) if i < args.refs else real[i - args.refs][1]
        if i < args.global_refs or i >= args.refs:
            for h in global_hashes(img):
                hashes.append(h.hash)
                hash_ids.append(i)
        feats.append(reference_features(img))
        if i < min(args.positives, args.refs) or i >= args.refs:
            originals[i] = img
        if i % 2000 == 1999:
            print(f"  {i + 1} references, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    t_refs = time.perf_counter() - t0
    t_gen = 0.0  # generation is inside t_refs
    # Two entries per image (PDQ and pHash): ids i and n_ref + i name the same image.
    ids = [i if k % 2 == 0 else n_ref + i for k, i in enumerate(hash_ids)]
    matcher = Matcher.from_hashes(hashes, ids=ids, external_ids=[str(i) for i in hash_ids])  # one id per image
    index = LocalIndex.from_features(feats, rule=VerificationRule(**PERMISSIVE), **_options(args))
    print(f"{n_ref} references ({len(real)} real) in {t_refs:.0f} s; local index {index.nbytes / n_ref:.0f} B/ref",
          file=sys.stderr)

    # -- queries ---------------------------------------------------------------------------
    pos_orig = list(range(min(args.positives, args.refs))) + list(range(args.refs, n_ref))
    queries: list[tuple[int, Any]] = []
    meta = []  # (original or -1, family index, suite index, split)
    for k, o in enumerate(pos_orig):
        for j, (fam, spec) in enumerate(suite):
            queries.append((len(meta), apply_chain(originals[o], spec)))
            meta.append((o, fam_names.index(fam), j, k % 2))
    for k in range(args.negatives):
        img = generate_image(image_seed(args.seed + 1000, k), long_side=512)
        j = k % len(suite)
        queries.append((len(meta), apply_chain(img, suite[j][1])))
        meta.append((-1, fam_names.index(suite[j][0]), j, k % 2))
    meta_a = np.array(meta, dtype=np.int64)
    t0 = time.perf_counter()
    glob_all, recs, t_g, t_l = run_queries(queries, matcher, index)
    # Global policies (step 3 of issue 12), re-applied offline to today's matches: a pHash
    # match at distance 10 is dropped everywhere ("phash 9"), or only when it came through a
    # dihedral or border-trimmed variant ("phash 9 off the identity"). Exact, since a match
    # is reported from its nearest variant and the identity wins ties.
    policies = {"today": lambda a, d, o: True, "phash 9": lambda a, d, o: a != "phash" or d < 10,
                "phash 9 off the identity": lambda a, d, o: a != "phash" or d < 10 or o is None}
    glob_by = {k: {q: {e for e, a, d, o in ms if keep(a, d, o)} for q, ms in glob_all.items()} for k, keep in policies.items()}
    glob = glob_by["today"]
    t_query = time.perf_counter() - t0
    print(f"{len(queries)} queries in {t_query:.0f} s", file=sys.stderr)
    del queries

    orig_of = meta_a[:, 0]
    split = meta_a[:, 3]
    is_pos = orig_of >= 0
    n_q = len(meta)
    # Global: found when an entry of the original matched; false positive per other reference.
    g_found = np.array([(o >= 0 and (o in glob[q] or n_ref + o in glob[q])) for q, o in enumerate(orig_of)])
    g_false = np.array([len({e % n_ref for e in glob[q]} - {orig_of[q]}) for q in range(n_q)])

    def local_outcome(inl: int, cov: float, ratio: float, spread: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        ok = rule_pass(recs, inl, cov, ratio, spread)
        hit = recs[ok]
        found = np.zeros(n_q, bool)
        true = hit["entry"] == orig_of[hit["query"]]
        found[hit["query"][true]] = True
        false = np.bincount(hit["query"][~true], minlength=n_q)
        return found, false

    # Pairs: every query against every reference but its own original.
    n_glob = min(args.global_refs, args.refs) + len(real)  # references the global stage holds
    pairs = {s: int(((split == s) * (n_ref - is_pos)).sum()) for s in (0, 1)}
    pairs_global = {s: int(((split == s) * (n_glob - is_pos)).sum()) for s in (0, 1)}

    # -- calibration on split 0 --------------------------------------------------------------
    grid = []
    for inl in INLIER_GRID:
        for cov in COVERAGE_GRID:
            for ratio in RATIO_GRID:
                for spread in SPREAD_GRID:
                    found, false = local_outcome(inl, cov, ratio, spread)
                    sel = split == 0
                    grid.append({"min_inliers": inl, "min_coverage": cov, "min_inlier_ratio": ratio, "min_spread": spread,
                                 "false_pairs": int(false[sel].sum()),
                                 "recall": float(found[sel & is_pos].mean()) if (sel & is_pos).any() else 0.0})
    # Margin: the chosen minimum is at least twice the most inliers any wrong reference
    # reached on the calibration split with the rule's other checks (coverage, inlier
    # ratio) passing, and no false pair there. Round 3: the floor is per (coverage, ratio);
    # round 2 took it over every wrong candidate whatever its coverage, which let one text
    # line shared by two images (coverage 0.01) push the rule to 72 inliers.
    cal_wrong = recs[(split[recs["query"]] == 0) & (recs["entry"] != orig_of[recs["query"]]) & recs["ok"]]

    def floor_for(cov: float, ratio: float, spread: float) -> int:
        w = cal_wrong[rule_pass(cal_wrong, 0, cov, ratio, spread)]
        return 2 * int(w["inliers"].max()) if w.size else 0

    for g in grid:
        g["inlier_floor"] = floor_for(g["min_coverage"], g["min_inlier_ratio"], g["min_spread"])
    clean = [g for g in grid if g["false_pairs"] == 0 and g["min_inliers"] >= g["inlier_floor"]]
    chosen = max(clean, key=lambda g: (g["recall"], g["min_inliers"], g["min_coverage"], g["min_inlier_ratio"], g["min_spread"])) if clean else max(grid, key=lambda g: g["min_inliers"])
    found_l, false_l = local_outcome(chosen["min_inliers"], chosen["min_coverage"], chosen["min_inlier_ratio"], chosen["min_spread"])
    only_local = np.array([not glob[q] for q in range(n_q)])
    found_c = g_found | (only_local & found_l)
    false_c = g_false + np.where(only_local, false_l, 0)

    # -- report on split 1 ---------------------------------------------------------------------
    rep = split == 1
    rows, per_family = [], {}
    fam_of = meta_a[:, 1]
    for f, fam in enumerate(fam_names):
        sel = rep & is_pos & (fam_of == f)
        r = {k: float(v[sel].mean()) for k, v in (("global", g_found), ("local", found_l), ("combined", found_c))}
        r["queries"] = int(sel.sum())
        per_family[fam] = r
        rows.append([fam, r["queries"], f"{100 * r['global']:.1f}", f"{100 * r['local']:.1f}", f"{100 * r['combined']:.1f}"])
    sel = rep & is_pos
    overall = {k: float(v[sel].mean()) for k, v in (("global", g_found), ("local", found_l), ("combined", found_c))}
    rows.append(["all", int(sel.sum()), *(f"{100 * overall[k]:.1f}" for k in ("global", "local", "combined"))])
    real_sel = rep & is_pos & (orig_of >= args.refs)
    real_recall = {k: float(v[real_sel].mean()) if real_sel.any() else None for k, v in (("global", g_found), ("local", found_l), ("combined", found_c))}
    per_transform = {label[j]: {k: float(v[rep & is_pos & (meta_a[:, 2] == j)].mean()) for k, v in (("global", g_found), ("local", found_l), ("combined", found_c))}
                     for j in range(len(suite))}
    missed = rep & is_pos & ~found_c
    misses_by_original = dict(sorted(((names[o], int(c)) for o, c in zip(*np.unique(orig_of[missed], return_counts=True))),
                                     key=lambda kv: -kv[1])[:20])
    fp = {}
    for name, false in (("global", g_false), ("local", false_l), ("combined", false_c)):
        for s, tag in ((0, "calibration"), (1, "report")):
            count = int(false[split == s].sum())
            n = pairs_global[s] if name == "global" else pairs[s]
            fp[f"{name}/{tag}"] = {"false_pairs": count, "pairs": n, "rate": count / max(n, 1),
                                   "upper95": (3.0 if count == 0 else count + 1.96 * count**0.5 + 2) / max(n, 1)}
    bad = recs[rule_pass(recs, chosen["min_inliers"], chosen["min_coverage"], chosen["min_inlier_ratio"], chosen["min_spread"])
               & (recs["entry"] != orig_of[recs["query"]])]
    false_list = [{"query": (names[orig_of[r["query"]]] if orig_of[r["query"]] >= 0 else "negative") + " / " + label[meta_a[r["query"], 2]],
                   "reference": names[r["entry"]], "inliers": int(r["inliers"]), "coverage": float(r["coverage"]),
                   "spread": float(r["spread"]), "split": int(split[r["query"]])} for r in bad[:40]]
    g_bad = [{"query": (names[orig_of[q]] if orig_of[q] >= 0 else "negative") + " / " + label[meta_a[q, 2]],
              "references": sorted(names[e % n_ref] for e in glob[q] if e % n_ref != orig_of[q]), "split": int(split[q])}
             for q in range(n_q) if g_false[q]][:40]
    near = wrong_sorted = recs[(recs["entry"] != orig_of[recs["query"]]) & (recs["inliers"] >= 10)]
    near = [{"query": (names[orig_of[r["query"]]] if orig_of[r["query"]] >= 0 else "negative") + " / " + label[meta_a[r["query"], 2]],
             "reference": names[r["entry"]], "inliers": int(r["inliers"]), "coverage": float(r["coverage"]),
             "ratio": float(r["ratio"]), "spread": float(r["spread"]), "split": int(split[r["query"]])}
            for r in np.sort(wrong_sorted, order="inliers")[::-1][:20]]
    # How close unrelated candidates came: the most inliers any wrong reference got.
    wrong = recs[recs["entry"] != orig_of[recs["query"]]]
    true_recs = recs[recs["entry"] == orig_of[recs["query"]]]
    margin = {"max_inliers_wrong": int(wrong["inliers"].max()) if wrong.size else 0,
              "wrong_inliers_p999": float(np.percentile(wrong["inliers"], 99.9)) if wrong.size else 0,
              "true_inliers_median": float(np.median(true_recs["inliers"])) if true_recs.size else 0}

    global_policies = {}
    for k, gq in glob_by.items():
        found = np.array([(o >= 0 and (o in gq[q] or n_ref + o in gq[q])) for q, o in enumerate(orig_of)])
        false = np.array([len({e % n_ref for e in gq[q]} - {orig_of[q]}) for q in range(n_q)])
        # With the local stage behind it (it runs when this policy found nothing).
        with_local = found | (np.array([not gq[q] for q in range(n_q)]) & found_l)
        false_with_local = false + np.where([not gq[q] for q in range(n_q)], false_l, 0)
        global_policies[k] = {"false_pairs": {"calibration": int(false[split == 0].sum()), "report": int(false[split == 1].sum())},
                              "recall_by_family": {fam: float(found[rep & is_pos & (fam_of == f)].mean()) for f, fam in enumerate(fam_names)},
                              "recall": float(found[rep & is_pos].mean()),
                              "combined_false_pairs": {"calibration": int(false_with_local[split == 0].sum()),
                                                       "report": int(false_with_local[split == 1].sum())},
                              "combined_recall_by_family": {fam: float(with_local[rep & is_pos & (fam_of == f)].mean()) for f, fam in enumerate(fam_names)},
                              "combined_recall": float(with_local[rep & is_pos].mean())}
    latency = measure_latency(args, feats[: args.refs], n_ref, matcher)
    total = time.perf_counter() - t_start
    payload = {
        "benchmark": "local",
        "machine": machine(),
        "settings": {"seed": args.seed, "references": n_ref, "global_references": n_glob, "real_photos": [n for n, _ in real],
                     "positives_per_transform": len(pos_orig), "negatives": args.negatives,
                     "transforms": label, "families": fam_names, "queries": n_q,
                     "permissive_rule": PERMISSIVE, "candidates": index.candidates, "radius": index.radius},
        "timings_s": {"generate": t_gen, "references": t_refs, "queries": t_query, "global_stage": t_g,
                      "local_stage": t_l, "total": total},
        "chosen_rule": chosen,
        "calibration_grid": grid,
        "recall_by_family": per_family,
        "recall_overall": overall,
        "recall_real_photos": real_recall,
        "recall_by_transform": per_transform,
        "misses_by_original": misses_by_original,
        "false_positives": fp,
        "margin": margin,
        "false_pairs_local": false_list,
        "near_misses_local": near,
        "false_pairs_global": g_bad,
        "global_policies": global_policies,
        "latency": latency,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "local.json").write_text(json.dumps(payload, default=str, indent=1) + "\n")
    md = markdown(payload, rows)
    (args.out / "local.md").write_text(md)
    print(md)
    return 0


def _options(args: argparse.Namespace) -> dict[str, int]:
    return {k: v for k, v in (("radius", args.radius), ("query_lookups", args.lookups), ("candidates", args.candidates))
            if v is not None}


def synthetic_retrieval(pool: np.ndarray, refs: int, per_ref: int, rng: np.random.Generator) -> np.ndarray:
    """``refs × per_ref`` descriptors: real ORB descriptors with 25 % of bits flipped."""
    rows = pool[rng.integers(0, pool.shape[0], refs * per_ref)]
    bits = np.unpackbits(rows, axis=1)
    bits ^= (rng.random(bits.shape) < 0.25).astype(np.uint8)
    return np.packbits(bits, axis=1)


def latency_uploads(rng: np.random.Generator, n: int, seed: int, *, altered: bool = True) -> list[bytes]:
    """The latency part's uploads: 1024 × 768 JPEGs, every other one an altered image
    (verification work) when ``altered``, the rest unrelated."""
    from hashmatch.testing.synthetic import generate_image
    from hashmatch.testing.transforms import apply_chain, hard_suite

    suite = hard_suite(seed=seed)
    uploads = []
    for k in range(n):
        if k % 2 and altered:
            src = generate_image(int(rng.integers(0, 2**31)), long_side=512)
            img = apply_chain(src, suite[k % len(suite)][1]).resize((1024, 768))
        else:
            img = generate_image(int(rng.integers(0, 2**31)), size=(1024, 768))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        uploads.append(buf.getvalue())
    return uploads


def measure_latency(args: argparse.Namespace, feats: list[Any], n_ref: int, matcher: Any) -> dict[str, Any]:
    """p50/p95 of the local stage per 1024 × 768 JPEG upload, one thread, at each size."""
    import numba

    from hashmatch.local import RETRIEVAL_FEATURES, LocalIndex, extract_features

    numba.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    pool = np.concatenate([f.descriptors for f in feats])
    uploads = latency_uploads(rng, args.latency_uploads, args.seed, altered=bool(feats))
    out: dict[str, Any] = {"uploads": len(uploads), "threads": 1,
                           "clock": "wall = time.perf_counter; cpu = time.thread_time (this thread only)"}
    # The global stage on the same uploads, for a ratio measured in the same run.
    g_wall, g_cpu = [], []
    for data in uploads:
        t0, c0 = time.perf_counter(), time.thread_time()
        matcher.match(data)
        g_cpu.append(time.thread_time() - c0)
        g_wall.append(time.perf_counter() - t0)
    out["global_stage_ms"] = _percentiles(g_wall, g_cpu)
    for size in args.latency_refs:
        retrieval = synthetic_retrieval(pool, size, RETRIEVAL_FEATURES, rng)
        owners = np.repeat(np.arange(size, dtype=np.int64), RETRIEVAL_FEATURES)
        by_id = {i: feats[i % len(feats)] for i in range(min(size, len(feats)))}

        def source(wanted: Any, by_id: dict[int, Any] = by_id) -> dict[int, Any]:
            return {i: by_id.get(i, feats[i % len(feats)]) for i in wanted}

        t0 = time.perf_counter()
        index = LocalIndex(retrieval, owners, source, **_options(args))
        build = time.perf_counter() - t0
        index.match(uploads[0])
        wall, cpu, t_extract, t_short = [], [], [], []
        for data in uploads:
            t0, c0 = time.perf_counter(), time.thread_time()
            index.match(data)  # the whole stage: both steps, region views when needed
            c1 = time.thread_time()
            wall.append(time.perf_counter() - t0)
            cpu.append(c1 - c0)
            q = extract_features(data)  # its parts, on the whole upload (the first step), CPU time
            c2 = time.thread_time()
            index.shortlist(q)
            c3 = time.thread_time()
            t_extract.append(c2 - c1)
            t_short.append(c3 - c2)
        glob = out["global_stage_ms"]
        r = {"build_s": build, "bytes_per_reference": index.nbytes / size, **_percentiles(wall, cpu),
             "decode_and_orb_cpu_p95_ms": 1e3 * float(np.percentile(t_extract, 95)),
             "retrieval_cpu_p95_ms": 1e3 * float(np.percentile(t_short, 95))}
        r["ratio_wall_p95_to_global"] = r["wall_p95"] / max(glob["wall_p95"], 1e-9)
        r["ratio_cpu_p95_to_global"] = r["cpu_p95"] / max(glob["cpu_p95"], 1e-9)
        out[str(size)] = r
        print(f"latency at {size} refs: p95 wall {r['wall_p95']:.1f} ms, cpu {r['cpu_p95']:.1f} ms", file=sys.stderr)
        del index, retrieval
    return out


def _percentiles(wall: list[float], cpu: list[float]) -> dict[str, float]:
    return {f"{clock}_p{q}": 1e3 * float(np.percentile(v, q)) for clock, v in (("wall", wall), ("cpu", cpu)) for q in (50, 95)}


def markdown(p: dict[str, Any], rows: list[list[Any]]) -> str:
    st, fp, lat, rule = p["settings"], p["false_positives"], p["latency"], p["chosen_rule"]
    m = p["machine"]
    lines = [
        "# Local stage (issue 12): recall per hard family, false positives, latency, memory",
        "",
        f"References: {st['references']} ({len(st['real_photos'])} real photos, the rest synthetic, long side 512). "
        f"Positives: {st['positives_per_transform']} originals × {len(st['transforms'])} transforms; negatives: "
        f"{st['negatives']} unrelated altered images. Rule chosen on the calibration split (even originals): "
        f"min_inliers {rule['min_inliers']}, min_coverage {rule['min_coverage']}, min_inlier_ratio {rule['min_inlier_ratio']}, "
        f"min_spread {rule.get('min_spread', 0.0)} "
        f"({rule['false_pairs']} false pairs there). Shortlist {st['candidates']} candidates, radius {st['radius']}. "
        f"Everything below is on the report split (odd originals).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, load average at start {m['load_average_at_start']}; total {p['timings_s']['total']:.0f} s.",
        "",
        "## Recall (%) per family",
        "",
        table(rows, ["family", "queries", "global (today)", "local", "combined"]),
        "",
        f"Real photos only (report split): global {100 * (p['recall_real_photos']['global'] or 0):.1f} %, "
        f"local {100 * (p['recall_real_photos']['local'] or 0):.1f} %, combined {100 * (p['recall_real_photos']['combined'] or 0):.1f} %.",
        "",
        "## False positives (pairs of a query and a reference that is not its original)",
        "",
        table([[k, v["false_pairs"], f"{v['pairs']:,}", f"{v['rate']:.2g}", f"{v['upper95']:.2g}"] for k, v in fp.items()],
              ["stage/split", "false pairs", "pairs", "rate", "95% upper"]),
        "",
        f"Margin: most inliers any wrong reference reached {p['margin']['max_inliers_wrong']} "
        f"(99.9th percentile {p['margin']['wrong_inliers_p999']:.0f}); median inliers of a true match {p['margin']['true_inliers_median']:.0f}.",
        "",
        "Queries missed (combined, report split) per original, most first: "
        + (", ".join(f"{k} {v}" for k, v in p["misses_by_original"].items()) or "none") + f" (of {len(st['transforms'])} transforms each).",
        "",
        "## Recall (%) per transform (report split)",
        "",
        table([[k, f"{100 * v['global']:.0f}", f"{100 * v['local']:.0f}", f"{100 * v['combined']:.0f}"] for k, v in p["recall_by_transform"].items()],
              ["transform", "global", "local", "combined"]),
        "",
        "## Global policies (false pairs per split; recall % per family, report split)",
        "",
        table([[k, v["false_pairs"]["calibration"], v["false_pairs"]["report"], f"{100 * v['recall']:.1f}",
                *(f"{100 * x:.1f}" for x in v["recall_by_family"].values())] for k, v in p["global_policies"].items()],
              ["policy", "false (cal.)", "false (report)", "all", *next(iter(p["global_policies"].values()))["recall_by_family"]]),
        "",
        "With the local stage behind each policy (combined):",
        "",
        table([[k, v["combined_false_pairs"]["calibration"], v["combined_false_pairs"]["report"], f"{100 * v['combined_recall']:.1f}",
                *(f"{100 * x:.1f}" for x in v["combined_recall_by_family"].values())] for k, v in p["global_policies"].items()],
              ["policy", "false (cal.)", "false (report)", "all", *next(iter(p["global_policies"].values()))["recall_by_family"]]),
        "",
        "## Latency of the local stage per 1024 × 768 JPEG upload (one thread)",
        "",
        "Global stage on the same uploads: p50/p95 wall {wall_p50:.1f}/{wall_p95:.1f} ms, thread CPU {cpu_p50:.1f}/{cpu_p95:.1f} ms.".format(**lat["global_stage_ms"]),
        "",
        table([[k, f"{v['wall_p50']:.1f}", f"{v['wall_p95']:.1f}", f"{v['cpu_p50']:.1f}", f"{v['cpu_p95']:.1f}",
                f"{v['decode_and_orb_cpu_p95_ms']:.1f}", f"{v['retrieval_cpu_p95_ms']:.1f}",
                f"{v['ratio_wall_p95_to_global']:.2f}", f"{v['ratio_cpu_p95_to_global']:.2f}", f"{v['bytes_per_reference']:.0f}", f"{v['build_s']:.1f}"]
               for k, v in lat.items() if isinstance(v, dict) and "build_s" in v],
              ["references", "wall p50 ms", "wall p95 ms", "CPU p50 ms", "CPU p95 ms", "whole-upload decode+ORB CPU p95", "whole-upload retrieval CPU p95",
               "wall p95 / global wall p95", "CPU p95 / global CPU p95", "memory B/ref", "build s"]),
        "",
        "## False pairs (first 40)",
        "",
        "Local: " + ("; ".join(f"{f['query']} -> {f['reference']} ({f['inliers']} inliers, coverage {f['coverage']:.3f}, spread {f['spread']:.3f}, split {f['split']})" for f in p["false_pairs_local"]) or "none"),
        "",
        "Near misses (wrong references with >= 10 inliers): " + ("; ".join(f"{f['query']} -> {f['reference']} ({f['inliers']} inliers, ratio {f['ratio']:.2f}, coverage {f['coverage']:.3f}, spread {f['spread']:.3f}, split {f['split']})" for f in p["near_misses_local"]) or "none"),
        "",
        "Global: " + ("; ".join(f"{f['query']} -> {', '.join(f['references'])} (split {f['split']})" for f in p["false_pairs_global"]) or "none"),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

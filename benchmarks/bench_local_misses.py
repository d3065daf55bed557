"""Why the local stage misses (issue 12, round 4): every missed positive of one split, dumped.

For each positive query of ``--split`` (1 = bench_local's report split: odd originals) that
:meth:`LocalIndex.match` does not find under the default rule, one JSON line with:
keypoints found on the upload (whole view), regions proposed, the true reference's rank and
votes in a deep shortlist (``--deep`` candidates) of the first step (whole upload) and of both
steps (every view), what the stage's own verification said about it (inliers, tentative,
coverage, reason), and an *oracle* verification (the true reference verified against every
view whatever retrieval said: would verification pass if retrieval had found it?).
A cause per miss, counted per transform: ``few keypoints`` (< 50 on the upload),
``not retrieved`` (not on the 8-long shortlist, verification would pass), ``retrieval and
verification`` (neither), ``verification: <reason>`` (shortlisted, refused).

Run: ``python benchmarks/bench_local_misses.py --refs 2000`` (2 000 synthetic + the real
photos as references; bench_local uses 12 500: the misses are the same kind, round 3 found
no shortlist crowding by distractors). Output: ``benchmarks/scratch/local-misses.jsonl`` and a
summary on stdout.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_malloc, results_dir  # noqa: E402
from bench_local import real_photos  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refs", type=int, default=2000)
    ap.add_argument("--positives", type=int, default=60)
    ap.add_argument("--split", type=int, default=1)
    ap.add_argument("--deep", type=int, default=200, help="shortlist length for the rank diagnostics")
    ap.add_argument("--only", default="", help="comma list of transform indexes (default: all)")
    ap.add_argument("--real-only", action="store_true")
    args = ap.parse_args(argv)

    from hashmatch.local import DEFAULT_RULE, LocalIndex, reference_features, verify
    from hashmatch.local import _features as F
    from hashmatch.local._regions import propose_regions
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    suite = hard_suite(seed=args.seed)
    label = [s.label if not isinstance(s, tuple) else " + ".join(x.label for x in s) for _, s in suite]
    only = [int(x) for x in args.only.split(",") if x] or list(range(len(suite)))
    real = real_photos()
    names = [f"synthetic/{i}" for i in range(args.refs)] + [n for n, _ in real]
    feats, originals = [], {}
    for i in range(len(names)):
        img = generate_image(image_seed(args.seed, i), long_side=512) if i < args.refs else real[i - args.refs][1]
        feats.append(reference_features(img))
        if i < args.positives or i >= args.refs:
            originals[i] = img
    index = LocalIndex.from_features(feats)
    pos = [o for o in list(range(min(args.positives, args.refs))) + list(range(args.refs, len(names)))]
    pos = [o for k, o in enumerate(pos) if k % 2 == args.split and (o >= args.refs or not args.real_only)]
    out = results_dir(False) / "local-misses.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    causes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals = collections.Counter()
    with out.open("w") as fh:
        for j in only:
            for o in pos:
                img = apply_chain(originals[o], suite[j][1])
                totals[label[j]] += 1
                found = [m for m in index.match(img) if m.entry_id == o]
                if found:
                    continue
                whole, grey, factor = F._whole_view(img, F.DEFAULT_LIMITS, F.QUERY_FEATURES)
                regions = propose_regions(np.asarray(grey), F.REGION_LIMIT)
                views = [whole, *F.region_views(grey, factor, whole)]
                saved = index.candidates
                index.candidates = args.deep
                step1 = index._shortlist([whole], [(0, index.query_lookups)])
                both = index._shortlist(views, [(0, index.query_lookups)] + [(0, index.region_lookups)] * (len(views) - 1))
                index.candidates = saved

                def rank(short: list[tuple[int, float, list[int]]]) -> tuple[int | None, float]:
                    for r, (e, s, _) in enumerate(short):
                        if e == o:
                            return r, s
                    return None, 0.0

                r1, s1 = rank(step1)
                r2, s2 = rank(both)
                own = [m for m in index.match(img, keep_failed=True) if m.entry_id == o]
                oracle = max((verify(feats[o], v, DEFAULT_RULE) for v in views), key=lambda v: (v.passed, v.inliers))
                v = own[0].verification if own else None
                if len(whole) < 50:
                    cause = "few keypoints"
                elif v is None:
                    cause = "not retrieved" if oracle.passed else "retrieval and verification"
                else:
                    cause = f"verification: {v.reason}"
                causes[label[j]][cause] += 1
                fh.write(json.dumps({
                    "original": names[o], "transform": label[j], "cause": cause, "keypoints": len(whole),
                    "regions": len(regions), "views": len(views), "rank_step1": r1, "votes_step1": round(s1, 2),
                    "rank_both": r2, "votes_both": round(s2, 2),
                    "stage": None if v is None else {"reason": v.reason, "inliers": v.inliers, "tentative": v.tentative,
                                                     "coverage": round(v.coverage, 4), "scale": round(v.scale, 3),
                                                     "rotation": round(v.rotation, 1)},
                    "oracle": {"passed": oracle.passed, "reason": oracle.reason, "inliers": oracle.inliers,
                               "tentative": oracle.tentative, "coverage": round(oracle.coverage, 4)},
                }) + "\n")
                fh.flush()
    missed = sum(sum(c.values()) for c in causes.values())
    print(f"{missed} misses of {sum(totals.values())} queries (split {args.split}, {len(names)} references); {out}")
    allc = collections.Counter()
    for t, c in causes.items():
        allc.update(c)
        print(f"{t}: {sum(c.values())}/{totals[t]} missed: " + ", ".join(f"{k} {n}" for k, n in c.most_common()))
    print("all: " + ", ".join(f"{k} {n}" for k, n in allc.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

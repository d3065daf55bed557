"""Digest of the local stage's features and verdicts, to show that two source trees agree bit for bit.

References are ``--refs`` synthetic images; queries are the first ``--originals`` of them altered
by every transform of the hard suite. Printed: SHA-256 of every reference's and every query
view's keypoints and descriptors, SHA-256 of every candidate's outcome under
:meth:`LocalIndex.match_features` (``keep_failed=True``: entry, score, verdict, reason,
correspondences, inliers, coverage, spread, matrix), and counts. Run it with each tree first
on ``PYTHONPATH`` and compare the lines (issue 12, round 6: ``git archive main src`` against
the branch).

Run: ``PYTHONPATH=src python benchmarks/local_identity.py``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=int, default=150)
    ap.add_argument("--originals", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from hashmatch.local import LocalIndex, extract_views, reference_features
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    images = [generate_image(image_seed(args.seed, i), long_side=512) for i in range(args.refs)]
    feats = [reference_features(im) for im in images]
    index = LocalIndex.from_features(feats)
    digest = hashlib.sha256()
    for f in feats:
        digest.update(f.descriptors.tobytes())
        digest.update(f.xy.tobytes())
    outcomes = []
    for o in range(min(args.originals, args.refs)):
        for j, (_, spec) in enumerate(hard_suite(seed=args.seed)):
            views = extract_views(apply_chain(images[o], spec))
            for v in views:
                digest.update(v.descriptors.tobytes())
                digest.update(v.xy.tobytes())
            found = index.match_features(views, keep_failed=True)
            outcomes.append([o, j, [[m.entry_id, m.score, m.verification.passed, m.verification.reason,
                                     m.verification.tentative, m.inliers, m.verification.coverage,
                                     m.verification.spread, m.verification.matrix] for m in found]])
    hits = sum(any(m[0] == o and m[2] for m in found) for o, _, found in outcomes)
    print(json.dumps({"features_sha256": digest.hexdigest(),
                      "outcomes_sha256": hashlib.sha256(json.dumps(outcomes).encode()).hexdigest(),
                      "queries": len(outcomes), "found": hits,
                      "candidates_verified": sum(len(found) for _, _, found in outcomes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

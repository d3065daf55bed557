"""Near-featureless originals in the local stage (issue 12, round 5): how often the
low-texture retry fires, and what each FAST threshold would find.

Two parts:

* ``--sweep``: for each named real photo (default ``skimage/color``), the reference and
  every hard transform of it are detected at each FAST threshold of ``--thresholds``
  (both sides alike, grey, ORB as the stage runs it) and the whole upload is verified
  against the reference under the default rule: inliers per transform and how many
  verify. An *oracle* (no retrieval, no region views): what detection alone allows.
* always: how many detections retried at the low threshold on the latency benchmark's
  uploads (bench_local.measure_latency's 100, whole view and region/rescaled views),
  on ``--refs`` synthetic references and on the real photos.

Run: ``python benchmarks/bench_local_lowtexture.py --sweep`` (about a minute).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pin_malloc  # noqa: E402
from bench_local import latency_uploads, real_photos  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refs", type=int, default=2000)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--originals", default="skimage/color")
    ap.add_argument("--thresholds", default="7,3,2,1")
    args = ap.parse_args(argv)

    from hashmatch.local import DEFAULT_RULE, LocalFeatures, verify
    from hashmatch.local import _features as F
    from hashmatch.local import _lowtexture
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    suite = hard_suite(seed=0)
    real = dict(real_photos())
    if args.sweep:
        for name in args.originals.split(","):
            for fast in (int(t) for t in args.thresholds.split(",")):
                def feats(img, long_side: int, upscale: bool, n: int, fast: int = fast) -> LocalFeatures:
                    grey = img.convert("L")
                    w, h = grey.size
                    s = F._scale_to(w, h, long_side, upscale=upscale)
                    if abs(s - 1) > 1e-9:
                        grey = grey.resize((max(1, round(w * s)), max(1, round(h * s))))
                    xy, level, _, desc = F._orb(F._stretched(np.asarray(grey)), n, F.REFERENCE_PYRAMID, fast)
                    return LocalFeatures(xy, level, desc, w, h, s)

                ref = feats(real[name], F.REFERENCE_LONG_SIDE, True, F.REFERENCE_FEATURES)
                inl = [verify(ref, feats(apply_chain(real[name], chain), F.QUERY_LONG_SIDE, False, F.QUERY_FEATURES),
                              DEFAULT_RULE) for _, chain in suite]
                print(f"{name} FAST {fast}: reference keypoints {len(ref)}, verified {sum(v.passed for v in inl)} "
                      f"of {len(inl)}; inliers per transform {[v.inliers for v in inl]}")

    calls: collections.Counter[str] = collections.Counter()
    retry = _lowtexture.retry_threshold

    def counting(found: int, fast: int, levels: int) -> int | None:
        lower = retry(found, fast, levels)
        calls["detections"] += 1
        calls["retries"] += lower is not None
        return lower

    F.retry_threshold = counting  # type: ignore[assignment]
    retried = 0
    for data in latency_uploads(100, np.random.default_rng(0), 0):  # bench_local.measure_latency's
        before = calls["retries"]
        whole, grey, factor = F._whole_view(data, F.DEFAULT_LIMITS, F.QUERY_FEATURES)
        F.region_views(grey, factor, whole)
        retried += calls["retries"] > before
    print(f"latency uploads: {calls['retries']} of {calls['detections']} detections retried, in {retried} of 100 uploads")

    def ref_retried(img) -> bool:  # the reference's own detection (not its stability copies)
        before = calls["retries"]
        F._scaled_features(img.convert("L"), 1, F.REFERENCE_LONG_SIDE, True, F.REFERENCE_FEATURES)
        return calls["retries"] > before

    synth = sum(ref_retried(generate_image(image_seed(0, i), long_side=512)) for i in range(args.refs))
    print(f"synthetic references: {synth} of {args.refs} retried")
    names = [n for n, img in real.items() if ref_retried(img)]
    print(f"real photos: {len(names)} of {len(real)} retried: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

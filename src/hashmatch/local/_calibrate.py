"""Calibrating the local stage's rule on the user's own unrelated images.

Every image of a folder of distinct, unrelated images is a reference, and every image is
matched against all the others (both steps of :meth:`LocalIndex.match`, whatever the
first found). The rule's margin is the one ``benchmarks/bench_local.py`` calibrates with:
the minimum inliers is at least **twice** the most inliers any wrong reference reached
(with every other check of the rule passing), and never below the default rule's. At
that minimum no pair of the folder matches, so the 95 % upper bound of the
false-positive rate is the rule of three over the pairs compared.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CalibrationError, HashmatchError
from ._features import reference_features
from ._index import LocalIndex
from ._opencv import opencv
from ._verify import DEFAULT_RULE, VerificationRule

__all__ = ["LocalCalibration", "calibrate_local"]


@dataclass(frozen=True)
class LocalCalibration:
    """The recommended rule for the local stage and the figures behind it."""

    images: int
    skipped: int
    pairs: int
    target_fpr: float
    max_wrong_inliers: int
    rule: VerificationRule

    @property
    def supported(self) -> bool:
        """Whether the pairs can show a rate as low as the target (rule of three)."""
        return self.pairs >= math.ceil(3 / self.target_fpr)

    @property
    def upper_fpr(self) -> float:
        return 3.0 / max(self.pairs, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": "local", "images": self.images, "skipped": self.skipped, "pairs": self.pairs,
            "target_fpr": self.target_fpr, "supported": self.supported,
            "max_wrong_inliers": self.max_wrong_inliers, "false_positives_at_rule": 0,
            "upper_fpr_95": self.upper_fpr, "rule": dataclasses.asdict(self.rule),
        }

    def summary(self) -> str:
        lines = [
            f"local stage (ORB): images {self.images} (skipped {self.skipped} unreadable), pairs compared {self.pairs:,}",
            f"most inliers any unrelated image reached: {self.max_wrong_inliers}",
            f"recommended rule: min_inliers {self.rule.min_inliers} (twice that, at least the default "
            f"{DEFAULT_RULE.min_inliers}), min_inlier_ratio {self.rule.min_inlier_ratio}: 0 false-positive pairs, "
            f"95% upper bound {self.upper_fpr:.3g} (target {self.target_fpr:g})",
        ]
        if not self.supported:
            lines.append(f"TOO FEW PAIRS for a rate of {self.target_fpr:g}: need at least {math.ceil(3 / self.target_fpr):,}")
        return "\n".join(lines)


def calibrate_local(paths: list[Path], target_fpr: float) -> LocalCalibration:
    """Match every image of ``paths`` against all the others (see the module docstring)."""
    opencv()  # a missing extra is said once, not taken for unreadable images
    feats, kept = [], []
    for p in paths:
        try:
            feats.append(reference_features(p))
            kept.append(p)
        except HashmatchError:
            continue
    if len(kept) < 2:
        raise CalibrationError(f"need at least two readable images, found {len(kept)}")
    # Every other check as the default rule has it; the inlier count is what is calibrated.
    probe = dataclasses.replace(DEFAULT_RULE, min_inliers=3)
    # Every image also finds itself, which an unrelated upload does not: the regions are
    # always searched, and the second chance always runs (a gate nothing passes).
    never = dataclasses.replace(DEFAULT_RULE, min_inliers=2**31)
    index = LocalIndex.from_features(feats, rule=probe, early_exit=100_000, gate=never)
    most = 0
    for i, p in enumerate(kept):
        for m in index.match(p):
            if m.entry_id != i:
                most = max(most, m.inliers)
    rule = dataclasses.replace(DEFAULT_RULE, min_inliers=max(DEFAULT_RULE.min_inliers, 2 * most))
    n = len(kept)
    return LocalCalibration(n, len(paths) - n, n * (n - 1), target_fpr, most, rule)

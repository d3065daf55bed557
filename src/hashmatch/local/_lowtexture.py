"""Near-featureless images: detection again at a lower FAST threshold when too few corners.

A smooth picture (a colour wheel, a soft gradient, a hazy sky) gives FAST almost no
corners at the ordinary thresholds (7 for references, 12 for uploads): issue 12's colour
wheel yielded 1 reference keypoint and none on any crop or rotation of it, so the local
stage could never find it. Its grey copy still has structure, only shallow: luminance
ridges where hues meet, the rim against the background, quantisation steps of the
gradients, which FAST finds at threshold :data:`LOW_TEXTURE_FAST` and ORB's Harris
ranking then orders. Measured in notes/issue-12.md (round 5).

The trigger is a measured condition, the same on both sides: any detection (a
reference, an upload, a region or rescaled view of one, an altered copy made to rank a
reference's features) that found fewer than :data:`LOW_TEXTURE_PER_LEVEL` keypoints per
pyramid level (64 for the usual 8 levels; 24 for an upload's rescaled copies, which have 3)
is run again at the low threshold, and the retry replaces the detection only when it found
more keypoints. A textured image never reaches this path (its detection is unchanged bit for
bit), and FAST's candidates at a lower threshold include those at the higher one. A retry
costs one more ORB pass, 3-11 ms CPU on a large view (FAST 1 makes nearly every pixel of a
smooth view a candidate); a count not scaled by the levels had a textured upload's 3-level
rescaled copies (40-50 keypoints) retry for ~20 ms (notes/issue-12.md, round 5).
"""

from __future__ import annotations

__all__ = ["LOW_TEXTURE_FAST", "LOW_TEXTURE_PER_LEVEL", "retry_threshold"]

LOW_TEXTURE_PER_LEVEL = 8  # keypoints per pyramid level: fewer than this and the detection is run again ...
LOW_TEXTURE_FAST = 1  # ... at this FAST threshold (2 and 3 found half and a tenth of the colour wheel's inliers)


def retry_threshold(found: int, fast: int, levels: int) -> int | None:
    """The FAST threshold to detect again with when a detection at ``fast`` over ``levels``
    pyramid levels found ``found`` keypoints, or ``None`` when it found enough (or was
    already that low)."""
    if found >= LOW_TEXTURE_PER_LEVEL * levels or fast <= LOW_TEXTURE_FAST:
        return None
    return LOW_TEXTURE_FAST

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
reference's features) that found fewer than :data:`LOW_TEXTURE_BELOW` keypoints is run
again at the low threshold and the richer result is kept. FAST's corners at a lower
threshold include those at the higher one, so a textured image never reaches this path,
and an image that does loses nothing it had. Uploads that trigger it are the rare
near-featureless ones, so the per-upload cost at p95 does not move.
"""

from __future__ import annotations

__all__ = ["LOW_TEXTURE_BELOW", "LOW_TEXTURE_FAST", "retry_threshold"]

LOW_TEXTURE_BELOW = 64  # keypoints: fewer than this and the detection is run again ...
LOW_TEXTURE_FAST = 1  # ... at this FAST threshold (2 and 3 found half and a tenth of the colour wheel's inliers)


def retry_threshold(found: int, fast: int) -> int | None:
    """The FAST threshold to detect again with when a detection at ``fast`` found
    ``found`` keypoints, or ``None`` when it found enough (or was already that low)."""
    if found >= LOW_TEXTURE_BELOW or fast <= LOW_TEXTURE_FAST:
        return None
    return LOW_TEXTURE_FAST

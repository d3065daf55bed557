"""Geometric verification: is a reference really in an upload, and where?

Tentative correspondences come from descriptor matching (each reference feature's
nearest upload feature, kept when it is clearly nearer than the second nearest: Lowe's
ratio test), then RANSAC fits a similarity (scale, rotation, translation: what
crops, resizes, small rotations, screenshots, collages and frames do) and the fit
must pass every check of the :class:`VerificationRule`: enough inliers, a sane
scale and rotation, and inliers spread over a real part of the reference (a few
points bunched on one corner or one line of text prove nothing). Thresholds are
calibrated by ``benchmarks/bench_local.py`` on a split apart from the one reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._jit import kernels
from ..errors import UsageError
from ._features import LocalFeatures
from ._opencv import opencv

__all__ = ["DEFAULT_RULE", "Verification", "VerificationRule", "verify"]

_kernels = kernels("hashmatch.local._kernels")


@dataclass(frozen=True, slots=True)
class VerificationRule:
    """What a RANSAC fit must show before a reference counts as matched.

    ``min_inliers``: correspondences consistent with the fitted similarity.
    ``min_coverage``: area of the inliers' convex hull over the reference's area.
    ``min_inlier_ratio``: inliers over tentative correspondences.
    ``min_spread``: the inliers' width in their narrowest direction over the
    reference's short side (a line of rendered text two images share is long and thin:
    coverage in one direction only).
    ``min_scale``/``max_scale``: size of the reference in the upload relative to the
    two images' working copies; ``max_rotation``: degrees either way.
    ``ratio``: Lowe's ratio test; ``max_distance``: largest descriptor distance kept
    (of 256 bits); ``reprojection``: RANSAC inlier tolerance in pixels of the upload's
    working copy.
    """

    # Calibrated by benchmarks/bench_local.py (notes/issue-12.md, round 4: 12 540
    # references): at least twice the most inliers any unrelated reference reached on the
    # calibration split with the coverage, ratio and spread checks passing, no false pair
    # there. The coverage and spread checks turn away a line of text or a glyph cluster two
    # images share (coverage below 0.013, spread below 0.12 of the reference).
    min_inliers: int = 20
    min_coverage: float = 0.02
    min_inlier_ratio: float = 0.3
    min_spread: float = 0.05
    min_scale: float = 0.15
    max_scale: float = 8.0
    max_rotation: float = 20.0
    ratio: float = 0.85
    max_distance: int = 80
    reprojection: float = 4.0

    def __post_init__(self) -> None:
        if isinstance(self.min_inliers, bool) or not isinstance(self.min_inliers, int) or self.min_inliers < 3:
            raise UsageError(f"min_inliers must be an integer of at least 3, got {self.min_inliers!r}")
        for name in ("min_coverage", "min_inlier_ratio", "min_spread"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} must be between 0 and 1, got {value!r}")
        if not 0 < self.min_scale < self.max_scale:
            raise UsageError("need 0 < min_scale < max_scale")
        if not 0 <= self.max_rotation <= 180 or not 0 < self.ratio <= 1 or not 0 < self.reprojection:
            raise UsageError("max_rotation must be 0-180, ratio in (0, 1], reprojection > 0")
        if not 0 <= self.max_distance <= 256:
            raise UsageError(f"max_distance must be 0-256, got {self.max_distance!r}")


DEFAULT_RULE = VerificationRule()


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of verifying one reference against one upload.

    ``matrix`` maps reference pixels to upload pixels (2 × 3, both in the images'
    own sizes). ``crop_box`` is the part of the reference the upload shows, in
    reference pixels ``(left, top, right, bottom)``. ``scale`` is upload pixels per
    reference pixel; ``rotation`` is in degrees, counter-clockwise as seen.
    ``passed`` says whether every check of the rule held; ``reason`` names the first
    that failed.
    """

    passed: bool
    reason: str
    tentative: int
    inliers: int
    coverage: float
    scale: float
    rotation: float
    crop_box: tuple[float, float, float, float] | None
    matrix: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    median_distance: int
    spread: float = 0.0  # the inliers' width in their narrowest direction / the reference's short side


def _failed(reason: str, tentative: int = 0, inliers: int = 0) -> Verification:
    return Verification(False, reason, tentative, inliers, 0.0, 0.0, 0.0, None, None, 256)


def correspondences(
    reference: LocalFeatures, query: LocalFeatures, rule: VerificationRule
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.int32]]:
    """(reference rows, query rows, distances) of matches passing the ratio test."""
    if len(reference) == 0 or len(query) < 2:
        z = np.zeros(0, np.intp)
        return z, z, np.zeros(0, np.int32)
    # The two nearest upload features of each reference feature, as OpenCV's brute-force
    # knnMatch(k=2) finds them (ties included: tests/test_local_verify_kernels.py), in one
    # vectorised kernel (OpenCV's knnMatch took ~4 ms for 256 x 1 000 descriptors here,
    # issue 12, round 6).
    best, d1, d2 = _kernels.two_nearest(_words(reference.descriptors), np.ascontiguousarray(_words(query.descriptors).T))
    ok = (d1 <= rule.max_distance) & (d1 < rule.ratio * d2)  # float64, as Python compared the floats
    r = np.flatnonzero(ok).astype(np.intp)
    q = best[ok].astype(np.intp)
    d = d1[ok].astype(np.int32)
    # One reference feature per upload feature: keep the nearest (many-to-one matches
    # come from repeated texture and would inflate the inlier count).
    order = np.lexsort((d, q))
    first = np.r_[True, q[order][1:] != q[order][:-1]] if q.size else np.zeros(0, bool)
    keep = order[first]
    return r[keep], q[keep], d[keep]


def _words(descriptors: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """``(n, 32)`` descriptor bytes as ``(n, 4)`` uint64 words in native order (distances
    only: any fixed byte order gives the same ones)."""
    return np.ascontiguousarray(descriptors, dtype=np.uint8).view(np.uint64)


def hull_area(points: npt.NDArray[np.float32]) -> float:
    """Area of the convex hull of 2-D points (0 for fewer than three)."""
    if points.shape[0] < 3:
        return 0.0
    cv2 = opencv()
    hull = cv2.convexHull(np.ascontiguousarray(points, dtype=np.float32))
    return float(cv2.contourArea(hull))


def thin_side(points: npt.NDArray[np.float32]) -> float:
    """Width of 2-D points in their narrowest direction (0 for fewer than three): the
    narrowest strip holding them is bounded by a line through an edge of their hull."""
    if points.shape[0] < 3:
        return 0.0
    hull = opencv().convexHull(np.ascontiguousarray(points, dtype=np.float32)).reshape(-1, 2).astype(np.float64)
    if hull.shape[0] < 3:
        return 0.0
    edge = np.roll(hull, -1, axis=0) - hull
    length = np.hypot(edge[:, 0], edge[:, 1])
    ok = length > 0
    normal = np.c_[-edge[ok, 1], edge[ok, 0]] / length[ok, None]
    # Every hull point's distance from each edge's line; the widest per edge, the narrowest edge.
    return float(np.abs((hull[None, :, :] - hull[ok][:, None, :]) @ normal[:, :, None]).squeeze(-1).max(axis=1).min())


def verify(reference: LocalFeatures, query: LocalFeatures, rule: VerificationRule = DEFAULT_RULE) -> Verification:
    """Fit a similarity from ``reference`` to ``query`` and check it against ``rule``."""
    r, q, d = correspondences(reference, query, rule)
    n = int(r.size)
    if n < max(rule.min_inliers, 3):
        return _failed("too few correspondences", n)
    cv2 = opencv()
    src = np.ascontiguousarray(reference.xy[r], dtype=np.float32)
    dst = np.ascontiguousarray(query.xy[q], dtype=np.float32)
    # Fixed RNG state: one upload gets one verdict, every time.
    cv2.setRNGSeed(12345)
    matrix, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=rule.reprojection, maxIters=2000,
        confidence=0.995, refineIters=10,
    )
    if matrix is None or mask is None:
        return _failed("no consistent transform", n)
    inl = mask.ravel().astype(bool)
    count = int(inl.sum())
    a, b = float(matrix[0, 0]), float(matrix[1, 0])
    s_work = math.hypot(a, b)
    angle = math.degrees(math.atan2(b, a))
    ref_w, ref_h = reference.scaled_size
    coverage = hull_area(src[inl]) / float(ref_w * ref_h)
    # Measured only for a fit with enough inliers to pass (about 0.1 ms: unrelated
    # uploads, most of the stage's candidates, skip it).
    spread = thin_side(src[inl]) / float(min(ref_w, ref_h)) if count >= rule.min_inliers else 0.0
    ratio = count / n
    reason = ""
    if count < rule.min_inliers:
        reason = "too few inliers"
    elif not rule.min_scale <= s_work <= rule.max_scale:
        reason = "implausible scale"
    elif abs(angle) > rule.max_rotation:
        reason = "implausible rotation"
    elif coverage < rule.min_coverage:
        reason = "inliers cover too little of the reference"
    elif ratio < rule.min_inlier_ratio:
        reason = "too few of the correspondences agree"
    elif spread < rule.min_spread:
        reason = "inliers lie along a line"
    own = _in_own_pixels(matrix, reference.scale, query.scale)
    box = _crop_box(own, reference.width, reference.height, query.width, query.height)
    # Image y points down: a counter-clockwise turn as seen is a negative angle here.
    return Verification(
        not reason, reason or "verified", n, count, coverage,
        s_work * query.scale ** -1 * reference.scale, -angle, box,
        (tuple(float(v) for v in own[0]), tuple(float(v) for v in own[1])),  # type: ignore[arg-type]
        int(np.median(d[inl])) if count else 256, spread,
    )


def _in_own_pixels(matrix: npt.NDArray[np.float64], ref_scale: float, query_scale: float) -> npt.NDArray[np.float64]:
    """The fit between working copies, as a map between the images' own pixels."""
    m = np.asarray(matrix, dtype=np.float64).copy()
    m[:, :2] *= ref_scale / query_scale
    m[:, 2] /= query_scale
    return m


def _crop_box(m: npt.NDArray[np.float64], ref_w: int, ref_h: int, q_w: int, q_h: int) -> tuple[float, float, float, float] | None:
    """The reference region visible in the upload: the upload's frame mapped back,
    bounded by the reference."""
    lin = m[:, :2]
    det = float(np.linalg.det(lin))
    if abs(det) < 1e-12:
        return None
    inv = np.linalg.inv(lin)
    corners = np.array([[0, 0], [q_w, 0], [q_w, q_h], [0, q_h]], dtype=np.float64)
    back = (corners - m[:, 2]) @ inv.T
    left, top = np.clip(back.min(axis=0), 0, [ref_w, ref_h])
    right, bottom = np.clip(back.max(axis=0), 0, [ref_w, ref_h])
    if right <= left or bottom <= top:
        return None
    return (round(float(left), 1), round(float(top), 1), round(float(right), 1), round(float(bottom), 1))

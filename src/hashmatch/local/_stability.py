"""Which reference features survive a re-upload: the retrieval rows are chosen by it.

Only :data:`~._features.RETRIEVAL_FEATURES` rows of a reference are indexed, and an
upload finds the reference only when one of its descriptors lands within the retrieval
radius of one of them. Round 4 of issue 12 found that most missed copies (rotations,
enlarged crops, JPEG 50) had none of their reference's rows within the radius (their
nearest were 17-25 bits away) while several of its other stored features were, and
verification would have passed. So a reference is altered here the way uploads are
(:data:`DISTORTIONS`: small rotations, an enlargement with JPEG, a halved-and-restored
copy with JPEG), each copy
is detected as an upload is, and a feature scores by how often a keypoint detected near
its mapped position carries a descriptor within :data:`CLOSE` bits of its own. Measured
in notes/issue-12.md (round 4): rotations and compound copies gain, crops and
screenshots lose a little, and unrelated images sharing glyphs come closer (the rule
was recalibrated).

A one-time cost when a reference is added (three warps and ORB passes of a 512-pixel
image); nothing changes for uploads, the stored format or memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ._opencv import opencv

__all__ = ["CLOSE", "DISTORTIONS", "stability"]

# (degrees counter-clockwise, scale, JPEG quality or 0, via): what the failing copies do.
DISTORTIONS: tuple[tuple[float, float, int, float], ...] = ((7.0, 1.0, 0, 1.0), (-4.0, 1.35, 75, 1.0), (3.0, 1.0, 60, 0.5))
# The last field: the copy is first shrunk to this fraction and enlarged back (a
# screenshot's or a collage's picture, which the region views bring back to scale).
CONSENSUS = True
CLOSE = 12  # bits: a survivor is this near, a margin inside the retrieval radius (16)
_FAR = 64  # distance counted when no keypoint was detected near the mapped position
_NEAR_PX = 3.0  # position tolerance at pyramid level 0, in pixels of the altered copy (x 1.2 per level)

Detect = Callable[[npt.NDArray[np.uint8]], tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]]


def stability(
    grey: npt.NDArray[np.uint8], xy: npt.NDArray[np.float32], level: npt.NDArray[np.uint8],
    descriptors: npt.NDArray[np.uint8], response: npt.NDArray[np.float32], detect: Detect,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """A ranking key per feature (higher is better: how many altered copies it survived,
    then how near its descriptor stayed, then its detector response) and, when
    :data:`CONSENSUS`, its descriptor replaced by the bitwise majority of itself and its
    survivors (a centre the next altered copy is nearer to than to any one sample)."""
    n = xy.shape[0]
    if n == 0:
        return np.zeros(0, np.float64), descriptors
    hits = np.zeros(n, np.float64)
    dist = np.zeros(n, np.float64)
    own = np.unpackbits(descriptors, axis=1).astype(np.int32)
    votes, voters = 2 * own, np.full((n, 1), 2, np.int32)  # the original counts twice: ties keep its bit
    for degrees, scale, quality, via in DISTORTIONS:
        d, nearest = _survival(_shrunk(grey, via), xy, level, descriptors, degrees, scale, quality, detect)
        hits += d <= CLOSE
        dist += d
        same = (d <= 2 * CLOSE)[:, None]
        votes += np.where(same, np.unpackbits(nearest, axis=1), 0)
        voters += same
    rank = np.argsort(np.argsort(response, kind="stable"), kind="stable") / max(n, 1)  # in [0, 1)
    strength = hits * 1e4 + (_FAR * len(DISTORTIONS) - dist) + rank
    if not CONSENSUS:
        return strength, descriptors
    return strength, np.ascontiguousarray(np.packbits(2 * votes > voters, axis=1))


def _shrunk(grey: npt.NDArray[np.uint8], via: float) -> npt.NDArray[np.uint8]:
    """``grey`` shrunk to ``via`` of its size and enlarged back (itself when ``via`` is 1)."""
    if via >= 1.0:
        return grey
    cv2 = opencv()
    h, w = grey.shape
    small = cv2.resize(grey, (max(1, round(w * via)), max(1, round(h * via))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _survival(
    grey: npt.NDArray[np.uint8], xy: npt.NDArray[np.float32], level: npt.NDArray[np.uint8],
    descriptors: npt.NDArray[np.uint8], degrees: float, scale: float, quality: int, detect: Detect,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    """Per feature: the smallest descriptor distance among keypoints detected near its
    position in the altered copy (:data:`_FAR` when there is none), and that descriptor
    (its own when there is none)."""
    cv2 = opencv()
    h, w = grey.shape
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, scale)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    out_w, out_h = max(1, int(round(h * sin + w * cos))), max(1, int(round(h * cos + w * sin)))
    m[0, 2] += out_w / 2.0 - w / 2.0
    m[1, 2] += out_h / 2.0 - h / 2.0
    altered = cv2.warpAffine(np.ascontiguousarray(grey), m, (out_w, out_h), flags=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    if quality:
        ok, buf = cv2.imencode(".jpg", altered, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if ok:
            altered = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    found_xy, found_desc = detect(altered)
    best = np.full(xy.shape[0], float(_FAR))
    nearest = np.array(descriptors, dtype=np.uint8, copy=True)
    if found_xy.shape[0] == 0:
        return best, nearest
    mapped = xy.astype(np.float64) @ m[:, :2].T + m[:, 2]
    # A keypoint of pyramid level k is located to about 1.2^k pixels.
    tolerance = _NEAR_PX * max(scale, 1.0) * 1.2 ** level.astype(np.float64)
    near = np.hypot(mapped[:, None, 0] - found_xy[None, :, 0], mapped[:, None, 1] - found_xy[None, :, 1]) <= tolerance[:, None]
    i, j = np.nonzero(near)
    if i.size:
        a = np.ascontiguousarray(descriptors).view(np.uint64)  # (n, 4) words
        b = np.ascontiguousarray(found_desc).view(np.uint64)
        d = np.bitwise_count(a[i] ^ b[j]).sum(axis=1).astype(np.float64)
        order = np.lexsort((d, i))  # per feature, nearest first
        first = order[np.r_[True, i[order][1:] != i[order][:-1]]]
        best[i[first]] = np.minimum(d[first], _FAR)
        nearest[i[first]] = found_desc[j[first]]
    return best, nearest

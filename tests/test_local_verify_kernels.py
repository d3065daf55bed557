"""Verification's descriptor matching against OpenCV's brute-force matcher (its naive twin)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.local import DEFAULT_RULE, LocalFeatures, VerificationRule
from hashmatch.local._kernels import two_nearest
from hashmatch.local._opencv import opencv
from hashmatch.local._verify import _words, correspondences


def _features(desc: np.ndarray, rng: np.random.Generator) -> LocalFeatures:
    n = desc.shape[0]
    return LocalFeatures(rng.random((n, 2), dtype=np.float32) * 500, np.zeros(n, np.uint8), desc, 512, 512, 1.0)


def _opencv_correspondences(reference: LocalFeatures, query: LocalFeatures, rule: VerificationRule):
    """The code before round 6: OpenCV's knnMatch and a loop over its pairs."""
    if len(reference) == 0 or len(query) < 2:
        z = np.zeros(0, np.intp)
        return z, z, np.zeros(0, np.int32)
    cv2 = opencv()
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(reference.descriptors, query.descriptors, k=2)
    ref_rows, query_rows, dist = [], [], []
    for pair in pairs:
        if len(pair) < 2:
            continue
        best, second = pair
        if best.distance <= rule.max_distance and best.distance < rule.ratio * second.distance:
            ref_rows.append(best.queryIdx)
            query_rows.append(best.trainIdx)
            dist.append(best.distance)
    r, q, d = np.asarray(ref_rows, np.intp), np.asarray(query_rows, np.intp), np.asarray(dist, np.int32)
    order = np.lexsort((d, q))
    first = np.r_[True, q[order][1:] != q[order][:-1]] if q.size else np.zeros(0, bool)
    keep = order[first]
    return r[keep], q[keep], d[keep]


def _descriptors(rng: np.random.Generator, n: int, pool: int, flips: int) -> np.ndarray:
    """``n`` descriptors drawn from a small pool with a few bits flipped: many ties and
    near ties, as repeated texture gives."""
    base = rng.integers(0, 256, (pool, 32), dtype=np.uint8)[rng.integers(0, pool, n)]
    bits = np.unpackbits(base, axis=1)
    for row in range(n):
        bits[row, rng.integers(0, 256, flips)] ^= 1
    return np.packbits(bits, axis=1)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), m=st.integers(2, 80), pool=st.integers(1, 12), flips=st.integers(0, 40),
       seed=st.integers(0, 2**32 - 1))
def test_two_nearest_equals_opencv_knn_match(n: int, m: int, pool: int, flips: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref, query = _descriptors(rng, n, pool, flips), _descriptors(rng, m, pool, flips)
    best, d1, d2 = two_nearest(_words(ref), np.ascontiguousarray(_words(query).T))
    cv2 = opencv()
    for i, (a, b) in enumerate(cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(ref, query, k=2)):
        assert (best[i], d1[i], d2[i]) == (a.trainIdx, int(a.distance), int(b.distance))


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 80), m=st.integers(0, 120), pool=st.integers(1, 30), flips=st.integers(0, 60),
       ratio=st.sampled_from([0.5, 0.8, 0.85, 1.0]), max_distance=st.sampled_from([0, 30, 80, 256]),
       seed=st.integers(0, 2**32 - 1))
def test_correspondences_equal_opencv_matchers(n: int, m: int, pool: int, flips: int, ratio: float,
                                               max_distance: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref, query = _features(_descriptors(rng, n, pool, flips), rng), _features(_descriptors(rng, m, pool, flips), rng)
    rule = VerificationRule(ratio=ratio, max_distance=max_distance)
    got, want = correspondences(ref, query, rule), _opencv_correspondences(ref, query, rule)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("flips", [0, 256])
def test_two_nearest_at_distance_zero_and_full_length(flips: int) -> None:
    ref = np.zeros((3, 32), np.uint8)
    query = np.full((4, 32), 255 if flips else 0, np.uint8)
    best, d1, d2 = two_nearest(_words(ref), np.ascontiguousarray(_words(query).T))
    assert best.tolist() == [0, 0, 0] and d1.tolist() == [flips] * 3 and d2.tolist() == [flips] * 3


def test_correspondences_on_real_features_equal_opencv_matchers(rng: np.random.Generator) -> None:
    from hashmatch.local import extract_features, reference_features
    from hashmatch.testing.synthetic import generate_image
    from hashmatch.testing.transforms import crop

    image = generate_image(3, long_side=512)
    ref, upload = reference_features(image), extract_features(crop(image, fraction=0.2))
    got, want = correspondences(ref, upload, DEFAULT_RULE), _opencv_correspondences(ref, upload, DEFAULT_RULE)
    assert want[0].size > 20 and all(np.array_equal(a, b) for a, b in zip(got, want))

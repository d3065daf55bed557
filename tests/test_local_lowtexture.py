"""Near-featureless images in the local stage (issue 12, round 5): detection again at a
lower FAST threshold when a detection finds too few keypoints (local/_lowtexture.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hashmatch.local import LocalIndex, extract_features, reference_features, verify
from hashmatch.local import _features as F
from hashmatch.local._lowtexture import LOW_TEXTURE_FAST, LOW_TEXTURE_PER_LEVEL, retry_threshold

LOW_TEXTURE_BELOW = LOW_TEXTURE_PER_LEVEL * F.REFERENCE_PYRAMID[1]  # at the references' (and uploads') 8 levels
from hashmatch.testing.synthetic import generate_image
from hashmatch.testing.transforms import crop, rotate


def colour_wheel(size: int = 384) -> Image.Image:
    """Hue by angle, saturation rising and value falling with the radius: white at the
    centre, black rim (like scikit-image's ``color``): smooth everywhere, no corners."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    c = (size - 1) / 2
    dx, dy = (x - c) / c, (y - c) / c
    r = np.hypot(dx, dy)
    h6 = (np.arctan2(dy, dx) / (2 * np.pi)) % 1.0 * 6
    sector = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    s, v = np.clip(2 * r, 0, 1), np.clip(1.6 * (1 - r), 0, 1)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = np.select([sector[..., None] == k for k in range(6)],
                    [np.stack(z, -1) for z in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8))


def _ordinary(grey: np.ndarray, fast: int = F._FAST_THRESHOLD) -> int:
    return int(F._orb(F._stretched(grey), 256, F.REFERENCE_PYRAMID, fast)[3].shape[0])


def test_retry_threshold() -> None:
    assert retry_threshold(LOW_TEXTURE_BELOW, 12, 8) is None
    assert retry_threshold(LOW_TEXTURE_BELOW - 1, 12, 8) == LOW_TEXTURE_FAST
    assert retry_threshold(0, 7, 8) == LOW_TEXTURE_FAST
    assert retry_threshold(0, LOW_TEXTURE_FAST, 8) is None  # already as low as it goes
    # A 3-level rescaled copy of a textured upload (40-50 corners) does not retry.
    assert retry_threshold(3 * LOW_TEXTURE_PER_LEVEL, 12, 3) is None
    assert retry_threshold(3 * LOW_TEXTURE_PER_LEVEL - 1, 12, 3) == LOW_TEXTURE_FAST


def test_colour_wheel_gets_keypoints_where_ordinary_detection_finds_few() -> None:
    grey = np.asarray(colour_wheel().convert("L"))
    assert _ordinary(grey) < LOW_TEXTURE_BELOW  # the condition this path exists for
    assert len(reference_features(colour_wheel())) >= 2 * LOW_TEXTURE_BELOW


def test_colour_wheel_crop_and_rotation_are_found_among_textured_references() -> None:
    wheel = colour_wheel()
    refs = [reference_features(generate_image(seed, long_side=384)) for seed in range(12)]
    index = LocalIndex.from_features([*refs, reference_features(wheel)])
    for altered in (crop(wheel, fraction=0.2), rotate(wheel, degrees=5), crop(wheel, fraction=0.1, x=0, y=0)):
        found = index.match(altered)
        assert [m.entry_id for m in found] == [len(refs)]


def test_unrelated_smooth_images_do_not_verify() -> None:
    # Both near-featureless, both on the low-threshold path: their quantisation-step
    # corners must not line up geometrically.
    wheel = reference_features(colour_wheel())
    y, x = np.mgrid[0:300, 0:400].astype(np.float64)
    blob = np.exp(-((x - 120) ** 2 + (y - 200) ** 2) / 9000.0)[..., None] * [200, 120, 60] + 30
    other = Image.fromarray(np.round(blob).astype(np.uint8))
    assert _ordinary(np.asarray(other.convert("L"))) < LOW_TEXTURE_BELOW
    result = verify(wheel, extract_features(other))
    assert not result.passed


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 80), st.sampled_from([4, 8, 16, 64]))
def test_detection_never_loses_what_the_ordinary_threshold_found(seed: int, amplitude: int, cells: int) -> None:
    """Textured images are untouched (bit for bit); smooth ones only gain keypoints."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((cells, cells)) * amplitude + (255 - amplitude) / 2
    grey = np.asarray(Image.fromarray(coarse.astype(np.float32), "F").resize((160, 160), Image.Resampling.BICUBIC))
    grey = np.clip(grey, 0, 255).astype(np.uint8)
    ordinary = F._orb(F._stretched(grey), 256, F.REFERENCE_PYRAMID, F._FAST_THRESHOLD)
    got = F._detect(grey, 256, F.REFERENCE_PYRAMID)
    assert got[3].shape[0] >= ordinary[3].shape[0]
    if ordinary[3].shape[0] >= LOW_TEXTURE_BELOW:
        for a, b in zip(got, ordinary):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("fast", [F._FAST_THRESHOLD, F.QUERY_FAST_THRESHOLD])
def test_textured_reference_and_upload_detection_unchanged(fast: int) -> None:
    grey = np.asarray(generate_image(3, long_side=512).convert("L"))
    assert _ordinary(grey, fast) >= LOW_TEXTURE_BELOW
    assert np.array_equal(F._detect(grey, 256, F.REFERENCE_PYRAMID, fast)[3],
                          F._orb(F._stretched(grey), 256, F.REFERENCE_PYRAMID, fast)[3])

"""The local stage's resize against Pillow's, byte for byte (its naive twin)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hashmatch.errors import UsageError
from hashmatch.local._resize import resize

FILTERS = [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC]


def pillow(grey: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(grey).resize(size, resample))


@pytest.mark.parametrize("resample", FILTERS)
@pytest.mark.parametrize("scale", [0.3, 0.5, 0.7, 0.8, 1.0, 1.25, 2.4])
def test_resize_matches_pillow_on_uploads_at_view_scales(rng: np.random.Generator, resample: Image.Resampling, scale: float) -> None:
    # Smooth content with edges and noise, as the region views see it.
    y, x = np.mgrid[0:300, 0:400]
    grey = np.clip(128 + 100 * np.sin(x / 17.0) * np.cos(y / 11.0) + rng.normal(0, 20, (300, 400)), 0, 255).astype(np.uint8)
    grey[50:120, 200:260] = 255
    size = (max(1, round(400 * scale)), max(1, round(300 * scale)))
    assert np.array_equal(resize(grey, size, resample), pillow(grey, size, resample))


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 70), w=st.integers(1, 70), out_h=st.integers(1, 140), out_w=st.integers(1, 140),
       bicubic=st.booleans(), seed=st.integers(0, 2**32 - 1), extreme=st.booleans())
def test_resize_matches_pillow_on_random_images_and_sizes(h: int, w: int, out_h: int, out_w: int, bicubic: bool,
                                                          seed: int, extreme: bool) -> None:
    gen = np.random.default_rng(seed)
    # extreme: only 0 and 255, where bicubic's overshoot must clip both ways.
    grey = (gen.integers(0, 2, (h, w)) * 255 if extreme else gen.integers(0, 256, (h, w))).astype(np.uint8)
    resample = FILTERS[bicubic]
    assert np.array_equal(resize(grey, (out_w, out_h), resample), pillow(grey, (out_w, out_h), resample))


def test_resize_of_a_crop_matches_pillows_crop_then_resize(rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    crop = Image.fromarray(grey).crop((37, 21, 251, 180))
    for resample in FILTERS:
        got = resize(grey[21:180, 37:251], (512, 380), resample)
        assert np.array_equal(got, np.asarray(crop.resize((512, 380), resample)))


def test_resize_rejects_other_filters_and_empty_sizes() -> None:
    grey = np.zeros((4, 4), np.uint8)
    with pytest.raises(UsageError):
        resize(grey, (2, 2), Image.Resampling.LANCZOS)
    with pytest.raises(UsageError):
        resize(grey, (0, 2), Image.Resampling.BILINEAR)
    with pytest.raises(UsageError):
        resize(np.zeros((0, 4), np.uint8), (2, 2), Image.Resampling.BILINEAR)


def _pillow_resize(grey: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(grey)).resize(size, resample))


@pytest.mark.parametrize("make", ["collage", "desktop", "crop", "large"])
def test_upload_views_equal_those_made_with_pillows_resize(monkeypatch: pytest.MonkeyPatch, make: str) -> None:
    # End to end: every view of an upload (regions, rescaled copies, a scaled-down upload)
    # has the same keypoints and descriptors as with Pillow's resize (the code before round 6).
    from hashmatch.local import _features, extract_views
    from hashmatch.testing.synthetic import generate_image
    from hashmatch.testing.transforms import collage, crop, desktop_screenshot

    base = generate_image(5, long_side=512)
    upload = {"collage": lambda: collage(base, layout="2x2", cell=1),
              "desktop": lambda: desktop_screenshot(base, scale=0.5),
              "crop": lambda: crop(base, fraction=0.2).resize((1024, 768)),
              "large": lambda: generate_image(6, size=(1700, 1100))}[make]()
    fast = extract_views(upload)
    monkeypatch.setattr(_features, "resize", _pillow_resize)
    slow = extract_views(upload)
    assert len(fast) == len(slow) >= 2
    for a, b in zip(fast, slow):
        assert np.array_equal(a.xy, b.xy) and np.array_equal(a.descriptors, b.descriptors) and np.array_equal(a.level, b.level)
        assert (a.width, a.height, a.scale) == (b.width, b.height, b.scale)


def test_reference_features_equal_those_made_with_pillows_resize(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small reference is enlarged to the references' scale (bicubic), a large one reduced.
    from hashmatch.local import _features, reference_features
    from hashmatch.testing.synthetic import generate_image

    images = [generate_image(7, size=(300, 200)), generate_image(8, size=(900, 700))]
    fast = [reference_features(im) for im in images]
    monkeypatch.setattr(_features, "resize", _pillow_resize)
    for im, a in zip(images, fast):
        b = reference_features(im)
        assert np.array_equal(a.xy, b.xy) and np.array_equal(a.descriptors, b.descriptors)

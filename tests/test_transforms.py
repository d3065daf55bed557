"""Transforms: determinism, geometry, records, parameter checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hashmatch import hash_image
from hashmatch.testing.synthetic import generate_image
from hashmatch.testing.transforms import (
    FAMILIES,
    TRANSFORMS,
    TransformSpec,
    apply_transform,
    make_variants,
    sample_specs,
    standard_suite,
    trim_borders,
)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return generate_image(3, size=(160, 120))


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def test_standard_suite_covers_every_family_and_is_unique() -> None:
    suite = standard_suite()
    assert {spec.family for spec in suite} == set(FAMILIES)
    assert len({spec.label for spec in suite}) == len(suite)


def test_standard_suite_is_reproducible_and_seed_changes_random_ones(image) -> None:
    a, b, c = standard_suite(seed=1), standard_suite(seed=1), standard_suite(seed=2)
    assert a == b and a != c
    for spec_a, spec_b in zip(a, b):
        assert np.array_equal(_pixels(spec_a.apply(image)), _pixels(spec_b.apply(image)))


def test_every_transform_returns_rgb_and_leaves_input_untouched(image) -> None:
    before = _pixels(image).copy()
    for spec in standard_suite():
        out = spec.apply(image)
        assert out.mode == "RGB" and out.width > 0 and out.height > 0
    assert np.array_equal(_pixels(image), before)


def test_turn_and_mirror_are_exact(image) -> None:
    arr = _pixels(image)
    assert np.array_equal(_pixels(apply_transform(image, "turn", quarter_turns=1)), np.rot90(arr, 1))
    assert np.array_equal(_pixels(apply_transform(image, "turn", quarter_turns=4)), arr)
    assert np.array_equal(_pixels(apply_transform(image, "mirror", axis="horizontal")), arr[:, ::-1])
    assert np.array_equal(_pixels(apply_transform(image, "mirror", axis="vertical")), arr[::-1])


def test_crop_keeps_the_requested_window(image) -> None:
    arr = _pixels(image)
    out = _pixels(apply_transform(image, "crop", fraction=0.25, x=0.0, y=1.0))
    assert out.shape[:2] == (90, 120)
    assert np.array_equal(out, arr[30:, :120])


def test_pad_and_letterbox_sizes(image) -> None:
    assert apply_transform(image, "pad", fraction=0.1).size == (192, 144)
    boxed = apply_transform(image, "letterbox", ratio=16 / 9, colour=(255, 255, 255))
    assert boxed.size == (213, 120)
    assert (_pixels(boxed)[:, :20] == 255).all()  # the bars are the colour asked for


def test_resize_and_aspect_sizes(image) -> None:
    assert apply_transform(image, "resize", scale=0.5).size == (80, 60)
    assert apply_transform(image, "aspect", x=1.5, y=0.5).size == (240, 60)


def test_jpeg_low_quality_changes_pixels_but_not_phash_much(image) -> None:
    out = apply_transform(image, "jpeg", quality=10)
    assert not np.array_equal(_pixels(out), _pixels(image))
    assert hash_image(out, "phash") - hash_image(image, "phash") <= 8


def test_noise_depends_on_seed_only(image) -> None:
    a = apply_transform(image, "noise", sigma=10.0, seed=1)
    b = apply_transform(image, "noise", sigma=10.0, seed=1)
    c = apply_transform(image, "noise", sigma=10.0, seed=2)
    assert np.array_equal(_pixels(a), _pixels(b)) and not np.array_equal(_pixels(a), _pixels(c))


def test_screenshot_contains_the_image_unscaled(image) -> None:
    shot = _pixels(apply_transform(image, "screenshot", fill=0.6, seed=5))
    arr = _pixels(image)
    h, w = arr.shape[:2]
    found = any(
        np.array_equal(shot[y : y + h, x : x + w], arr)
        for y in range(shot.shape[0] - h + 1)
        for x in range(shot.shape[1] - w + 1)
        if np.array_equal(shot[y, x], arr[0, 0])
    )
    assert found


def test_make_variants_records_original_transform_and_params(image) -> None:
    specs = [TransformSpec.of("crop", fraction=0.1, x=0), TransformSpec.of("grayscale")]
    variants = list(make_variants(image, "img-7", specs))
    assert [v.record() for v in variants] == [
        {"original": "img-7", "transform": "crop", "family": "crop", "params": {"fraction": 0.1, "x": 0}},
        {"original": "img-7", "transform": "grayscale", "family": "color", "params": {}},
    ]


def test_sample_specs_is_seeded_and_respects_families() -> None:
    assert sample_specs(4, 30) == sample_specs(4, 30)
    assert sample_specs(4, 30) != sample_specs(5, 30)
    assert {s.family for s in sample_specs(9, 40, families=["crop", "jpeg"])} <= {"crop", "jpeg"}
    with pytest.raises(ValueError):
        sample_specs(1, 1, families=["nope"])


def test_sampled_specs_all_apply(image) -> None:
    for spec in sample_specs(11, 60):
        assert spec.apply(image).mode == "RGB"


@pytest.mark.parametrize(
    ("name", "params", "error"),
    [
        ("nope", {}, ValueError),
        ("crop", {"fraction": 0.95}, ValueError),
        ("crop", {"fraction": "a lot"}, TypeError),
        ("jpeg", {"quality": 0}, ValueError),
        ("mirror", {"axis": "diagonal"}, ValueError),
        ("pad", {"fraction": 0.1, "colour": (1, 2)}, ValueError),
        ("blur", {"sigma": 2}, TypeError),
        ("resize", {}, TypeError),
    ],
)
def test_apply_transform_rejects_bad_arguments(image, name, params, error) -> None:
    with pytest.raises(error):
        apply_transform(image, name, **params)


def test_apply_transform_rejects_non_images() -> None:
    with pytest.raises(TypeError):
        apply_transform(io.BytesIO(b"x"), "grayscale")  # type: ignore[arg-type]


def test_transforms_registry_names_match_keys() -> None:
    assert all(name == t.name for name, t in TRANSFORMS.items())


def test_trim_borders_undoes_pad_and_letterbox(image) -> None:
    for params in ({"fraction": 0.1}, {"fraction": 0.2, "colour": (255, 255, 255)}):
        padded = apply_transform(image, "pad", **params)
        assert np.array_equal(_pixels(trim_borders(padded)), _pixels(image))
    boxed = apply_transform(image, "letterbox", ratio=16 / 9)
    assert trim_borders(boxed).size == image.size


def test_trim_borders_leaves_unbordered_and_blank_images_alone(image) -> None:
    assert trim_borders(image) is image
    blank = Image.new("RGB", (50, 40), (9, 9, 9))
    assert trim_borders(blank) is blank
    dot = blank.copy()
    dot.putpixel((25, 20), (255, 255, 255))  # a tiny box under min_area: keep the whole image
    assert trim_borders(dot) is dot

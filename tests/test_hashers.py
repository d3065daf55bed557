"""Bit-identity with imagehash 4.3 on a varied image set, every mode and size."""

from __future__ import annotations

import io

import imagehash
import numpy as np
import pytest
from PIL import Image

import hashmatch
from hashmatch.errors import UnknownAlgorithmError, UsageError

from .conftest import encode, photo_like

REFERENCE = {
    "ahash": imagehash.average_hash,
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
}

SIZES = [(1, 1), (2, 3), (7, 5), (31, 17), (64, 64), (200, 37), (37, 200), (333, 250), (640, 480), (1024, 96)]


def _mode_images(rng: np.random.Generator) -> dict[str, Image.Image]:
    rgb = Image.fromarray(photo_like(rng, 96, 72))
    alpha = Image.fromarray((rng.random((72, 96)) * 255).astype(np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    la = rgb.convert("L")
    la.putalpha(alpha)
    p = rgb.quantize(64)
    p_trans = p.copy()
    p_trans.info["transparency"] = 3
    gray16 = Image.fromarray((photo_like(rng, 96, 72)[:, :, 0].astype(np.uint16) * 257))
    return {
        "RGB": rgb,
        "RGBA": rgba,
        "LA": la,
        "L": rgb.convert("L"),
        "P": p,
        "P+transparency": p_trans,
        "CMYK": rgb.convert("CMYK"),
        "I;16": gray16,
        "I": gray16.convert("I"),
        "1": rgb.convert("1"),
        "YCbCr": rgb.convert("YCbCr"),
    }


@pytest.mark.parametrize("algorithm", sorted(REFERENCE))
def test_hash_image_equals_imagehash_across_sizes(algorithm, rng):
    for width, height in SIZES:
        img = Image.fromarray(photo_like(rng, width, height))
        assert str(hashmatch.hash_image(img, algorithm)) == str(REFERENCE[algorithm](img)), (width, height)


@pytest.mark.parametrize("algorithm", sorted(REFERENCE))
def test_hash_image_equals_imagehash_for_every_mode(algorithm, rng):
    for mode, img in _mode_images(rng).items():
        assert str(hashmatch.hash_image(img, algorithm)) == str(REFERENCE[algorithm](img)), mode


@pytest.mark.parametrize("algorithm", ["ahash", "dhash", "phash"])
@pytest.mark.parametrize("hash_size", [4, 6, 16])
def test_hash_size_option_matches_imagehash(algorithm, hash_size, rng):
    img = Image.fromarray(photo_like(rng, 300, 200))
    ours = hashmatch.hash_image(img, algorithm, hash_size=hash_size)
    assert str(ours) == str(REFERENCE[algorithm](img, hash_size=hash_size))
    assert ours.bits == hash_size * hash_size


def test_whash_options_match_imagehash(rng):
    img = Image.fromarray(photo_like(rng, 300, 200))
    for kwargs in [{"hash_size": 16}, {"image_scale": 64}, {"mode": "db4"}, {"remove_max_haar_ll": False}]:
        assert str(hashmatch.hash_image(img, "whash", **kwargs)) == str(imagehash.whash(img, **kwargs)), kwargs


def test_flat_images_stay_identical_where_bits_are_rounding_noise():
    # Every DCT coefficient but DC is ~0: bits come from rounding, and still must agree.
    for value in (0, 1, 128, 255):
        img = Image.new("RGB", (50, 40), (value, value // 2, 255 - value))
        for algorithm, ref in REFERENCE.items():
            assert str(hashmatch.hash_image(img, algorithm)) == str(ref(img)), (value, algorithm)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_exact_mode_from_files_equals_imagehash_on_opened_file(fmt, rng):
    img = Image.fromarray(photo_like(rng, 160, 120))
    if fmt == "GIF":
        img = img.convert("P")
    data = encode(img, fmt)
    for algorithm, ref in REFERENCE.items():
        expected = str(ref(Image.open(io.BytesIO(data))))
        assert str(hashmatch.hash_image(data, algorithm, fast=False)) == expected, (fmt, algorithm)


def test_every_input_kind_gives_the_same_hash(tmp_path, rng):
    arr = photo_like(rng, 120, 90)
    data = encode(Image.fromarray(arr), "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    expected = hashmatch.hash_image(Image.fromarray(arr))
    with open(path, "rb") as fh:
        results = [
            hashmatch.hash_image(path),
            hashmatch.hash_image(str(path)),
            hashmatch.hash_image(data),
            hashmatch.hash_image(io.BytesIO(data)),
            hashmatch.hash_image(fh),
            hashmatch.hash_image(arr),
        ]
    assert all(r == expected for r in results)


def test_fast_mode_stays_close_to_exact_on_jpeg(rng):
    distances = []
    for _ in range(12):
        data = encode(Image.fromarray(photo_like(rng, 1024, 768)), "JPEG", quality=90)
        exact = hashmatch.hash_image(data, "phash", fast=False)
        fast = hashmatch.hash_image(data, "phash", fast=True)
        distances.append(exact - fast)
    assert max(distances) <= 6 and np.mean(distances) <= 2


def test_compute_hashes_decodes_once_for_several_algorithms(rng):
    img = Image.fromarray(photo_like(rng, 100, 80))
    results = hashmatch.compute_hashes(img, ["ahash", "phash"])
    assert set(results) == {"ahash", "phash"}
    assert results["phash"][0].hash == hashmatch.hash_image(img, "phash")
    assert results["phash"][0].quality is None


def test_phash_dihedral_variants_match_hashing_the_transformed_image(rng):
    img = Image.fromarray(photo_like(rng, 256, 256))
    variants = hashmatch.compute_hashes(img, ["phash"], dihedral=True)["phash"]
    assert len(variants) == 8
    assert variants[0].hash == hashmatch.hash_image(img, "phash")
    transposes = [
        None,
        Image.Transpose.ROTATE_90,  # counter-clockwise, as PDQ names its variants
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
        Image.Transpose.FLIP_TOP_BOTTOM,
        Image.Transpose.FLIP_LEFT_RIGHT,
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
    ]
    for result, op in zip(variants[1:], transposes[1:]):
        assert result.hash - hashmatch.hash_image(img.transpose(op), "phash") <= 2, op


def test_unknown_algorithm_and_option_are_usage_errors(rng):
    img = Image.fromarray(photo_like(rng, 10, 10))
    with pytest.raises(UnknownAlgorithmError, match="known"):
        hashmatch.hash_image(img, "nope")
    with pytest.raises(UnknownAlgorithmError, match="did you mean 'phash'"):
        hashmatch.hash_image(img, "phahs")
    with pytest.raises(UsageError, match="hash_szie"):
        hashmatch.hash_image(img, "phash", hash_szie=8)
    with pytest.raises(ValueError, match="hash_size"):
        hashmatch.hash_image(img, "phash", hash_size=1)


def test_hash_images_reports_bad_inputs_in_place_and_goes_on(rng):
    good = encode(Image.fromarray(photo_like(rng, 40, 30)), "PNG")
    out = hashmatch.hash_images([good, b"not an image", good[: len(good) // 2], good])
    assert isinstance(out[0], hashmatch.Hash) and out[0] == out[3]
    assert isinstance(out[1], hashmatch.UnreadableImageError)
    assert isinstance(out[2], hashmatch.UnreadableImageError)


def test_rgb_arrays_take_the_array_lane_with_the_same_results_and_limits(rng):
    arr = photo_like(rng, 150, 110)
    for dihedral in (False, True):
        via_array = hashmatch.compute_hashes(arr, ["pdq", "phash", "dhash"], dihedral=dihedral)
        via_pil = hashmatch.compute_hashes(Image.fromarray(arr), ["pdq", "phash", "dhash"], dihedral=dihedral)
        assert via_array == via_pil
    with pytest.raises(hashmatch.ImageTooLargeError):
        hashmatch.compute_hashes(arr, ["pdq"], limits=hashmatch.ImageLimits(max_pixels=100))

"""PDQ against the published reference vectors (../shared/testdata/pdq) and pdqhash.

Tiers as the test-data README sets them out: (1) exact hash and quality against the
C++ core on the same Pillow pixels (pdqhash oracle, pytx and Java unit-test rows);
(2) the 2019 C++ listing, exact except the small JPEGs it names; (3) other vintages
and ports within upstream's tolerance.
"""

from __future__ import annotations

import csv
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from hashmatch.errors import HashmatchError, ImageError, UnreadableImageError, UsageError
from hashmatch.hashers import ALGORITHMS, DIHEDRAL_NAMES, HashResult, compute_hashes, hash_image
from hashmatch.hashers.pdq import (
    PDQ_MIN_QUALITY,
    is_low_quality,
    pdq,
    pdq_dihedral,
    pdq_dihedral_from_array,
    pdq_from_array,
    pdq_with_quality,
    warmup,
)
from hashmatch.hashers.pdq import _decode_scale
from hashmatch.hashes import Hash

from .conftest import encode, photo_like
from .conftest import SHARED_PDQ as TESTDATA

# The full reference vectors live outside the repository; tests/test_golden.py covers
# exactness on committed images, and conftest deselects these when ../shared is absent.
needs_testdata = pytest.mark.shared_testdata


def _table(name: str) -> list[dict[str, str]]:
    with open(TESTDATA / "expected" / name, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@lru_cache(maxsize=None)
def _dihedral_of_file(relpath: str) -> tuple[HashResult, ...]:
    return pdq_dihedral(TESTDATA / "images" / relpath)


def _ref(hex_text: str) -> Hash:
    return Hash.from_hex(hex_text, algorithm="pdq")


_PIL_TRANSFORMS = {  # python-threatexchange's PhotoContent.all_simple_rotations
    "ORIGINAL": lambda im: im,
    "ROTATE90": lambda im: im.rotate(90, expand=True),
    "ROTATE180": lambda im: im.rotate(180, expand=True),
    "ROTATE270": lambda im: im.rotate(270, expand=True),
    "FLIPX": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "FLIPY": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "FLIPPLUS1": lambda im: im.transpose(Image.Transpose.ROTATE_270).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "FLIPMINUS1": lambda im: im.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
}


def _expected_rows(sources: set[str]) -> list[dict[str, str]]:
    if not TESTDATA.is_dir():
        return []
    return [
        r
        for r in _table("expected_hashes.tsv")
        if r["source"] in sources and (TESTDATA / "images" / r["image"]).exists()
    ]


def _textured(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Coarse random blocks, smoothly enlarged: a high-quality PDQ input."""
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    return np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR))


# -- tier 1: exact ---------------------------------------------------------------------
@needs_testdata
def test_pdq_oracle_table_every_row_exact():
    rows = _table("pdqhash_oracle_pillow.tsv")
    assert len(rows) > 300
    mismatches = []
    for row in rows:
        results = _dihedral_of_file(row["image"])
        name = "orig" if row["transform"] == "none" else row["transform"].split(":", 1)[1]
        got = results[DIHEDRAL_NAMES.index(name)]
        if str(got.hash) != row["hash_hex"] or got.quality != int(row["quality"]):
            mismatches.append((row["image"], row["transform"], str(got.hash), got.quality))
    assert mismatches == []


@needs_testdata
def test_pdq_plain_hash_equals_oracle_without_dihedral_path():
    rows = [r for r in _table("pdqhash_oracle_pillow.tsv") if r["transform"] == "none"]
    for row in rows:
        result = pdq_with_quality(TESTDATA / "images" / row["image"])
        assert (str(result.hash), result.quality) == (row["hash_hex"], int(row["quality"])), row["image"]


@needs_testdata
@pytest.mark.parametrize(
    "row",
    # pytx's unletterbox rows are left out: that step is not part of PDQ.
    [r for r in _expected_rows({"pytx_pdqhash", "pytx_signal_examples", "java_unittest"}) if not r["transform"].startswith("pytx:")],
    ids=lambda r: f"{r['source']}:{r['image']}:{r['transform']}",
)
def test_pdq_upstream_exact_rows_match(row):
    transform = row["transform"]
    image = Image.open(TESTDATA / "images" / row["image"])
    if transform.startswith("pil:"):
        image = _PIL_TRANSFORMS[transform[4:]](image.convert("RGB"))
    result = pdq_with_quality(image)
    assert str(result.hash) == row["hash_hex"]
    if row["quality"]:
        assert result.quality == int(row["quality"])


# -- tier 2: the 2019 C++ listing ------------------------------------------------------
_CPP_2019_OFF_BY = {  # the README's list: 2019's JPEG decoder, not the core
    "misc-images/wee.jpg": 2,
    "reg-test-input/labelme-subset/q0004.jpg": 2,
    "reg-test-input/labelme-subset/q0122.jpg": 2,
    "reg-test-input/labelme-subset/q0746.jpg": 2,
    "reg-test-input/labelme-subset/q0003.jpg": 12,
}


@needs_testdata
@pytest.mark.parametrize("row", _expected_rows({"cpp_int64_2019"}), ids=lambda r: r["image"])
def test_pdq_cpp_2019_listing_within_readme_tier(row):
    result = pdq_with_quality(TESTDATA / "images" / row["image"])
    distance = result.hash - _ref(row["hash_hex"])
    assert distance <= _CPP_2019_OFF_BY.get(row["image"], 0)
    assert result.quality == int(row["quality"])


# -- tier 3: other vintages and ports ----------------------------------------------------
@needs_testdata
@pytest.mark.parametrize(
    "row",
    _expected_rows({"cpp_hex_2017", "java_regtest_2019", "wasm_csv", "python_ref_readme", "python_ref_test"}),
    ids=lambda r: f"{r['source']}:{r['image']}:{r['transform']}",
)
def test_pdq_other_vintages_within_upstream_tolerance(row):
    results = _dihedral_of_file(row["image"])
    transform = row["transform"]
    name = "orig" if transform == "none" else transform.split(":", 1)[1]
    result = results[DIHEDRAL_NAMES.index(name)]
    distance = result.hash - _ref(row["hash_hex"])
    # upstream's criterion 2 (quality >= 80: within 10 bits); the pure-Python port's
    # own test allows 16 and two of its rows are 12 bits away from the C++ core.
    limit = 16 if row["source"].startswith("python_ref") else 10
    if result.quality >= 80:
        assert distance <= limit
    else:
        assert distance <= 16


# -- dihedral ---------------------------------------------------------------------------
_DIH_FILES = {
    "rot90": "bridge-2-rotate-90.jpg",
    "rot180": "bridge-3-rotate-180.jpg",
    "rot270": "bridge-4-rotate-270.jpg",
    "flipx": "bridge-5-flipx.jpg",
    "flipy": "bridge-6-flipy.jpg",
    "flipp": "bridge-7-flip-plus-1.jpg",
    "flipm": "bridge-8-flip-minus-1.jpg",
}


@needs_testdata
@pytest.mark.parametrize("name", sorted(_DIH_FILES))
def test_pdq_dihedral_close_to_hash_of_transformed_file(name):
    variants = _dihedral_of_file("reg-test-input/dih/bridge-1-original.jpg")
    transformed = pdq(TESTDATA / "images" / "reg-test-input" / "dih" / _DIH_FILES[name])
    assert variants[DIHEDRAL_NAMES.index(name)].hash - transformed <= 8
    # and it is the variant that matches: every other one is far away
    others = [v.hash - transformed for n, v in zip(DIHEDRAL_NAMES, variants) if n != name]
    assert min(others) > 64


_PIL_OF = {
    "rot90": "ROTATE90",
    "rot180": "ROTATE180",
    "rot270": "ROTATE270",
    "flipx": "FLIPX",
    "flipy": "FLIPY",
    "flipp": "FLIPPLUS1",
    "flipm": "FLIPMINUS1",
}


@needs_testdata
@pytest.mark.parametrize(
    "relpath",
    ["bridge-mods/aaa-orig.jpg", "misc-images/c.png", "reg-test-input/pen-and-coaster.png", "reg-test-input/exif-rotn/exif-rotn-1.jpg"],
)
def test_pdq_dihedral_close_to_hash_of_transformed_pixels(relpath):
    # Holds for photos of several hundred pixels and more. At 256x256 the reference's
    # own DCT-domain variants are 30-100 bits from hashing the turned pixels (the
    # 2-pixel box filter aliases), and pdqhash agrees bit for bit: see notes/pdq.md.
    image = Image.open(TESTDATA / "images" / relpath).convert("RGB")
    variants = _dihedral_of_file(relpath)
    for name, pil_name in _PIL_OF.items():
        direct = pdq_from_array(np.asarray(_PIL_TRANSFORMS[pil_name](image))).hash
        assert variants[DIHEDRAL_NAMES.index(name)].hash - direct <= 12, name


@needs_testdata
def test_pdq_dihedral_rot90_is_counter_clockwise():
    rgb = np.asarray(Image.open(TESTDATA / "images" / "bridge-mods" / "aaa-orig.jpg").convert("RGB"))
    rot90 = _dihedral_of_file("bridge-mods/aaa-orig.jpg")[DIHEDRAL_NAMES.index("rot90")].hash
    ccw = pdq_from_array(np.ascontiguousarray(np.rot90(rgb, 1))).hash  # np.rot90 k=1 turns left
    cw = pdq_from_array(np.ascontiguousarray(np.rot90(rgb, -1))).hash
    assert rot90 - ccw <= 8 < rot90 - cw


@needs_testdata
def test_pdq_dihedral_pixels_method_exact_for_turned_small_image():
    # 256x256: the DCT-domain variants are far from the turned image's hash here
    image = Image.open(TESTDATA / "images" / "pytx-resources" / "rgb.jpeg").convert("RGB")
    rgb = np.asarray(image)
    by_pixels = pdq_dihedral_from_array(rgb, dihedral_method="pixels")
    by_dct = pdq_dihedral_from_array(rgb)
    assert by_pixels[0] == by_dct[0]
    worst_dct = 0
    for name, pil_name in _PIL_OF.items():
        direct = pdq_from_array(np.asarray(_PIL_TRANSFORMS[pil_name](image)))
        assert by_pixels[DIHEDRAL_NAMES.index(name)] == direct, name
        worst_dct = max(worst_dct, by_dct[DIHEDRAL_NAMES.index(name)].hash - direct.hash)
    assert worst_dct > 31  # why the option exists: the DCT variant would miss the match


def test_pdq_dihedral_method_through_registry_and_rejects_unknown(rng):
    rgb = _textured(rng, 90, 70)
    via_api = pdq_dihedral(rgb, dihedral_method="pixels")
    assert via_api == pdq_dihedral_from_array(rgb, dihedral_method="pixels")
    with pytest.raises(ValueError):
        pdq_dihedral_from_array(rgb, dihedral_method="fft")
    with pytest.raises(ValueError):
        pdq_with_quality(rgb, dihedral_method="fft")


def test_pdq_dihedral_first_is_plain_hash_and_quality_shared(rng):
    rgb = photo_like(rng, 97, 131)
    variants = pdq_dihedral_from_array(rgb)
    assert len(variants) == 8
    assert variants[0] == pdq_from_array(rgb)
    assert len({v.quality for v in variants}) == 1
    assert len({v.hash for v in variants}) == 8


# -- against pdqhash on arrays ------------------------------------------------------------
def _pdqhash_result(rgb: np.ndarray) -> tuple[str, int]:
    pdqhash = pytest.importorskip("pdqhash", reason="pdqhash (the C++ reference bindings) is not installed")
    vector, quality = pdqhash.compute(rgb)
    return str(Hash.from_bool_array(vector.astype(bool), algorithm="pdq")), int(quality)


def _rgb_arrays():
    sides = st.one_of(st.integers(1, 12), st.integers(60, 70), st.integers(120, 300))
    shapes = st.tuples(sides, sides, st.just(3))
    random = shapes.flatmap(lambda s: arrays(np.uint8, s, elements=st.integers(0, 255)))
    flat = st.tuples(sides, sides, st.integers(0, 255)).map(lambda t: np.full((t[0], t[1], 3), t[2], np.uint8))
    return st.one_of(random, flat)


@settings(max_examples=40)
@given(_rgb_arrays())
def test_pdq_equals_pdqhash_on_random_arrays(rgb):
    result = pdq_from_array(rgb)
    assert (str(result.hash), result.quality) == _pdqhash_result(rgb)


@settings(max_examples=15)
@given(st.integers(0, 2**32 - 1), st.integers(5, 700), st.integers(5, 700))
def test_pdq_equals_pdqhash_on_photo_like_arrays(seed, width, height):
    rgb = photo_like(np.random.default_rng(seed), width, height)
    result = pdq_from_array(rgb)
    assert (str(result.hash), result.quality) == _pdqhash_result(rgb)
    pdqhash = pytest.importorskip("pdqhash")
    vectors, quality = pdqhash.compute_dihedral(rgb)
    ours = pdq_dihedral_from_array(rgb)
    assert [str(Hash.from_bool_array(v.astype(bool), algorithm="pdq")) for v in vectors] == [str(r.hash) for r in ours]


@pytest.mark.parametrize("shape", [(64, 64), (5, 5), (5, 300), (63, 65), (128, 128)])
def test_pdq_equals_pdqhash_at_boundary_sizes(rng, shape):
    # 64x64: the newest upstream core skips the filter there; pdqhash 0.2.8 (and we) do not
    rgb = rng.integers(0, 256, shape + (3,), dtype=np.uint8)
    result = pdq_from_array(rgb)
    assert (str(result.hash), result.quality) == _pdqhash_result(rgb)


def test_pdq_non_contiguous_array_same_as_contiguous(rng):
    rgb = photo_like(rng, 200, 150)
    view = np.asfortranarray(rgb)[::1, ::1]
    assert pdq_from_array(view) == pdq_from_array(rgb)


# -- small, flat and low-quality images ------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (4, 100), (100, 4), (4, 4)])
def test_pdq_under_five_pixels_is_zero_hash_quality_zero(shape):
    result = pdq_from_array(np.full(shape + (3,), 200, np.uint8))
    assert str(result.hash) == "0" * 64
    assert result.quality == 0
    assert is_low_quality(result)


def test_pdq_flat_image_is_low_quality():
    result = pdq_from_array(np.full((300, 400, 3), 77, np.uint8))
    assert result.quality == 0
    assert is_low_quality(result)


def test_pdq_photo_is_not_low_quality(rng):
    result = pdq_from_array(_textured(rng, 320, 240))
    assert result.quality >= PDQ_MIN_QUALITY
    assert not is_low_quality(result)


def test_is_low_quality_threshold_and_missing_quality():
    assert PDQ_MIN_QUALITY == 50
    assert is_low_quality(49) and not is_low_quality(50)
    # One rule with the Matcher's gate: a result without a quality is not gated.
    assert not is_low_quality(None)
    assert not is_low_quality(HashResult(Hash(0, "pdq", 256), None))


@needs_testdata
@pytest.mark.parametrize("name", ["q0003.jpg", "q0004.jpg"])
def test_pdq_featureless_reference_images_flagged(name):
    result = pdq_with_quality(TESTDATA / "images" / "reg-test-input" / "labelme-subset" / name)
    assert is_low_quality(result)


# -- pixel policy: alpha, grey, 16-bit, EXIF -----------------------------------------------
def test_pdq_alpha_is_dropped_not_composited(rng):
    rgb = photo_like(rng, 120, 90)
    alpha = rng.integers(0, 256, (90, 120), dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    assert pdq_with_quality(rgba) == pdq_from_array(rgb)
    png = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    assert pdq_with_quality(png) == pdq_from_array(rgb)


def test_pdq_grey_with_alpha_hashes_grey_channel(rng):
    grey = photo_like(rng, 110, 80)[:, :, 0]
    la = Image.fromarray(np.dstack([grey, np.full_like(grey, 9)]), "LA")
    expected = pdq_from_array(np.dstack([grey, grey, grey]))
    assert pdq_with_quality(encode(la, "PNG")) == expected


def test_pdq_sixteen_bit_follows_pillow_convert(rng):
    values = rng.integers(0, 65536, (70, 90), dtype=np.uint16)
    image = Image.fromarray(values)  # I;16
    expected = pdq_from_array(np.asarray(image.convert("RGB")))
    assert pdq_with_quality(encode(image, "PNG")) == expected


@needs_testdata
def test_pdq_exif_orientation_ignored_by_default_applied_on_request():
    path = TESTDATA / "images" / "reg-test-input" / "exif-rotn" / "exif-rotn-6.jpg"
    stored = pdq_with_quality(path)
    cpp = {r["image"]: r for r in _table("expected_hashes.tsv") if r["source"] == "cpp_int64_2019"}
    assert str(stored.hash) == cpp["reg-test-input/exif-rotn/exif-rotn-6.jpg"]["hash_hex"]
    upright = pdq(path, exif_transpose=True)
    assert upright - stored.hash > 64
    # orientation 6 means "turn 90 degrees clockwise to display": our rot270
    assert upright - _dihedral_of_file("reg-test-input/exif-rotn/exif-rotn-6.jpg")[3].hash <= 8


# -- options: 512 pre-resize, reduced decode ------------------------------------------------
def test_pdq_preresize_512_samples_nearest_like_cimg(rng):
    rgb = photo_like(rng, 900, 600)
    rows = np.arange(512) * 600 // 512
    cols = np.arange(512) * 900 // 512
    expected = pdq_from_array(np.ascontiguousarray(rgb[rows][:, cols]))
    assert pdq_from_array(rgb, preresize_512=True) == expected
    assert pdq_with_quality(rgb, preresize_512=True) == expected


def test_pdq_preresize_512_leaves_small_images_alone(rng):
    rgb = photo_like(rng, 512, 300)
    assert pdq_from_array(rgb, preresize_512=True) == pdq_from_array(rgb)


def test_pdq_preresize_512_stretches_when_one_side_is_large(rng):
    rgb = photo_like(rng, 700, 200)
    cols = np.arange(512) * 700 // 512
    rows = np.arange(512) * 200 // 512
    assert pdq_from_array(rgb, preresize_512=True) == pdq_from_array(np.ascontiguousarray(rgb[rows][:, cols]))


def test_pdq_default_decode_is_full_resolution(rng):
    rgb = photo_like(rng, 1024, 768)
    data = encode(Image.fromarray(rgb), "JPEG", quality=90)
    full = pdq_from_array(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    assert pdq_with_quality(data) == full
    assert ALGORITHMS["pdq"].draft_size() is None


@pytest.mark.parametrize(("side", "decoded", "limit"), [(384, (512, 384), 4), (192, (256, 192), 8)])
def test_pdq_draft_min_side_decodes_reduced_and_stays_close(rng, side, decoded, limit):
    rgb = _textured(rng, 1024, 768)
    data = encode(Image.fromarray(rgb), "JPEG", quality=90)
    full = pdq_with_quality(data)
    reduced = pdq_with_quality(data, draft_min_side=side)
    probe = Image.open(io.BytesIO(data))
    probe.draft("RGB", (side, side))
    assert probe.size == decoded  # what draft_min_side asks Pillow for
    assert reduced.hash - full.hash <= limit
    # the exact filter run on the reduced pixels drifts further: the model is what helps
    naive = pdq_from_array(np.asarray(probe.convert("RGB")))
    assert reduced.hash - full.hash < naive.hash - full.hash
    assert pdq_with_quality(data, draft_min_side=side, fast=False) == full


def test_pdq_reduced_decode_is_only_modelled_for_draft_images(rng):
    rgb = _textured(rng, 640, 480)
    image = Image.open(io.BytesIO(encode(Image.fromarray(rgb), "JPEG", quality=90)))
    assert _decode_scale(image) == 1
    image.draft("RGB", (160, 120))
    assert _decode_scale(image) == 4
    image.load()
    assert ALGORITHMS["pdq"].compute(image) != pdq_from_array(np.asarray(image))
    assert _decode_scale(Image.fromarray(rgb)) == 1


def test_pdq_draft_ignored_with_preresize():
    assert ALGORITHMS["pdq"].draft_size(preresize_512=True, draft_min_side=128) is None


# -- registry and API ----------------------------------------------------------------------
def test_pdq_registered_with_256_bits_rgb_and_dihedral():
    alg = ALGORITHMS["pdq"]
    assert alg.bits() == 256
    assert alg.mode == "RGB"
    assert alg.dihedral is not None
    assert set(alg.options) == {"preresize_512", "draft_min_side", "dihedral_method"}


def test_pdq_hash_image_and_compute_hashes_agree(rng):
    rgb = photo_like(rng, 200, 120)
    h = hash_image(rgb, "pdq")
    assert h.algorithm == "pdq" and h.bits == 256 and len(str(h)) == 64
    results = compute_hashes(rgb, ("pdq", "phash"), dihedral=True)
    assert len(results["pdq"]) == 8
    assert results["pdq"][0].hash == h
    assert results["pdq"][0].quality == pdq_from_array(rgb).quality


def test_pdq_hex_round_trips_through_hash(rng):
    h = pdq(photo_like(rng, 150, 150))
    assert Hash.from_hex(str(h), algorithm="pdq") == h


@pytest.mark.parametrize(
    "bad",
    [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)],
    ids=["grey", "rgba", "float"],
)
def test_pdq_from_array_rejects_non_rgb_uint8(bad):
    with pytest.raises(ImageError):
        pdq_from_array(bad)


def test_pdq_compute_rejects_non_rgb_pil_image():
    with pytest.raises(ImageError):
        ALGORITHMS["pdq"].compute(Image.new("L", (10, 10)))


@pytest.mark.parametrize("value", [-1, 10, 1.5, True, "256"])
def test_pdq_rejects_bad_draft_min_side(value):
    with pytest.raises(ValueError):
        pdq_with_quality(np.zeros((10, 10, 3), np.uint8), draft_min_side=value)


def test_pdq_rejects_non_bool_preresize():
    with pytest.raises(UsageError):
        pdq_from_array(np.zeros((10, 10, 3), np.uint8), preresize_512=1)


def test_pdq_garbage_bytes_raise_project_error():
    with pytest.raises(UnreadableImageError):
        pdq(b"not an image at all")
    with pytest.raises(HashmatchError):
        pdq_dihedral(b"\xff\xd8\xff\xe0 truncated jpeg")


def test_pdq_warmup_runs():
    warmup()


def test_pdq_reduced_decode_of_grey_jpeg_uses_the_scale_model(rng):
    # A grey JPEG is drafted in L and converted to RGB; the 1/n scale must survive that.
    from hashmatch._loading import DRAFT_SCALE_KEY, load_image, to_mode

    grey = Image.fromarray(photo_like(rng, 1024, 768)).convert("L")
    buf = io.BytesIO()
    grey.save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    img = to_mode(load_image(data, draft=("RGB", (192, 192))), "RGB")
    assert img.size == (256, 192) and img.info[DRAFT_SCALE_KEY] == 4
    exact = compute_hashes(data, ["pdq"], fast=False)["pdq"][0].hash
    fast = compute_hashes(data, ["pdq"], options={"pdq": {"draft_min_side": 192}})["pdq"][0].hash
    assert exact - fast <= 12

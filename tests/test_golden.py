"""Golden hashes of committed images (tests/data/golden): every hasher exact, no ../shared needed."""

from __future__ import annotations

import csv
from pathlib import Path

import imagehash
import pytest
from PIL import Image

import hashmatch
from hashmatch.hashers import DIHEDRAL_NAMES, HashResult, is_low_quality, pdq_dihedral, pdq_with_quality

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


def _rows() -> list[dict[str, str]]:
    with open(GOLDEN / "golden.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = _rows()


def test_golden_set_is_complete():
    images = {r["image"] for r in ROWS}
    assert len(images) == 4 and all((GOLDEN / "images" / i).is_file() for i in images)
    for image in images:
        algorithms = {r["algorithm"] for r in ROWS if r["image"] == image}
        assert algorithms == {"ahash", "dhash", "phash", "whash", "pdq"}
    assert (GOLDEN / "LICENSE-ThreatExchange.txt").is_file()


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r["transform"] == "none"], ids=lambda r: f"{r['algorithm']}:{r['image']}"
)
def test_golden_plain_hash_is_exact(row):
    path = GOLDEN / "images" / row["image"]
    result = hashmatch.compute_hashes(path, [row["algorithm"]], fast=False)[row["algorithm"]][0]
    assert result.hash.hex() == row["hash_hex"]
    if row["quality"]:
        assert result.quality == int(row["quality"])


@pytest.mark.parametrize("image", sorted({r["image"] for r in ROWS}))
def test_golden_pdq_dihedral_variants_are_exact(image):
    expected = {
        r["transform"].split(":", 1)[1]: (r["hash_hex"], int(r["quality"]))
        for r in ROWS
        if r["image"] == image and r["algorithm"] == "pdq" and r["transform"].startswith("dihedral:")
    }
    got = pdq_dihedral(GOLDEN / "images" / image)
    assert {name: (str(r.hash), r.quality) for name, r in zip(DIHEDRAL_NAMES, got)} == expected


def test_golden_quality_zero_image_is_gated():
    result = pdq_with_quality(GOLDEN / "images" / "misc-images" / "small.jpg")
    assert result.quality == 0 and is_low_quality(result)
    assert not HashResult(result.hash, result.quality).passes(hashmatch.QuerySpec().min_quality)


@pytest.mark.parametrize("algorithm", ["ahash", "dhash", "phash", "whash"])
def test_golden_hashes_round_trip_through_imagehash_objects(algorithm):
    function = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash, "phash": imagehash.phash, "whash": imagehash.whash}[algorithm]
    for image in sorted({r["image"] for r in ROWS}):
        theirs = function(Image.open(GOLDEN / "images" / image))
        ours = hashmatch.hash_image(GOLDEN / "images" / image, algorithm, fast=False)
        assert hashmatch.Hash.from_imagehash(theirs, algorithm=algorithm) == ours
        back = ours.to_imagehash()
        assert isinstance(back, imagehash.ImageHash) and back == theirs and str(back) == str(theirs)
        assert back - theirs == 0

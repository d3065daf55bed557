"""Round 5 of issue 14: the per-file shortcuts in trimming and dihedral phash give exactly
what the plain rules give (naive oracles below)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hashmatch._loading import trim_borders
from hashmatch.hashers import imagehash_compat as ic
from hashmatch.hashes import Hash


def _trim_oracle(image: Image.Image, tolerance: int = 12, min_area: float = 0.2) -> Image.Image:
    image = image if image.mode == "RGB" else image.convert("RGB")
    grey = np.asarray(image.convert("L"), dtype=np.int16)
    content = np.abs(grey - grey[0, 0]) > tolerance
    rows = np.flatnonzero(content.any(axis=1))
    cols = np.flatnonzero(content.any(axis=0))
    if rows.size == 0:
        return image
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (bottom - top) * (right - left) < min_area * grey.size:
        return image
    return image.crop((left, top, right, bottom))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1), st.integers(0, 40))
def test_trim_borders_matches_the_plain_rule(h: int, w: int, seed: int, tolerance: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.full((h, w, 3), rng.integers(0, 256), np.uint8)
    y0, y1 = sorted(rng.integers(0, h + 1, 2))
    x0, x1 = sorted(rng.integers(0, w + 1, 2))
    pixels[y0:y1, x0:x1] = rng.integers(0, 256, (y1 - y0, x1 - x0, 3))
    image = Image.fromarray(pixels)
    got, want = trim_borders(image, tolerance=tolerance), _trim_oracle(image, tolerance)
    assert got.size == want.size and got.tobytes() == want.tobytes()


def test_trim_borders_still_cuts_a_bar_that_one_edge_has() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    pixels[:, :6] = 0  # a pillarbox bar on the left only: three edges have content
    assert trim_borders(Image.fromarray(pixels)).size == (44, 40)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([2, 256]))
def test_dihedral_phash_packs_each_variant_as_from_bool_array(seed: int, levels: int) -> None:
    # Few grey levels make median ties, the path that rehashes a variant from its pixels.
    rng = np.random.default_rng(seed)
    image = Image.fromarray((rng.integers(0, levels, (40, 36)) * (255 // (levels - 1))).astype(np.uint8))
    size = 32
    pixels = ic._reduce(image, size, size)
    views = ic._dihedral_views(pixels)
    want = tuple(Hash.from_bool_array(ic._phash_bits(np.ascontiguousarray(v), 8), algorithm="phash") for v in views)
    assert tuple(r.hash for r in ic._phash_dihedral(image)) == want

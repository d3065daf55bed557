"""PDQ's inexact fast paths: the weights that model the exact filter on reduced decodes.

The exact path (:mod:`hashmatch.hashers.pdq`) filters full-resolution pixels. A reduced
JPEG decode has fewer pixels, and running the exact filter on them drifts (22 bits p95
at 1/4). Instead these weights apply, to what the reduced decode gives, the filter and
sampling the exact path would have applied at full resolution: for 1/n pixel drafts
(Pillow's scaled IDCT) a tent model over reduced pixels (:func:`_resample_weights`), and
for DC-decoded JPEGs the exact filter rows against each block's DC and first harmonics
(:func:`_model_weights`). Measured drift: notes/pdq.md and notes/issue-14-pdq.md.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

from .._loading import DCT_PLANES_KEY


def _triangle_cdf(x: np.ndarray, half_width: float) -> np.ndarray:
    x = np.clip(x, -half_width, half_width)
    left = (x + half_width) ** 2 / (2 * half_width * half_width)
    return np.where(x < 0, left, 1 - (half_width - x) ** 2 / (2 * half_width * half_width))


@lru_cache(maxsize=32)
def _resample_weights(size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights from ``size`` reduced pixels (1/scale decode) to PDQ's 64 samples.

    At full resolution, two passes of a box W = ceil(N / 128) wide make a tent of half
    width W, and the sample for output i sits at floor((i + 0.5) N / 64), moved half a
    pixel by each pass when W is even. Reduced pixel j averages full-resolution pixels
    [j scale, (j + 1) scale), so its weight is the tent's integral over that span.
    Weights are cut at the image edge and renormalised, as the shrinking windows are.
    """
    full = size * scale
    window = (full + 127) // 128
    centres = np.floor((np.arange(64) + 0.5) * full / 64) + 0.5 + (1.0 if window % 2 == 0 else 0.0)
    centres = centres / scale
    half_width = max(window / scale, 0.5)
    span = int(np.ceil(2 * half_width)) + 2
    first = np.clip(np.floor(centres - half_width).astype(np.int64), 0, max(size - span, 0))
    span = min(span, size)
    weights = np.empty((64, span), dtype=np.float64)
    for i in range(64):
        edges = first[i] + np.arange(span + 1) - centres[i]
        cdf = _triangle_cdf(edges, half_width)
        weights[i] = np.diff(cdf)
        weights[i] /= weights[i].sum()
    weights.flags.writeable = False
    first.flags.writeable = False
    return first, weights


def _exact_row(full: int, i: int) -> tuple[int, np.ndarray]:
    """Output ``i`` of the exact path along a side of ``full`` pixels, as weights over
    pixels (first pixel, weights): two of the reference's box passes, then the sample.
    The boxes shrink at the edges exactly as box1DFloat's windows do."""
    window = (full + 127) // 128
    half = (window + 2) // 2
    sample = int(((i + 0.5) * full) / 64)

    def box(o: int) -> tuple[int, int]:
        return max(0, o - (window - half)), min(full - 1, o + half - 1)

    lo, hi = box(sample)
    first, last = box(lo)[0], box(hi)[1]
    weights = np.zeros(last - first + 1)
    for x in range(lo, hi + 1):
        a, b = box(x)
        weights[a - first : b - first + 1] += 1.0 / ((hi - lo + 1) * (b - a + 1))
    return first, weights


@lru_cache(maxsize=32)
def _model_weights(full: int, blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights from JPEG blocks to PDQ's 64 samples along a side of ``full`` pixels.

    Pixel x of block j = x // 8 is modelled as the block's DC term times 1/sqrt(8) plus
    its first harmonic times cos((2 (x mod 8) + 1) pi / 16) / 2 (the orthonormal 8-point
    DCT basis, as JPEG stores coefficients), so a block's weight for output i is the
    exact filter row summed against those two basis functions: (first block, weights
    for the constant part, weights for the harmonic). Exact for images whose blocks
    hold only those terms; measured drift on photos in notes/issue-14-pdq.md.
    """
    rows = [_exact_row(full, i) for i in range(64)]
    span = max((first + len(w) - 1) // 8 - first // 8 + 1 for first, w in rows)
    span = min(span, blocks)
    starts = np.empty(64, dtype=np.int64)
    w0 = np.zeros((64, span))
    w1 = np.zeros((64, span))
    for i, (first, w) in enumerate(rows):
        start = min(first // 8, blocks - span)
        starts[i] = start
        x = first + np.arange(len(w))
        slot = x // 8 - start
        np.add.at(w0[i], slot, w * math.sqrt(1 / 8))
        np.add.at(w1[i], slot, w * 0.5 * np.cos((2 * (x % 8) + 1) * math.pi / 16))
    for array in (starts, w0, w1):
        array.flags.writeable = False
    return starts, w0, w1


def _dct_planes(image: Image.Image) -> tuple[np.ndarray, int, int] | None:
    """The loader's block coefficients of a DC-decoded grey draft, when they are this
    image's (a crop or another mode is not)."""
    found = image.info.get(DCT_PLANES_KEY)
    if image.mode != "L" or not isinstance(found, tuple) or len(found) != 3:
        return None
    planes, height, width = found
    if not isinstance(planes, np.ndarray) or planes.shape != (3, image.height, image.width):
        return None
    if min(height, width) < 64 or -(-height // 8) != image.height or -(-width // 8) != image.width:
        return None
    return planes, height, width

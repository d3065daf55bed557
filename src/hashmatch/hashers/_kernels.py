"""numba kernels for the imagehash-compatible algorithms.

They take small C-contiguous arrays (the image already reduced by Pillow) and return
boolean bit arrays. Each has a naive twin in ``tests/test_hasher_kernels.py``.
"""

from __future__ import annotations

import numpy as np
from .._jit import njit


@njit(cache=True, nogil=True)
def above_mean(pixels):  # (h, w) uint8 -> (h, w) bool
    h, w = pixels.shape
    total = 0.0
    for i in range(h):
        for j in range(w):
            total += pixels[i, j]
    mean = total / (h * w)
    out = np.empty((h, w), dtype=np.bool_)
    for i in range(h):
        for j in range(w):
            out[i, j] = pixels[i, j] > mean
    return out


@njit(cache=True, nogil=True)
def right_brighter(pixels):  # (h, w + 1) uint8 -> (h, w) bool
    h, w1 = pixels.shape
    out = np.empty((h, w1 - 1), dtype=np.bool_)
    for i in range(h):
        for j in range(w1 - 1):
            out[i, j] = pixels[i, j + 1] > pixels[i, j]
    return out


@njit(cache=True, nogil=True)
def dct_basis(n, k):
    """scipy's unnormalised DCT-II rows: basis[u, x] = 2 cos(pi u (2x + 1) / 2n)."""
    basis = np.empty((k, n), dtype=np.float64)
    for u in range(k):
        for x in range(n):
            basis[u, x] = 2.0 * np.cos(np.pi * u * (2 * x + 1) / (2.0 * n))
    return basis


# Ciura's Shell sort gaps (enough for a few thousand values).
_SHELL_GAPS = (701, 301, 132, 57, 23, 10, 4, 1)


@njit(cache=True, nogil=True)
def sorted_copy(values):
    """An ascending copy of a 1-D array, by Shell sort.

    The arrays here hold 64 to 256 coefficients. Shell sort is as fast as np.sort
    at that size, and its compile is about a second shorter per dtype than numba's
    np.sort quicksort, on every first run.
    """
    out = values.copy()
    n = out.shape[0]
    for gap in _SHELL_GAPS:
        for i in range(gap, n):
            v = out[i]
            j = i
            while j >= gap and out[j - gap] > v:
                out[j] = out[j - gap]
                j -= gap
            out[j] = v
    return out


@njit(cache=True, nogil=True)
def median(values):
    flat = sorted_copy(values.ravel())
    m = flat.size
    if m % 2 == 1:
        return flat[m // 2]
    return (flat[m // 2 - 1] + flat[m // 2]) / 2.0


@njit(cache=True, nogil=True)
def dct_low(pixels, basis):
    """The low ``k × k`` block of the unnormalised 2-D DCT-II (scipy's convention)."""
    k, n = basis.shape
    # rows = basis @ pixels (DCT along axis 0), then low = rows @ basis.T (along axis 1)
    rows = np.zeros((k, n), dtype=np.float64)
    for u in range(k):
        for x in range(n):
            b = basis[u, x]
            for j in range(n):
                rows[u, j] += b * pixels[x, j]
    low = np.zeros((k, k), dtype=np.float64)
    for u in range(k):
        for v in range(k):
            acc = 0.0
            for j in range(n):
                acc += rows[u, j] * basis[v, j]
            low[u, v] = acc
    return low


@njit(cache=True, nogil=True)
def above_median_checked(low):
    """Bits of ``low > median(low)``, and whether any of them depends on rounding.

    ``ambiguous`` is true when a coefficient lies so close to the median that its bit
    could flip with the order of floating-point operations; the caller then recomputes
    with scipy's exact sequence, so the result stays bit-identical to imagehash.
    """
    k = low.shape[0]
    med = median(low)
    scale = 1.0
    for u in range(k):
        for v in range(k):
            a = abs(low[u, v])
            if a > scale:
                scale = a
    tol = 1e-9 * scale
    bits = np.empty((k, k), dtype=np.bool_)
    ambiguous = False
    for u in range(k):
        for v in range(k):
            d = low[u, v] - med
            bits[u, v] = d > 0.0
            if abs(d) <= tol:
                ambiguous = True
    return bits, ambiguous


@njit(cache=True, nogil=True)
def dct_low_above_median(pixels, basis):
    """phash's core: the low DCT block thresholded at its median; (bits, ambiguous)."""
    return above_median_checked(dct_low(pixels, basis))


@njit(cache=True, nogil=True)
def dihedral_blocks(low):
    """The low DCT block of each dihedral view of the image, from the original's block.

    Reversing an axis of the input multiplies DCT-II coefficient ``u`` on that axis by
    ``(-1)**u`` exactly, and transposing the input transposes the block, so one DCT
    serves all eight views (in DIHEDRAL_NAMES order: orig, rot90 counter-clockwise,
    rot180, rot270, flipx, flipy, flipp, flipm).
    """
    k = low.shape[0]
    out = np.empty((8, k, k), dtype=np.float64)
    for u in range(k):
        for v in range(k):
            su = 1.0 - 2.0 * (u & 1)
            sv = 1.0 - 2.0 * (v & 1)
            c = low[u, v]
            t = low[v, u]
            out[0, u, v] = c
            out[1, u, v] = su * t  # rot90 = flip rows of the transpose
            out[2, u, v] = su * sv * c
            out[3, u, v] = sv * t  # rot270 = transpose of the row flip
            out[4, u, v] = su * c  # flipx: top-bottom
            out[5, u, v] = sv * c  # flipy: left-right
            out[6, u, v] = t  # flipp: transpose
            out[7, u, v] = su * sv * t  # flipm: anti-transpose
    return out


@njit(cache=True, nogil=True)
def dihedral_above_median(pixels, basis):
    """Bits of all eight dihedral views from one DCT: ((8, k, k) bits, (8,) ambiguous)."""
    blocks = dihedral_blocks(dct_low(pixels, basis))
    k = blocks.shape[1]
    bits = np.empty((8, k, k), dtype=np.bool_)
    ambiguous = np.empty(8, dtype=np.bool_)
    for i in range(8):
        b, a = above_median_checked(blocks[i])
        # Element copies: numba's array-to-slice assignment compiles its string-building
        # shape-mismatch error path, about 2 s of every first run.
        for u in range(k):
            for v in range(k):
                bits[i, u, v] = b[u, v]
        ambiguous[i] = a
    return bits, ambiguous


@njit(cache=True, nogil=True)
def above_median(values):  # any float array -> bool array of the same shape
    med = median(values)
    return values > med

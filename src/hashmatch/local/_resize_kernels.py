"""numba kernels of :mod:`._resize`: Pillow's two-pass convolution resize of 8-bit grey
images, reproduced integer for integer.

Pillow (``libImaging/Resample.c``) computes each output pixel's filter weights in double
precision, normalises them, turns them into fixed-point integers of
:data:`PRECISION_BITS` fractional bits, and then convolves rows (horizontal pass, into
a uint8 image of the source rows the vertical pass needs) and columns (vertical pass),
each sum clipped to 0..255 after the shift. The same arithmetic in the same order gives
the same bytes (:func:`coefficients`, :func:`convolve_rows`). Naive twin: Pillow itself,
in ``tests/test_local_resize.py``.

Filters are named by Pillow's numbers (``Image.Resampling``): 2 bilinear, 3 bicubic.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit

PRECISION_BITS = 32 - 8 - 2
BILINEAR = 2
BICUBIC = 3


@njit(cache=True, nogil=True)
def _filter(kind, x):
    if x < 0.0:
        x = -x
    if kind == BILINEAR:
        if x < 1.0:
            return 1.0 - x
        return 0.0
    # Bicubic with a = -0.5, written as Pillow writes it (same operations, same rounding).
    a = -0.5
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@njit(cache=True, nogil=True)
def coefficients(in_size, in0, in1, out_size, kind):
    """``(bounds, weights)``: output pixel ``i`` reads source pixels ``bounds[i, 0]`` on,
    ``bounds[i, 1]`` of them, with fixed-point ``weights[i, :bounds[i, 1]]`` (Pillow's
    ``precompute_coeffs`` and ``normalize_coeffs_8bpc``)."""
    support = 1.0 if kind == BILINEAR else 2.0
    scale = (in1 - in0) / out_size
    filterscale = scale if scale >= 1.0 else 1.0
    support = support * filterscale
    ksize = np.int64(np.ceil(support)) * 2 + 1
    bounds = np.zeros((out_size, 2), dtype=np.int64)
    weights = np.zeros((out_size, ksize), dtype=np.int64)
    k = np.zeros(ksize, dtype=np.float64)
    one = float(1 << PRECISION_BITS)
    for xx in range(out_size):
        center = in0 + (xx + 0.5) * scale
        ww = 0.0
        ss = 1.0 / filterscale
        xmin = np.int64(center - support + 0.5)  # C's (int): towards zero
        if xmin < 0:
            xmin = 0
        xmax = np.int64(center + support + 0.5)
        if xmax > in_size:
            xmax = in_size
        xmax -= xmin
        for x in range(xmax):
            w = _filter(kind, (x + xmin - center + 0.5) * ss)
            k[x] = w
            ww += w
        for x in range(xmax):
            if ww != 0.0:
                k[x] /= ww
        for x in range(xmax):
            if k[x] < 0:
                weights[xx, x] = np.int64(-0.5 + k[x] * one)
            else:
                weights[xx, x] = np.int64(0.5 + k[x] * one)
        bounds[xx, 0] = xmin
        bounds[xx, 1] = xmax
    return bounds, weights


@njit(cache=True, nogil=True, inline="always")
def _clip8(v):
    v >>= PRECISION_BITS
    if v < 0:
        return np.uint8(0)
    if v > 255:
        return np.uint8(255)
    return np.uint8(v)


@njit(cache=True, nogil=True)
def convolve_rows(src, bounds, weights, first):
    """Output row ``i`` = the rows ``bounds[i, 0] - first`` on (``bounds[i, 1]`` of them)
    of ``src`` weighted by ``weights[i]``, rounded and clipped as Pillow does: Pillow's
    vertical pass, and its horizontal pass on a transposed image (the caller transposes).
    A whole output row is accumulated at once (integer sums: the order does not change
    them), which vectorises."""
    out_h, width = bounds.shape[0], src.shape[1]
    half = np.int64(1) << (PRECISION_BITS - 1)
    out = np.empty((out_h, width), dtype=np.uint8)
    acc = np.empty(width, dtype=np.int64)
    for yy in range(out_h):
        acc[:] = half
        y0 = bounds[yy, 0] - first
        for y in range(bounds[yy, 1]):
            wgt = weights[yy, y]
            line = src[y0 + y]
            for xx in range(width):
                acc[xx] += np.int64(line[xx]) * wgt
        for xx in range(width):
            out[yy, xx] = _clip8(acc[xx])
    return out

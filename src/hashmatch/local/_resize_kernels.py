"""numba kernels of :mod:`._resize`: Pillow's two-pass convolution resize of 8-bit grey
images, reproduced integer for integer.

Pillow (``libImaging/Resample.c``) computes each output pixel's filter weights in double
precision, normalises them, turns them into fixed-point integers of
:data:`PRECISION_BITS` fractional bits, and then convolves rows (horizontal pass, into
a uint8 image of the source rows the vertical pass needs) and columns (vertical pass),
each sum clipped to 0..255 after the shift. The same arithmetic in the same order gives
the same bytes; the columns are accumulated a whole output row at a time (integer sums:
the order does not change them), which vectorises. Naive twin: Pillow itself, in
``tests/test_local_resize.py``.

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
def _horizontal(src, first, count, out_w, kind):
    """Rows ``first .. first + count - 1`` of ``src`` resized to ``out_w`` columns, four
    rows at a time (they share each output pixel's weights; four independent sums
    instead of one chain: ~1.5x faster than row by row)."""
    bounds, weights = coefficients(src.shape[1], 0.0, float(src.shape[1]), out_w, kind)
    half = np.int64(1) << (PRECISION_BITS - 1)
    out = np.empty((count, out_w), dtype=np.uint8)
    y = 0
    while y + 4 <= count:
        l0, l1, l2, l3 = src[first + y], src[first + y + 1], src[first + y + 2], src[first + y + 3]
        for xx in range(out_w):
            x0 = bounds[xx, 0]
            a0 = a1 = a2 = a3 = half
            for x in range(bounds[xx, 1]):
                k = weights[xx, x]
                a0 += np.int64(l0[x0 + x]) * k
                a1 += np.int64(l1[x0 + x]) * k
                a2 += np.int64(l2[x0 + x]) * k
                a3 += np.int64(l3[x0 + x]) * k
            out[y, xx] = _clip8(a0)
            out[y + 1, xx] = _clip8(a1)
            out[y + 2, xx] = _clip8(a2)
            out[y + 3, xx] = _clip8(a3)
        y += 4
    for y in range(y, count):
        line = src[first + y]
        for xx in range(out_w):
            x0 = bounds[xx, 0]
            acc = half
            for x in range(bounds[xx, 1]):
                acc += np.int64(line[x0 + x]) * weights[xx, x]
            out[y, xx] = _clip8(acc)
    return out


@njit(cache=True, nogil=True)
def _vertical(src, bounds, weights, first):
    """``src`` resized to ``bounds.shape[0]`` rows; ``src`` row 0 is source row ``first``.
    A whole output row is accumulated at once (integer sums: the order does not matter)."""
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


@njit(cache=True, nogil=True)
def resize(src, out_w, out_h, kind):
    """``src`` (uint8, ``(h, w)``) resized to ``(out_h, out_w)`` as Pillow's
    ``Image.resize((out_w, out_h), kind)`` does it for mode ``"L"`` (no box, no
    reducing gap): rows first, over the source rows the columns need, unless the
    height shrinks by more than twice what the width does (Pillow 13's
    ``ImagingResampleInner``; the order changes the rounding of the middle image)."""
    h, w = src.shape
    if out_w == w and out_h == h:
        return src.copy()
    ybounds, yweights = coefficients(h, 0.0, float(h), out_h, kind)
    if out_h == h:
        return _horizontal(src, 0, h, out_w, kind)
    if out_w == w:
        return _vertical(src, ybounds, yweights, 0)
    if h - out_h > 0 and h - out_h > (w - out_w) * 2:
        return _horizontal(_vertical(src, ybounds, yweights, 0), 0, out_h, out_w, kind)
    first = ybounds[0, 0]
    last = ybounds[out_h - 1, 0] + ybounds[out_h - 1, 1]
    return _vertical(_horizontal(src, first, last - first, out_w, kind), ybounds, yweights, first)

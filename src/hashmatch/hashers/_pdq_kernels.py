"""numba kernels for PDQ, bit-exact with ThreatExchange's C++ core.

Every floating-point step repeats the reference's own sequence of float32 operations
(luma as python-threatexchange's pdqhash binding computes it, in float64 then rounded;
the Jarosz box filter's running sums; the DCT's summation order; the quality metric's
truncations), so the bits match, not just the statistics. Speed comes from doing the
same operations in another order *across* independent rows or columns (which SIMD
can vectorise) and from skipping outputs the 64x64 decimation never reads, never from
reassociating a sum. Each kernel has a naive twin in ``tests/test_pdq_kernels.py``.
"""

from __future__ import annotations

import numpy as np
from .._jit import njit
from ._kernels import sorted_copy

@njit(cache=True, nogil=True)
def luma(rgb, out):  # (h, w, 3) uint8 C-contiguous, (>= h*w,) float32 -> (h, w) view of out
    """0.299 R + 0.587 G + 0.114 B in float64, rounded to float32 (pdqhash's numpy step)."""
    h, w, _ = rgb.shape
    flat = rgb.reshape(h * w * 3)  # one flat loop: the stride-3 loads vectorise
    for p in range(h * w):
        r = np.float64(flat[3 * p]) * 0.299
        g = np.float64(flat[3 * p + 1]) * 0.587
        b = np.float64(flat[3 * p + 2]) * 0.114
        out[p] = np.float32((r + g) + b)
    return out[: h * w].reshape(h, w)


@njit(cache=True, nogil=True)
def transpose(src, dst):  # (n, m) -> (m, n), both C-contiguous float32
    """Blocked transpose; the fixed 8x8 inner block lets LLVM emit register shuffles."""
    n, m = src.shape
    nb = n - n % 8
    mb = m - m % 8
    for i0 in range(0, nb, 8):
        for j0 in range(0, mb, 8):
            for j in range(8):
                for i in range(8):
                    dst[j0 + j, i0 + i] = src[i0 + i, j0 + j]
    for i in range(nb, n):
        for j in range(m):
            dst[j, i] = src[i, j]
    for i in range(nb):
        for j in range(mb, m):
            dst[j, i] = src[i, j]


@njit(cache=True, nogil=True)
def jarosz_window(old_size, new_size):
    """The reference's per-pass box width: ceil(old / (2 new))."""
    return (old_size + 2 * new_size - 1) // (2 * new_size)


@njit(cache=True, nogil=True)
def decimation_indices(n, out_size):
    """Input positions the decimation samples: int((i + 0.5) n / out), in float64."""
    idx = np.empty(out_size, dtype=np.int64)
    for i in range(out_size):
        idx[i] = np.int64(((i + 0.5) * n) / out_size)
    return idx


@njit(cache=True, nogil=True)
def _box_axis0(src, dst, window, out_row):
    """The reference's 1-D box filter down axis 0, for every column at once.

    Column j gets exactly box1DFloat's running float32 sum; the inner loops run across
    columns, so they vectorise without changing any column's order of operations.
    Output row ``o`` of the filter goes to ``dst[out_row[o]]``, or nowhere when -1.
    """
    n, m = src.shape
    half = (window + 2) // 2
    sums = np.zeros(m, dtype=np.float32)
    ri = 0
    li = 0
    o = 0
    count = 0
    for _ in range(half - 1):  # phase 1: accumulate, no output
        for j in range(m):
            sums[j] = sums[j] + src[ri, j]
        count += 1
        ri += 1
    for _ in range(window - half + 1):  # phase 2: grow the window, output
        count += 1
        div = np.float32(count)
        target = out_row[o]
        if target >= 0:
            for j in range(m):
                s = sums[j] + src[ri, j]
                sums[j] = s
                dst[target, j] = s / div
        else:
            for j in range(m):
                sums[j] = sums[j] + src[ri, j]
        ri += 1
        o += 1
    div = np.float32(count)
    for _ in range(n - window):  # phase 3: full window, add then subtract
        target = out_row[o]
        if target >= 0:
            for j in range(m):
                s = sums[j] + src[ri, j]
                s = s - src[li, j]
                sums[j] = s
                dst[target, j] = s / div
        else:
            for j in range(m):
                s = sums[j] + src[ri, j]
                sums[j] = s - src[li, j]
        ri += 1
        li += 1
        o += 1
    for _ in range(half - 1):  # phase 4: shrink the window, output
        count -= 1
        div = np.float32(count)
        target = out_row[o]
        if target >= 0:
            for j in range(m):
                s = sums[j] - src[li, j]
                sums[j] = s
                dst[target, j] = s / div
        else:
            for j in range(m):
                sums[j] = sums[j] - src[li, j]
        li += 1
        o += 1


ROW_BAND = 16
"""Rows filtered together by :func:`_box_rows` (one AVX-512 vector, two AVX2 ones)."""


@njit(cache=True, nogil=True)
def _box_rows(src, dst, window, col_slot, cols):
    """The reference's 1-D box filter along every row of ``src`` (h, w).

    A band of ROW_BAND rows at a time is transposed into a small buffer (it stays in
    cache), filtered down axis 0 by :func:`_box_axis0` (vectorised across the band's
    rows, each row's float32 sums in the reference's order) and transposed back: the
    same bits as transposing the whole image, filtering and transposing back, without
    two trips of the full image through memory.
    Output column ``o`` of the filter goes to ``dst[:, col_slot[o]]`` (nowhere when
    -1); with ``cols`` not empty, every column is filtered and ``dst[:, s]`` gets
    column ``cols[s]`` (repeats allowed, for images narrower than 64).
    """
    h, w = src.shape
    wide = w if cols.shape[0] > 0 else dst.shape[1]
    band_in = np.empty(w * ROW_BAND, dtype=np.float32)
    band_out = np.empty(wide * ROW_BAND, dtype=np.float32)
    for r0 in range(0, h, ROW_BAND):
        t = min(ROW_BAND, h - r0)
        tile = band_in[: w * t].reshape(w, t)
        transpose(src[r0 : r0 + t], tile)
        filtered = band_out[: wide * t].reshape(wide, t)
        _box_axis0(tile, filtered, window, col_slot)
        if cols.shape[0] > 0:
            for s in range(cols.shape[0]):
                for x in range(t):
                    dst[r0 + x, s] = filtered[cols[s], x]
        else:
            transpose(filtered, dst[r0 : r0 + t])


@njit(cache=True, nogil=True)
def jarosz_64(gray, a, b):  # (h, w) float32 C-contiguous, 2 x (>= h*w,) float32 -> (64, 64)
    """Two Jarosz x/y box passes, then the 64x64 centre decimation, as the reference.

    Column passes run down axis 0 (vectorised across columns); row passes on bands of
    rows transposed in cache (:func:`_box_rows`). The second pass only produces the 64
    columns, then the 64 rows, that the decimation reads. Same bits as filtering the
    whole image twice. ``a`` and ``b`` are scratch (reused across calls by the caller,
    which saves a page fault per 4 KiB of image); ``gray`` may be a view of ``a``.
    """
    h, w = gray.shape
    win_rows = jarosz_window(w, 64)  # window along each row
    win_cols = jarosz_window(h, 64)  # window along each column
    every_col = np.arange(w)
    every_row = np.arange(h)
    no_pick = np.empty(0, dtype=np.int64)
    cols = decimation_indices(w, 64)
    rows = decimation_indices(h, 64)
    ar = a[: h * w].reshape(h, w)
    br = b[: h * w].reshape(h, w)
    _box_rows(gray, br, win_rows, every_col, no_pick)  # pass 1, along rows
    _box_axis0(br, ar, win_cols, every_row)  # pass 1, along columns
    # pass 2, along rows, keeping the sampled columns (each filter output goes to one
    # slot, so when w < 64 repeats the columns are picked after filtering them all)
    narrow = np.empty((h, 64), dtype=np.float32)
    if w < 64:
        _box_rows(ar, narrow, win_rows, every_col, cols)
    else:
        col_slot = np.full(w, -1, dtype=np.int64)
        for s in range(64):
            col_slot[cols[s]] = s
        _box_rows(ar, narrow, win_rows, col_slot, no_pick)
    # pass 2, along columns, keeping the sampled rows
    out = np.empty((64, 64), dtype=np.float32)
    if h < 64:
        tall = np.empty((h, 64), dtype=np.float32)
        _box_axis0(narrow, tall, win_cols, every_row)
        for s in range(64):
            for x in range(64):
                out[s, x] = tall[rows[s], x]
    else:
        row_slot = np.full(h, -1, dtype=np.int64)
        for s in range(64):
            row_slot[rows[s]] = s
        _box_axis0(narrow, out, win_cols, row_slot)
    return out


@njit(cache=True, nogil=True)
def quality(block):  # (64, 64) float32 -> int in 0..100
    """The reference's gradient count: truncated float32 differences, scaled by 1/90."""
    total = 0
    hundred = np.float32(100.0)
    full = np.float32(255.0)
    for i in range(63):
        for j in range(64):
            d = np.int64(((block[i, j] - block[i + 1, j]) * hundred) / full)
            total += abs(d)
    for i in range(64):
        for j in range(63):
            d = np.int64(((block[i, j] - block[i, j + 1]) * hundred) / full)
            total += abs(d)
    q = total // 90
    return min(q, 100)


@njit(cache=True, nogil=True)
def dct_16(block, matrix):  # (64, 64) float32, (16, 64) float32 -> (16, 16) float32
    """B = D A D^T with the reference's float32 sums, each over k ascending.

    T = D A runs k outside j so the j loop vectorises; every T[i, j] still sees its
    64 terms in the reference's order.
    """
    t = np.zeros((16, 64), dtype=np.float32)
    for i in range(16):
        for k in range(64):
            d = matrix[i, k]
            for j in range(64):
                t[i, j] = t[i, j] + d * block[k, j]
    out = np.empty((16, 16), dtype=np.float32)
    for i in range(16):
        for j in range(16):
            s = np.float32(0.0)
            for k in range(64):
                s = s + t[i, k] * matrix[j, k]
            out[i, j] = s
    return out


@njit(cache=True, nogil=True)
def _rank_127(flat):
    """The 128th smallest of 256 values: the first value with at most 127 below it and
    more than 127 at or below it. Counting compares vectorise and do not branch, where
    a sort of 256 floats mispredicts about every other compare (9-12 us against 2.8 us a
    call, measured); a sort only when NaNs leave no such value. PDQ's fast path only:
    the exact path keeps the sort and compiles nothing more (0.09 s first compile)."""
    for i in range(256):
        v = flat[i]
        below = 0
        at_or_below = 0
        for j in range(256):
            below += np.int32(flat[j] < v)
            at_or_below += np.int32(flat[j] <= v)
        if below <= 127 < at_or_below:
            return v
    return sorted_copy(flat)[127]


@njit(cache=True, nogil=True, inline="always")
def _bits_above(flat, median):
    out = np.empty(256, dtype=np.bool_)
    for k in range(256):
        out[255 - k] = flat[k] > median
    return out


@njit(cache=True, nogil=True)
def bits_above_median(coeffs):  # (16, 16) float32 -> (256,) bool, most significant first
    """Bit k = coefficient k > the 128th smallest (Torben's median); bit 255 printed first."""
    flat = coeffs.ravel()
    return _bits_above(flat, sorted_copy(flat)[127])


@njit(cache=True, nogil=True)
def bits_above_median_counted(coeffs):
    """:func:`bits_above_median`, the median found by :func:`_rank_127` (same bits)."""
    flat = coeffs.ravel()
    return _bits_above(flat, _rank_127(flat))


@njit(cache=True, nogil=True)
def dihedral_coeffs(coeffs):  # (16, 16) -> (8, 16, 16)
    """The DCT of each rotation and mirror image, by sign flips and transposition.

    Order: orig, rot90 (counter-clockwise), rot180, rot270, flipx (top-bottom), flipy
    (left-right), flipp (transpose), flipm (anti-transpose). Frequency u+1 is odd
    exactly when u is even, and reversing an axis negates odd frequencies.
    """
    out = np.empty((8, 16, 16), dtype=np.float32)
    for i in range(16):
        for j in range(16):
            a = coeffs[i, j]
            ie = (i & 1) == 0
            je = (j & 1) == 0
            odd_sum = ((i + j) & 1) == 1
            out[0, i, j] = a
            out[1, j, i] = -a if je else a
            out[2, i, j] = -a if odd_sum else a
            out[3, j, i] = -a if ie else a
            out[4, i, j] = -a if ie else a
            out[5, i, j] = -a if je else a
            out[6, j, i] = a
            out[7, j, i] = -a if odd_sum else a
    return out


@njit(cache=True, nogil=True)
def pdq_coeffs(rgb, matrix, a, b):  # (h, w, 3) uint8, (16, 64), 2 x (>= h*w,) float32 scratch
    """The 16x16 DCT and quality of an RGB image; the caller handles sides under 5."""
    block = jarosz_64(luma(rgb, a), a, b)
    return dct_16(block, matrix), quality(block)


@njit(cache=True, nogil=True)
def resample_64(gray, row_first, row_weights, col_first, col_weights):  # -> (64, 64) float32
    """A reduced-scale image to PDQ's 64x64 by explicit weights (the fast, inexact path).

    Output (i, j) = sum_r sum_c row_weights[i, r'] gray[r, c] col_weights[j, c'] over
    the short runs that start at row_first[i] and col_first[j], in float64. The Python
    layer builds the weights so that they model, on the reduced pixels, the tent filter
    and sample centres that the exact path applies at full resolution.
    """
    h, w = gray.shape
    kc = col_weights.shape[1]
    kr = row_weights.shape[1]
    narrow = np.zeros((h, 64), dtype=np.float64)
    for r in range(h):
        for j in range(64):
            c0 = col_first[j]
            s = 0.0
            for k in range(kc):
                s += gray[r, c0 + k] * col_weights[j, k]
            narrow[r, j] = s
    out = np.empty((64, 64), dtype=np.float32)
    for i in range(64):
        r0 = row_first[i]
        for j in range(64):
            s = 0.0
            for k in range(kr):
                s += narrow[r0 + k, j] * row_weights[i, k]
            out[i, j] = np.float32(s)
    return out


@njit(cache=True, nogil=True)
def pdq_coeffs_resampled(rgb, matrix, a, row_first, row_weights, col_first, col_weights):
    """Like :func:`pdq_coeffs`, with :func:`resample_64` in place of the Jarosz passes."""
    block = resample_64(luma(rgb, a), row_first, row_weights, col_first, col_weights)
    return dct_16(block, matrix), quality(block)


@njit(cache=True, nogil=True)
def grey_f32(grey, out):  # (h, w) uint8, (>= h*w,) float32 -> (h, w) view of out
    """Grey levels as float32: JPEG's luma channel is PDQ's luma (the same weights)."""
    h, w = grey.shape
    for i in range(h):
        for j in range(w):
            out[i * w + j] = np.float32(grey[i, j])
    return out[: h * w].reshape(h, w)


@njit(cache=True, nogil=True)
def pdq_coeffs_resampled_grey(grey, matrix, a, row_first, row_weights, col_first, col_weights):
    """:func:`pdq_coeffs_resampled` of a grey (luma-only) reduced decode."""
    block = resample_64(grey_f32(grey, a), row_first, row_weights, col_first, col_weights)
    return dct_16(block, matrix), quality(block)


@njit(cache=True, nogil=True)
def dct_model_64(planes, row_first, row_w0, row_w1, col_first, col_w0, col_w1):  # -> (64, 64) float32
    """PDQ's 64x64 filtered samples from a JPEG's block coefficients (the fast path).

    ``planes`` (3, block rows, block columns): each luma block's DC and first
    horizontal and vertical harmonics, dequantised. A block is modelled as those three
    cosines; ``*_w0`` weigh a block's constant part and ``*_w1`` its first harmonic
    under the full-resolution filter and decimation, per output row or column, over
    the short runs of blocks that start at ``*_first``. Sums in float64, plus 128
    (JPEG's level shift).
    """
    nbc = planes.shape[2]
    kc = col_w0.shape[1]
    kr = row_w0.shape[1]
    # Rows first, over every block column at once (contiguous, so it vectorises): the
    # parts constant along x (DC, vertical harmonic) and the horizontal harmonic.
    even = np.zeros((64, nbc), dtype=np.float64)
    odd = np.zeros((64, nbc), dtype=np.float64)
    for i in range(64):
        r0 = row_first[i]
        for k in range(kr):
            a = row_w0[i, k]
            b = row_w1[i, k]
            p0 = planes[0, r0 + k]
            p1 = planes[1, r0 + k]
            p2 = planes[2, r0 + k]
            for c in range(nbc):
                even[i, c] += a * p0[c] + b * p2[c]
                odd[i, c] += a * p1[c]
    # Then columns, 64 rows at a time (on the transposes, contiguous again).
    even_t = even.T.copy()
    odd_t = odd.T.copy()
    out_t = np.full((64, 64), 128.0, dtype=np.float64)
    for j in range(64):
        c0 = col_first[j]
        for k in range(kc):
            a = col_w0[j, k]
            b = col_w1[j, k]
            e = even_t[c0 + k]
            o = odd_t[c0 + k]
            for i in range(64):
                out_t[j, i] += a * e[i] + b * o[i]
    out = np.empty((64, 64), dtype=np.float32)
    for i in range(64):
        for j in range(64):
            out[i, j] = np.float32(out_t[j, i])
    return out


@njit(cache=True, nogil=True)
def pdq_coeffs_dct_model(planes, matrix, row_first, row_w0, row_w1, col_first, col_w0, col_w1):
    """Like :func:`pdq_coeffs`, with :func:`dct_model_64` in place of the Jarosz passes."""
    block = dct_model_64(planes, row_first, row_w0, row_w1, col_first, col_w0, col_w1)
    return dct_16(block, matrix), quality(block)

"""The PDQ kernels against naive twins written straight from the reference's structure.

The twins filter the whole image (all four box passes, every output), then decimate,
sum the DCT term by term and take Torben's median, all in numpy float32 so each
operation rounds as the C++ does. The kernels reorder work across rows and skip
unused outputs; these tests pin that the bits do not move.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hashmatch.hashers._kernels import sorted_copy
from hashmatch.hashers._pdq_kernels import (
    _rank_127,
    bits_above_median,
    bits_above_median_counted,
    dct_16,
    decimation_indices,
    dihedral_coeffs,
    jarosz_64,
    jarosz_window,
    luma,
    quality,
    transpose,
)
from hashmatch.hashers.pdq import _dct_matrix

F32 = np.float32
# Under NUMBA_DISABLE_JIT=1 (the coverage run) the kernels are plain Python: photo sizes
# would take minutes there, the small hypothesis cases still cover every line.
needs_jit = pytest.mark.skipif(
    os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="photo-sized arrays are too slow without the JIT"
)


# -- naive twins -----------------------------------------------------------------------
def naive_luma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[:, :, c].astype(np.float64) for c in range(3))
    return ((r * 0.299 + g * 0.587) + b * 0.114).astype(F32)


def naive_box_1d(vec: np.ndarray, window: int) -> np.ndarray:
    """box1DFloat, one running float32 sum, four phases; ``vec`` may be 2-D (columns run in parallel)."""
    n = vec.shape[0]
    half = (window + 2) // 2
    out = np.empty_like(vec)
    total = np.zeros(vec.shape[1:], dtype=F32)
    size = 0
    ri = li = oi = 0
    for _ in range(half - 1):
        total = total + vec[ri]
        size += 1
        ri += 1
    for _ in range(window - half + 1):
        total = total + vec[ri]
        size += 1
        out[oi] = total / F32(size)
        ri += 1
        oi += 1
    for _ in range(n - window):
        total = total + vec[ri]
        total = total - vec[li]
        out[oi] = total / F32(size)
        li += 1
        ri += 1
        oi += 1
    for _ in range(half - 1):
        total = total - vec[li]
        size -= 1
        out[oi] = total / F32(size)
        li += 1
        oi += 1
    return out


def naive_jarosz_64(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    along_rows = (w + 127) // 128
    along_cols = (h + 127) // 128
    buf = gray.astype(F32)
    for _ in range(2):
        buf = naive_box_1d(buf.T, along_rows).T  # along each row
        buf = naive_box_1d(buf, along_cols)  # along each column
    rows = [int(((i + 0.5) * h) / 64) for i in range(64)]
    cols = [int(((j + 0.5) * w) / 64) for j in range(64)]
    return np.ascontiguousarray(buf[np.ix_(rows, cols)])


def naive_quality(block: np.ndarray) -> int:
    total = 0
    for i in range(63):
        for j in range(64):
            total += abs(int((F32(block[i, j] - block[i + 1, j]) * F32(100)) / F32(255)))
    for i in range(64):
        for j in range(63):
            total += abs(int((F32(block[i, j] - block[i, j + 1]) * F32(100)) / F32(255)))
    return min(total // 90, 100)


def naive_dct(block: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    t = np.zeros((16, 64), dtype=F32)
    for k in range(64):  # term by term, k ascending, float32 rounding each time
        t = t + matrix[:, k : k + 1] * block[k : k + 1, :]
    out = np.zeros((16, 16), dtype=F32)
    for k in range(64):
        out = out + t[:, k : k + 1] * matrix[:, k][None, :]
    return out


def torben_median(values: list[float]) -> float:
    """Torben's selection as the reference runs it (for n = 256: the 128th smallest)."""
    n = len(values)
    lo, hi = min(values), max(values)
    while True:
        guess = (lo + hi) / 2
        less = sum(v < guess for v in values)
        greater = sum(v > guess for v in values)
        equal = n - less - greater
        max_lt = max([v for v in values if v < guess], default=lo)
        min_gt = min([v for v in values if v > guess], default=hi)
        if less <= (n + 1) // 2 and greater <= (n + 1) // 2:
            break
        if less > greater:
            hi = max_lt
        else:
            lo = min_gt
    if less >= (n + 1) // 2:
        return max_lt
    if less + equal >= (n + 1) // 2:
        return guess
    return min_gt


def naive_bits(coeffs: np.ndarray) -> list[bool]:
    flat = [float(v) for v in coeffs.ravel()]
    median = torben_median(flat)
    return [flat[k] > median for k in reversed(range(256))]  # bit 255 first


# -- strategies ------------------------------------------------------------------------
def rgb_arrays(max_side: int = 300):
    sides = st.one_of(st.integers(1, 8), st.integers(60, 70), st.integers(120, max_side))
    shapes = st.tuples(sides, sides, st.just(3))
    return shapes.flatmap(lambda s: arrays(np.uint8, s, elements=st.integers(0, 255)))


def gray_arrays():
    sides = st.one_of(st.integers(1, 8), st.integers(60, 70), st.integers(126, 400))
    return st.tuples(sides, sides, st.integers(0, 2**32 - 1), st.booleans()).map(_gray)


def _gray(spec):
    h, w, seed, flat = spec
    rng = np.random.default_rng(seed)
    if flat:
        return np.full((h, w), F32(rng.integers(0, 256)), dtype=F32)
    return (rng.random((h, w)) * 255).astype(F32)


# -- tests -------------------------------------------------------------------------------
@settings(max_examples=40)
@given(rgb_arrays())
def test_luma_equals_naive(rgb):
    h, w, _ = rgb.shape
    scratch = np.full(h * w + 7, np.nan, dtype=F32)  # larger than needed, as reused buffers are
    assert np.array_equal(luma(rgb, scratch), naive_luma(rgb))


@given(st.integers(1, 5000), st.integers(1, 128))
def test_jarosz_window_equals_formula(old, new):
    assert jarosz_window(old, new) == math.ceil(old / (2 * new))


@given(st.integers(1, 5000))
def test_decimation_indices_equal_formula(n):
    idx = decimation_indices(n, 64)
    assert idx.tolist() == [int(((i + 0.5) * n) / 64) for i in range(64)]
    assert 0 <= idx.min() and idx.max() < n


@given(arrays(F32, st.tuples(st.integers(1, 40), st.integers(1, 40)), elements=st.floats(-1e3, 1e3, width=32)))
def test_transpose_equals_numpy(src):
    dst = np.empty(src.shape[::-1], dtype=F32)
    transpose(src, dst)
    assert np.array_equal(dst, src.T)


def _jarosz(gray: np.ndarray) -> np.ndarray:
    """jarosz_64 with oversized, dirty scratch and the input inside the first buffer."""
    h, w = gray.shape
    a = np.full(h * w + 13, np.nan, dtype=F32)
    b = np.full(h * w + 13, np.nan, dtype=F32)
    a[: h * w] = gray.ravel()
    return jarosz_64(a[: h * w].reshape(h, w), a, b)


@settings(max_examples=30)
@given(gray_arrays())
def test_jarosz_64_equals_full_filter_then_decimate(gray):
    assert np.array_equal(_jarosz(gray), naive_jarosz_64(gray))


@needs_jit
def test_jarosz_64_photo_sizes_equal_naive(rng):
    for h, w in [(768, 1024), (1004, 1600), (64, 64), (5, 5), (129, 257)]:
        gray = (rng.random((h, w)) * 255).astype(F32)
        assert np.array_equal(_jarosz(gray), naive_jarosz_64(gray)), (h, w)


@settings(max_examples=30)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["random", "flat", "ramp", "extreme"]))
def test_quality_equals_naive(seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "random":
        block = (rng.random((64, 64)) * 255).astype(F32)
    elif kind == "flat":
        block = np.full((64, 64), F32(rng.random() * 255), dtype=F32)
    elif kind == "ramp":
        block = np.add.outer(np.arange(64), np.arange(64)).astype(F32) * F32(rng.random() * 4)
    else:  # alternating 0/255: the cap of 100
        block = (np.indices((64, 64)).sum(0) % 2 * 255).astype(F32)
    q = quality(block)
    assert q == naive_quality(block)
    assert 0 <= q <= 100


def test_quality_flat_zero_and_checkerboard_full():
    assert quality(np.full((64, 64), 10, F32)) == 0
    assert quality((np.indices((64, 64)).sum(0) % 2 * 255).astype(F32)) == 100


@settings(max_examples=25)
@given(st.integers(0, 2**32 - 1))
def test_dct_16_equals_naive(seed):
    block = (np.random.default_rng(seed).random((64, 64)) * 255).astype(F32)
    assert np.array_equal(dct_16(block, _dct_matrix()), naive_dct(block, _dct_matrix()))


def test_dct_matrix_is_reference_formula():
    matrix = _dct_matrix()
    scale = float(F32(math.sqrt(2 / 64)))
    for i in (0, 7, 15):
        for j in (0, 31, 63):
            assert matrix[i, j] == F32(scale * math.cos(math.pi / 128 * (i + 1) * (2 * j + 1)))


@settings(max_examples=40)
@given(
    st.one_of(
        arrays(F32, (16, 16), elements=st.floats(-1e4, 1e4, width=32)),
        arrays(F32, (16, 16), elements=st.sampled_from([F32(-1), F32(0), F32(2)])),  # many ties
    )
)
def test_bits_above_median_equals_torben(coeffs):
    assert bits_above_median(coeffs).tolist() == naive_bits(coeffs)
    assert bits_above_median_counted(coeffs).tolist() == naive_bits(coeffs)


@settings(max_examples=60)
@given(
    st.one_of(
        arrays(F32, 256, elements=st.floats(-1e4, 1e4, width=32)),
        arrays(F32, 256, elements=st.sampled_from([F32(-1), F32(-0.0), F32(0), F32(2)])),  # ties, signed zeros
        arrays(F32, 256, elements=st.floats(width=32, allow_nan=True)),  # NaNs: the sort fallback
    )
)
def test_rank_127_is_the_128th_smallest(values):
    # NaNs sort last, so up to 128 of them leave a number as the 128th smallest; with more,
    # the value is what the Shell sort (the code before the counting) gives.
    expected = np.sort(values)[127] if np.isnan(values).sum() <= 128 else sorted_copy(values)[127]
    assert np.array_equal(_rank_127(values), expected, equal_nan=True)


def test_bits_above_median_edge_cases():
    assert not bits_above_median(np.zeros((16, 16), F32)).any()  # all equal: no bit
    ramp = np.arange(256, dtype=F32).reshape(16, 16)
    bits = bits_above_median(ramp)
    assert bits.sum() == 128  # distinct values: exactly half
    assert bits[:128].all() and not bits[128:].any()  # top coefficients are the high bits


def naive_dihedral(a: np.ndarray) -> np.ndarray:
    """Sign patterns of the reference's comment table: reversing an axis negates odd frequencies."""
    row_odd = (np.arange(16) % 2 == 0)[:, None]  # u even <=> frequency u+1 odd
    col_odd = (np.arange(16) % 2 == 0)[None, :]
    flip_rows = np.where(row_odd, -a, a)  # reverse the vertical axis
    flip_cols = np.where(col_odd, -a, a)
    both = np.where(row_odd ^ col_odd, -a, a)
    return np.stack([a, flip_cols.T, both, flip_rows.T, flip_rows, flip_cols, a.T, both.T])


@given(arrays(F32, (16, 16), elements=st.floats(-1e3, 1e3, width=32)))
def test_dihedral_coeffs_equal_naive(coeffs):
    assert np.array_equal(dihedral_coeffs(coeffs), naive_dihedral(coeffs))


def test_dihedral_coeffs_equal_dct_of_turned_block(rng):
    """The DCT of the rotated/mirrored 64x64 block, to rounding: pins each variant's meaning."""
    block = (rng.random((64, 64)) * 255).astype(F32)
    turned = [
        block,
        np.rot90(block, 1),  # rot90: counter-clockwise
        np.rot90(block, 2),
        np.rot90(block, 3),
        block[::-1, :],  # flipx: top-bottom
        block[:, ::-1],  # flipy: left-right
        block.T,  # flipp: transpose
        np.rot90(block, 2).T,  # flipm: anti-transpose
    ]
    variants = dihedral_coeffs(dct_16(block, _dct_matrix()))
    for k, t in enumerate(turned):
        direct = dct_16(np.ascontiguousarray(t), _dct_matrix())
        assert np.allclose(variants[k], direct, atol=1e-2), k


# -- the reduced-decode path (inexact by design) -----------------------------------------------
def naive_resample_64(gray, row_first, row_weights, col_first, col_weights):
    h = gray.shape[0]
    narrow = [[0.0] * 64 for _ in range(h)]
    for r in range(h):
        for j in range(64):
            s = 0.0
            for k in range(col_weights.shape[1]):
                s += float(gray[r, col_first[j] + k]) * float(col_weights[j, k])
            narrow[r][j] = s
    out = np.empty((64, 64), dtype=F32)
    for i in range(64):
        for j in range(64):
            s = 0.0
            for k in range(row_weights.shape[1]):
                s += narrow[row_first[i] + k][j] * float(row_weights[i, k])
            out[i, j] = F32(s)
    return out


@settings(max_examples=15)
@given(st.integers(5, 48), st.integers(5, 48), st.sampled_from([2, 4, 8]), st.integers(0, 2**32 - 1))
def test_resample_64_equals_naive(h, w, scale, seed):
    from hashmatch.hashers._pdq_kernels import resample_64
    from hashmatch.hashers.pdq import _resample_weights

    gray = (np.random.default_rng(seed).random((h, w)) * 255).astype(F32)
    rf, rw = _resample_weights(h, scale)
    cf, cw = _resample_weights(w, scale)
    assert np.array_equal(resample_64(gray, rf, rw, cf, cw), naive_resample_64(gray, rf, rw, cf, cw))


@given(st.integers(5, 3000), st.sampled_from([1, 2, 4, 8]))
def test_resample_weights_are_a_partition_of_unity_inside_the_image(size, scale):
    from hashmatch.hashers.pdq import _resample_weights

    first, weights = _resample_weights(size, scale)
    assert first.shape == (64,) and weights.shape[0] == 64
    assert (first >= 0).all() and (first + weights.shape[1] <= size).all()
    assert (weights >= 0).all()
    assert np.allclose(weights.sum(axis=1), 1.0)


@needs_jit
def test_resample_at_full_scale_is_close_to_exact(rng):
    """The weights model the exact filter: at scale 1 the hash is (nearly) the exact one."""
    from PIL import Image

    from hashmatch.hashers._pdq_kernels import resample_64
    from hashmatch.hashers.pdq import _resample_weights

    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    gray = naive_luma(np.asarray(coarse.resize((1024, 768), Image.Resampling.BICUBIC)))
    rf, rw = _resample_weights(768, 1)
    cf, cw = _resample_weights(1024, 1)
    model = resample_64(gray, rf, rw, cf, cw)
    exact = _jarosz(gray)
    assert np.abs(model - exact).max() < 1.0  # grey levels, of 0..255
    bits_model = bits_above_median(dct_16(model, _dct_matrix()))
    bits_exact = bits_above_median(dct_16(exact, _dct_matrix()))
    assert (bits_model != bits_exact).sum() <= 4

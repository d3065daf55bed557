"""The imagehash-family kernels against naive twins."""

from __future__ import annotations

import math

import numpy as np
import scipy.fftpack
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hashmatch.hashers._kernels import (
    above_mean,
    above_median,
    dct_basis,
    dct_low_above_median,
    dihedral_above_median,
    median,
    right_brighter,
    sorted_copy,
)


def pixel_arrays(min_side=1, max_side=24):
    shapes = st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side))
    return shapes.flatmap(lambda s: arrays(np.uint8, s, elements=st.integers(0, 255)))


@given(pixel_arrays())
def test_above_mean_equals_naive(pixels):
    values = pixels.tolist()
    mean = sum(map(sum, values)) / pixels.size
    expected = [[v > mean for v in row] for row in values]
    assert above_mean(pixels).tolist() == expected


@given(pixel_arrays(min_side=2))
def test_right_brighter_equals_naive(pixels):
    expected = [[row[j + 1] > row[j] for j in range(len(row) - 1)] for row in pixels.tolist()]
    assert right_brighter(pixels).tolist() == expected


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=64))
def test_median_equals_numpy(values):
    arr = np.array(values)
    assert median(arr) == np.median(arr)


@given(arrays(np.float64, st.integers(1, 40), elements=st.floats(-1e3, 1e3)))
def test_above_median_equals_naive(values):
    assert above_median(values).tolist() == (values > np.median(values)).tolist()


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
def test_dct_basis_equals_formula(nk):
    n, k = nk
    basis = dct_basis(n, k)
    for u in range(k):
        for x in range(n):
            assert math.isclose(basis[u, x], 2 * math.cos(math.pi * u * (2 * x + 1) / (2 * n)), abs_tol=1e-12)


@settings(max_examples=60)
@given(st.sampled_from([(8, 32), (4, 16), (6, 24), (16, 64)]), st.integers(0, 2**32 - 1), st.booleans())
def test_dct_low_above_median_equals_scipy_unless_flagged(sizes, seed, flat):
    k, n = sizes
    rng = np.random.default_rng(seed)
    pixels = np.full((n, n), rng.integers(0, 256), np.uint8) if flat else rng.integers(0, 256, (n, n), dtype=np.uint8)
    bits, ambiguous = dct_low_above_median(pixels, dct_basis(n, k))
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:k, :k]
    if flat:
        assert ambiguous  # every AC coefficient ties the median: the caller must use scipy
    else:
        assert not ambiguous
        assert bits.tolist() == (dct > np.median(dct)).tolist()


@settings(max_examples=60)
@given(st.sampled_from([(8, 32), (4, 16), (6, 24), (16, 64)]), st.integers(0, 2**32 - 1))
def test_dihedral_above_median_equals_hashing_each_turned_image(sizes, seed):
    from hashmatch.hashers.imagehash_compat import _dihedral_views

    k, n = sizes
    pixels = np.random.default_rng(seed).integers(0, 256, (n, n), dtype=np.uint8)
    basis = dct_basis(n, k)
    bits, ambiguous = dihedral_above_median(pixels, basis)
    for i, view in enumerate(_dihedral_views(pixels)):
        expected, expected_ambiguous = dct_low_above_median(np.ascontiguousarray(view), basis)
        assert not ambiguous[i] and not expected_ambiguous
        assert bits[i].tolist() == expected.tolist(), i


def test_dihedral_above_median_flags_flat_images():
    _, ambiguous = dihedral_above_median(np.full((32, 32), 77, np.uint8), dct_basis(32, 8))
    assert ambiguous.all()


@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), max_size=800),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_sorted_copy_matches_sorted(values: list[float], dtype: type) -> None:
    arr = np.array(values, dtype=dtype)
    out = sorted_copy(arr)
    assert out.tolist() == sorted(arr.tolist())
    assert arr.tolist() == np.array(values, dtype=dtype).tolist()  # the input is left alone


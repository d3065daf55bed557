"""The 64-bit-only index kernels (``index/_kernels64.py``) against naive list scans."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.hashes import HashBatch
from hashmatch.index import Flat, _kernels64, flat
from hashmatch.index._kernels64 import _BLOCK_ROWS

from .test_index_kernels import clustered_words, naive_range_fast, run_chunks


def test_sliced_planes_layout() -> None:
    rng = np.random.default_rng(5)
    n = _BLOCK_ROWS + 70
    words = rng.integers(0, 2**64 - 1, size=(n, 1), dtype=np.uint64, endpoint=True)
    planes = _kernels64.sliced_planes(words)
    lanes = planes.shape[1] // 64
    assert planes.shape == (2, 64 * lanes) and 64 * lanes == _BLOCK_ROWS
    for row in (0, 63, 64, _BLOCK_ROWS - 1, _BLOCK_ROWS, n - 1):
        b, rest = divmod(row, _BLOCK_ROWS)
        lane, i = divmod(rest, 64)
        value = int(words[row, 0])
        for j in range(64):
            assert (int(planes[b, j * lanes + lane]) >> i) & 1 == (value >> j) & 1
    # padding rows (past n) are zero in every plane
    assert not int(planes[1, 63 * lanes + 1]) >> 6


def test_prefilter_units_bounds_false_survivors() -> None:
    for r in range(64):
        units = _kernels64.prefilter_units(r)
        assert units == 0 or 3 <= units <= 6
        if units:
            bits = 8 * units
            p = sum(math.comb(bits, k) for k in range(r + 1)) / 2.0**bits
            assert _BLOCK_ROWS * p <= 0.1
    assert _kernels64.prefilter_units(8) == 5
    assert _kernels64.prefilter_units(40) == 0


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from([0, 1, 63, 64, 65, _BLOCK_ROWS - 1, _BLOCK_ROWS, _BLOCK_ROWS + 1, 2 * _BLOCK_ROWS + 300]),
    clustered=st.booleans(),
    r=st.one_of(st.integers(0, 12), st.integers(13, 63)),
    parallel=st.booleans(),
    nchunks=st.integers(1, 3),
)
def test_sliced_query_matches_list_scan(
    seed: int, n: int, clustered: bool, r: int, parallel: bool, nchunks: int
) -> None:
    """Exact for every radius the kernel takes, around lane and block boundaries, with
    removed rows, zero rows (what padding holds) and duplicates."""
    rng = np.random.default_rng(seed)
    words = (clustered_words(rng, n, 1, flips=10) if clustered
             else rng.integers(0, 2**64 - 1, size=(n, 1), dtype=np.uint64, endpoint=True))
    alive = (rng.random(n) > 0.1).astype(np.uint8)
    picks = words[rng.integers(0, n, 5)] if n else np.zeros((0, 1), np.uint64)
    queries = np.ascontiguousarray(np.concatenate([picks, clustered_words(rng, 5, 1, flips=10),
                                                   np.zeros((1, 1), np.uint64)]))
    kernel = _kernels64.sliced_query_parallel if parallel else _kernels64.sliced_query
    units = _kernels64.prefilter_units(r)

    def with_units(planes, words, alive, queries, bounds, r, *out):  # type: ignore[no-untyped-def]
        kernel(planes, words, alive, queries, bounds, r, units, *out)

    before = (_kernels64.sliced_planes(words), words, alive)
    got, _ = run_chunks(with_units, before, queries, r, nchunks, max(1, n) * len(queries))
    assert got == naive_range_fast(words, alive, queries, r)


def test_sliced_query_counts_past_capacity() -> None:
    """A chunk with more matches than its slice holds still returns the true count."""
    words = np.zeros((300, 1), np.uint64)
    alive = np.ones(300, np.uint8)
    planes = _kernels64.sliced_planes(words)
    out = (np.empty(10, np.int64), np.empty(10, np.int64), np.empty(10, np.int32))
    count = _kernels64.sliced_chunk(planes, words, alive, words[:2], 0, 2, 0, _kernels64.prefilter_units(0),
                                    *out, 0, 10)
    assert count == 600
    assert out[1].tolist() == list(range(10))


@pytest.mark.parametrize("r", [0, 5, 8, 20, 63, 64])
def test_flat_uses_sliced_scan_without_vector_popcount(monkeypatch: pytest.MonkeyPatch, r: int) -> None:
    """The AVX2 choice, forced on any host: same answers as the row-order scan."""
    rng = np.random.default_rng(r)
    words = clustered_words(rng, 3000, 1, flips=12)
    batch = HashBatch(words, algorithm="t", bits=64)
    queries = HashBatch(np.concatenate([words[:20], clustered_words(rng, 20, 1)]), algorithm="t", bits=64)
    ids = rng.permutation(3000) * 7
    monkeypatch.setattr(flat, "vector_popcount", lambda: True)
    plain = Flat.build(batch, ids)
    monkeypatch.setattr(flat, "vector_popcount", lambda: False)
    sliced = Flat.build(batch, ids)
    assert plain._planes is None and sliced._planes is not None
    assert sliced.nbytes == plain.nbytes + sliced._planes.nbytes
    sliced.remove(ids[:50])
    plain.remove(ids[:50])
    a, b = plain.query(queries, r), sliced.query(queries, r)
    assert len(a) > 0
    assert a.query_index.tolist() == b.query_index.tolist()
    assert a.ids.tolist() == b.ids.tolist()
    assert a.distances.tolist() == b.distances.tolist()

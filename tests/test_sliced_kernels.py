"""The bit-sliced Flat scan (``index/_sliced_kernels.py``) against naive list scans."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.hashes import HashBatch
from hashmatch.index import Flat, _sliced_kernels, flat
from hashmatch.index._sliced_kernels import _BLOCK_ROWS, _LANES, _MAX_ROUNDS

from .test_index_kernels import clustered_words, naive_range_fast, run_chunks

# Without the JIT (the coverage run) the kernels are plain Python: fewer, smaller cases.
_NO_JIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
_SIZES = [0, 1, 63, 64, 65, 700] + ([] if _NO_JIT else [_BLOCK_ROWS - 1, _BLOCK_ROWS, _BLOCK_ROWS + 1,
                                                        2 * _BLOCK_ROWS + 300])


def _words(rng: np.random.Generator, n: int, nw: int, clustered: bool) -> np.ndarray:
    if clustered:
        return clustered_words(rng, n, nw, flips=6 * nw)
    return rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True)


def test_sliced_planes_layout() -> None:
    rng = np.random.default_rng(5)
    n = _BLOCK_ROWS + 70 if not _NO_JIT else 200
    words = rng.integers(0, 2**64 - 1, size=(n, 2), dtype=np.uint64, endpoint=True)
    planes = _sliced_kernels.sliced_planes(words)
    assert planes.shape == ((n + _BLOCK_ROWS - 1) // _BLOCK_ROWS, 128 * 2 * _LANES)
    for row in sorted({0, 63, 64, n - 1, min(n - 1, _BLOCK_ROWS - 1), min(n - 1, _BLOCK_ROWS)}):
        b, rest = divmod(row, _BLOCK_ROWS)
        lane, i = divmod(rest, 64)
        value = int(words[row, 0]) | int(words[row, 1]) << 64  # bit j of word j // 64, least significant first
        for pair in range(64):
            own = (value >> (2 * pair)) & 3
            for c in range(4):
                bit = (int(planes[b, (4 * pair + c) * _LANES + lane]) >> i) & 1
                assert bit == (c == own)
    # padding rows (past n) are zero rows: only the "00" plane of each pair is set
    b, rest = divmod(n, _BLOCK_ROWS)
    lane, i = divmod(rest, 64)
    assert (int(planes[b, 4 * 5 * _LANES + lane]) >> i) & 1 == 1
    assert (int(planes[b, (4 * 5 + 3) * _LANES + lane]) >> i) & 1 == 0


def test_sliced_plan_fits_the_row_and_the_counter() -> None:
    for nw in (1, 2, 3, 4, 5, 8):
        for r in range(0, 64 * nw + 1):
            plan = _sliced_kernels.sliced_plan(r, nw)
            if plan is None:
                continue
            rounds, group = plan
            assert 1 <= rounds <= _MAX_ROUNDS and group in (1, 2)
            assert 8 * rounds * group <= 32 * nw  # pairs the row has
            assert 8 * rounds > r  # the bound can reject a row
    # the targets' cases: two rounds of 4-bit groups at 64 bits and r = 8; 256-bit PDQ at r = 31
    assert _sliced_kernels.sliced_plan(8, 1) == (2, 2)
    assert _sliced_kernels.sliced_plan(31, 4) == (6, 2)
    assert _sliced_kernels.sliced_plan(40, 1) is None  # the bound prunes nothing: row order


@st.composite
def _plans(draw: st.DrawFn) -> tuple[int, int, int, int]:
    """Word count, radius and any plan the kernel takes (not only the chosen ones):
    exactness must not depend on which groups a query counts."""
    nw = draw(st.integers(1, 5))
    group = draw(st.sampled_from([1, 2]))
    rounds = draw(st.integers(1, min(_MAX_ROUNDS, 32 * nw // (8 * group))))
    r = draw(st.one_of(st.integers(0, 8 * rounds + 2), st.integers(0, 64 * nw)))
    return nw, r, rounds, group


@settings(max_examples=8 if _NO_JIT else 40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from(_SIZES),
    plan=_plans(),
    clustered=st.booleans(),
    parallel=st.booleans(),
    nchunks=st.integers(1, 3),
)
def test_sliced_query_matches_list_scan(
    seed: int, n: int, plan: tuple[int, int, int, int], clustered: bool, parallel: bool, nchunks: int
) -> None:
    """Exact for every plan and radius (including radii the bound cannot prune, where
    every row is checked), around lane and block boundaries, with removed rows, zero
    rows (what padding holds), duplicates and queries near rows."""
    nw, r, rounds, group = plan
    rng = np.random.default_rng(seed)
    words = _words(rng, n, nw, clustered)
    alive = (rng.random(n) > 0.1).astype(np.uint8)
    picks = words[rng.integers(0, n, 5)] if n else np.zeros((0, nw), np.uint64)
    near = picks.copy()
    for row in near:  # about r bits away: the bound's edge
        for p in rng.choice(64 * nw, size=min(64 * nw, r), replace=False):
            row[p // 64] ^= np.uint64(1) << np.uint64(p % 64)
    queries = np.ascontiguousarray(np.concatenate([picks, near, clustered_words(rng, 4, nw, flips=8),
                                                   np.zeros((1, nw), np.uint64)]))
    kernel = _sliced_kernels.sliced_query_parallel if parallel else _sliced_kernels.sliced_query

    def with_plan(planes, words, alive, queries, bounds, r, *out):  # type: ignore[no-untyped-def]
        kernel(planes, words, alive, queries, bounds, r, rounds, group, *out)

    before = (_sliced_kernels.sliced_planes(words), words, alive)
    got, _ = run_chunks(with_plan, before, queries, r, nchunks, max(1, n) * len(queries))
    assert got == naive_range_fast(words, alive, queries, r)


def test_sliced_query_counts_past_capacity() -> None:
    """A chunk with more matches than its slice holds still returns the true count."""
    words = np.zeros((300, 1), np.uint64)
    alive = np.ones(300, np.uint8)
    planes = _sliced_kernels.sliced_planes(words)
    out = (np.empty(10, np.int64), np.empty(10, np.int64), np.empty(10, np.int32))
    count = _sliced_kernels.sliced_chunk(planes, words, alive, words[:2], 0, 2, 0, 1, 2, *out, 0, 10)
    assert count == 600
    assert out[1].tolist() == list(range(10))


@pytest.mark.parametrize(("bits", "r"), [(64, 0), (64, 5), (64, 8), (64, 12), (64, 20), (64, 64),
                                         (128, 15), (256, 31), (256, 60), (256, 256)])
def test_flat_uses_sliced_scan_without_vector_popcount(monkeypatch: pytest.MonkeyPatch, bits: int, r: int) -> None:
    """The AVX2 choice, forced on any host: same answers as the row-order scan, for
    radii the sliced plan takes and radii it leaves to the row-order scan."""
    nw = bits // 64
    rng = np.random.default_rng(r + bits)
    words = clustered_words(rng, 600 if _NO_JIT else 3000, nw, flips=3 * nw)
    n = len(words)
    batch = HashBatch(words, algorithm="t", bits=bits)
    queries = HashBatch(np.concatenate([words[:20], clustered_words(rng, 20, nw)]), algorithm="t", bits=bits)
    ids = rng.permutation(n) * 7
    monkeypatch.setattr(flat, "vector_popcount", lambda: True)
    monkeypatch.setattr(flat, "wide_vectors", lambda: True)
    plain = Flat.build(batch, ids)
    monkeypatch.setattr(flat, "vector_popcount", lambda: False)
    sliced = Flat.build(batch, ids)
    assert plain._planes is None and sliced._planes is not None and sliced._blocks is None
    blocks = 0 if plain._blocks is None else plain._blocks.nbytes
    assert sliced.nbytes == plain.nbytes - blocks + sliced._planes.nbytes
    sliced.remove(ids[:50])
    plain.remove(ids[:50])
    a, b = plain.query(queries, r), sliced.query(queries, r)
    assert len(a) > 0
    assert a.query_index.tolist() == b.query_index.tolist()
    assert a.ids.tolist() == b.ids.tolist()
    assert a.distances.tolist() == b.distances.tolist()


@pytest.mark.parametrize(("cpu", "features", "sliced64", "sliced256"), [
    ("haswell", {"avx2"}, True, True),
    ("skylake-avx512", {"avx2", "avx512f", "avx512bw"}, True, True),
    ("icelake-server", {"avx2", "avx512f", "avx512vpopcntdq"}, True, False),  # LLVM uses 256-bit registers there
    ("znver5", {"avx2", "avx512f", "avx512vpopcntdq"}, False, False),
    ("znver3", {"avx2"}, True, True),
])
def test_flat_chooses_its_scan_from_the_target_cpu(
    monkeypatch: pytest.MonkeyPatch, cpu: str, features: set[str], sliced64: bool, sliced256: bool
) -> None:
    """Chosen at run time from the CPU numba compiles for, not at install time."""
    from hashmatch import _jit

    monkeypatch.setattr(_jit, "target_cpu", lambda: cpu)
    monkeypatch.setattr(_jit, "target_features", lambda: frozenset(features))
    monkeypatch.setattr(flat, "vector_popcount", _jit.vector_popcount)
    monkeypatch.setattr(flat, "wide_vectors", _jit.wide_vectors)
    for bits, sliced in ((64, sliced64), (256, sliced256)):
        words = clustered_words(np.random.default_rng(0), 300, bits // 64)
        index = Flat.build(HashBatch(words, algorithm="t", bits=bits))
        assert (index._planes is not None) == sliced
        assert (index._blocks is not None) == (bits > 64 and not sliced)
        assert index.query(HashBatch(words[:3], algorithm="t", bits=bits), 8).query_index.tolist()[:1] == [0]

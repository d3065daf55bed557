"""Index kernels against naive twins written with Python ints and list scans."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.index import _kernels
from hashmatch.index.mih import _layout, default_substrings, probe_radii

U64 = st.integers(min_value=0, max_value=2**64 - 1)


def naive_value(row: np.ndarray) -> int:
    value = 0
    for w in row:
        value = (value << 64) | int(w)
    return value


def naive_distance(a: np.ndarray, b: np.ndarray) -> int:
    return (naive_value(a) ^ naive_value(b)).bit_count()


def naive_range(words: np.ndarray, alive: np.ndarray, queries: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    """Every (query, row, distance) within r over live rows, as a list scan."""
    return sorted(
        (qi, i, naive_distance(q, w))
        for qi, q in enumerate(queries)
        for i, w in enumerate(words)
        if alive[i] and naive_distance(q, w) <= r
    )


def clustered_words(rng: np.random.Generator, n: int, nw: int, flips: int = 3) -> np.ndarray:
    """A few centres, many near copies (a few bits flipped), exact duplicates and zeros."""
    if n == 0:
        return np.zeros((0, nw), np.uint64)
    centres = rng.integers(0, 2**64 - 1, size=(max(1, n // 10), nw), dtype=np.uint64, endpoint=True)
    rows = centres[rng.integers(0, len(centres), n)].copy()
    for i in range(n):
        for p in rng.choice(nw * 64, size=int(rng.integers(0, flips + 1)), replace=False):
            rows[i, p // 64] ^= np.uint64(1) << np.uint64(63 - p % 64)
    rows[: n // 8] = 0
    rows[n // 8 : n // 4] = rows[n // 4]
    return rows


def run_chunks(kernel, args_before, queries, r, nchunks, cap, args_after=()):  # type: ignore[no-untyped-def]
    bounds = np.linspace(0, len(queries), nchunks + 1).astype(np.int64)
    out_q = np.empty(nchunks * cap, np.int64)
    out_pos = np.empty(nchunks * cap, np.int64)
    out_dist = np.empty(nchunks * cap, np.int32)
    counts = np.zeros(nchunks, np.int64)
    kernel(*args_before, queries, bounds, r, out_q, out_pos, out_dist, cap, counts)
    triples = []
    for c in range(nchunks):
        assert counts[c] <= cap, "test capacity too small"
        s = c * cap
        triples += zip(out_q[s : s + counts[c]].tolist(), out_pos[s : s + counts[c]].tolist(),
                       out_dist[s : s + counts[c]].tolist())
    return sorted(triples), counts


@given(x=U64, y=U64)
def test_popcount64_matches_int_bit_count(x: int, y: int) -> None:
    assert int(_kernels.popcount64(np.uint64(x) ^ np.uint64(y))) == (x ^ y).bit_count()


def test_popcount64_edges() -> None:
    assert _kernels.popcount64(np.uint64(0)) == 0
    assert _kernels.popcount64(np.uint64(2**64 - 1)) == 64


@given(words=st.lists(U64, min_size=4, max_size=4), start=st.integers(0, 255), length=st.integers(1, 32))
def test_substring_key_matches_int_slicing(words: list[int], start: int, length: int) -> None:
    length = min(length, 256 - start)
    row = np.array(words, dtype=np.uint64)
    expected = (naive_value(row) >> (256 - start - length)) & ((1 << length) - 1)
    assert _kernels.substring_key(row, start, length) == expected


@given(keys=st.lists(st.integers(0, 15), max_size=60))
def test_bucket_order_is_a_stable_counting_sort(keys: list[int]) -> None:
    arr = np.array(keys, dtype=np.int64)
    order, offsets = _kernels.bucket_order(arr, 16)
    assert order.tolist() == np.argsort(arr, kind="stable").tolist()
    assert offsets.tolist() == [0, *np.cumsum(np.bincount(arr, minlength=16)).tolist()]


@pytest.mark.parametrize("nw", [1, 4])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_flat_query_matches_list_scan(rng: np.random.Generator, nw: int, data: str) -> None:
    words = (rng.integers(0, 2**64 - 1, size=(150, nw), dtype=np.uint64, endpoint=True)
             if data == "random" else clustered_words(rng, 150, nw))
    alive = (rng.random(150) > 0.2).astype(np.uint8)
    queries = np.concatenate([words[:10], clustered_words(rng, 10, nw)])
    for r in (0, 3, 32 * nw, 64 * nw):
        got, _ = run_chunks(_kernels.flat_query, (words, alive), queries, r, 3, 20 * 150)
        assert got == naive_range(words, alive, queries, r)


def naive_range_fast(words: np.ndarray, alive: np.ndarray, queries: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    """:func:`naive_range` with the row values converted once (bigger inputs, same oracle)."""
    values = [naive_value(w) for w in words]
    out = []
    for qi, q in enumerate(queries):
        qv = naive_value(q)
        for i, v in enumerate(values):
            d = (qv ^ v).bit_count()
            if alive[i] and d <= r:
                out.append((qi, i, d))
    return sorted(out)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nw=st.sampled_from([1, 2, 3, 4, 5]),
    n=st.sampled_from([0, 1, 7, 1023, 1024, 1025, 2047, 2048, 2049, 2600]),
    clustered=st.booleans(),
    r_frac=st.floats(0, 1),
    blocked=st.booleans(),
    parallel=st.booleans(),
)
def test_flat_kernels_match_list_scan_across_blocks(
    seed: int, nw: int, n: int, clustered: bool, r_frac: float, blocked: bool, parallel: bool
) -> None:
    """Every word-count kernel, row order and word-major, around the block boundaries."""
    rng = np.random.default_rng(seed)
    words = (clustered_words(rng, n, nw, flips=8) if clustered
             else rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True))
    alive = (rng.random(n) > 0.1).astype(np.uint8)
    picks = words[rng.integers(0, n, 6)] if n else np.zeros((0, nw), np.uint64)
    queries = np.ascontiguousarray(np.concatenate([picks, clustered_words(rng, 6, nw, flips=8)]))
    r = int(r_frac * 64 * nw) if r_frac > 0.5 else int(r_frac * 12)
    if blocked:
        kernel = _kernels.flat_query_blocked_parallel if parallel else _kernels.flat_query_blocked
        before = (_kernels.flat_blocks(words), words, alive)
    else:
        kernel = _kernels.flat_query_parallel if parallel else _kernels.flat_query
        before = (words, alive)
    got, _ = run_chunks(kernel, before, queries, r, 3, max(1, n) * len(queries))
    assert got == naive_range_fast(words, alive, queries, r)


@pytest.mark.parametrize("r", [0, 8, 31, 40, 41, 64])
def test_blocked_256_half_pass_keeps_rows_near_the_radius(r: int) -> None:
    """The first-two-words bound of the 256-bit scan: rows exactly r (and r + 1) away,
    with the differing bits all in the first two words, all in the last two, or spread."""
    rng = np.random.default_rng(r)
    base = rng.integers(0, 2**64 - 1, size=(1, 4), dtype=np.uint64, endpoint=True)
    words = np.repeat(base, 3000, axis=0)
    for i in range(len(words)):
        k = r + (i % 2)  # r, then r + 1
        span = (0, 128) if i % 6 < 2 else (128, 256) if i % 6 < 4 else (0, 256)
        for p in rng.choice(np.arange(*span), size=min(k, span[1] - span[0]), replace=False):
            words[i, p // 64] ^= np.uint64(1) << np.uint64(p % 64)
    alive = np.ones(len(words), np.uint8)
    got, _ = run_chunks(_kernels.flat_query_blocked, (_kernels.flat_blocks(words), words, alive), base, r, 1,
                        len(words))
    assert got == naive_range_fast(words, alive, base, r)
    assert len(got) >= 1000


def test_flat_blocks_layout() -> None:
    words = np.arange(3 * 1030, dtype=np.uint64).reshape(1030, 3)
    blocks = _kernels.flat_blocks(words)
    assert blocks.shape == (2 * 3 * 1024,)
    assert blocks[1024 * 2 + 5] == words[5, 2]
    assert blocks[(1 * 3 + 1) * 1024 + 3] == words[1027, 1]
    assert not blocks[(1 * 3 + 2) * 1024 + 6:].any()  # padding


def test_flat_query_counts_past_capacity() -> None:
    words = np.zeros((50, 1), np.uint64)
    alive = np.ones(50, np.uint8)
    bounds = np.array([0, 4], np.int64)
    out = (np.empty(7, np.int64), np.empty(7, np.int64), np.empty(7, np.int32))
    counts = np.zeros(1, np.int64)
    _kernels.flat_query(words, alive, words[:4], bounds, 0, *out, 7, counts)
    assert counts[0] == 200  # 4 queries x 50 identical rows, though only 7 were written
    assert out[1][:7].tolist() == list(range(7))


def naive_mih(words: np.ndarray, queries: np.ndarray, r: int, m: int):  # type: ignore[no-untyped-def]
    """Build MIH arrays the way MultiIndexHash does and run the kernel."""
    bits = words.shape[1] * 64
    starts, lengths = _layout(bits, m)
    keys = _kernels.substring_keys(words, starts[0], lengths[0])
    words = np.ascontiguousarray(words[np.argsort(keys, kind="stable")])
    at = np.concatenate([[0], np.cumsum((1 << lengths) + 1)]).astype(np.int64)
    offsets, entries, table_words = _kernels.mih_tables(words, starts, lengths, at, bits == 64)
    return words, (entries, table_words, offsets, at, starts, lengths, probe_radii(r, m))


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nw=st.sampled_from([1, 4]),
    clustered=st.booleans(),
    n=st.integers(0, 120),
    r_frac=st.floats(0, 1),
    m_pick=st.integers(0, 100),
)
def test_mih_query_matches_list_scan(seed: int, nw: int, clustered: bool, n: int, r_frac: float, m_pick: int) -> None:
    rng = np.random.default_rng(seed)
    bits = 64 * nw
    raw = (clustered_words(rng, n, nw) if clustered and n
           else rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True))
    # Small radii are where the probing logic lives; the full length covers the edge.
    r = int(round(r_frac**3 * bits))
    lo, hi = bits // 16, bits // 4
    m = lo + m_pick % (hi - lo + 1)
    words, tables = naive_mih(raw, raw, r, m)
    alive = (rng.random(n) > 0.1).astype(np.uint8)
    queries = np.concatenate([raw[:8], rng.integers(0, 2**64 - 1, size=(4, nw), dtype=np.uint64, endpoint=True)])
    if r > 40:  # keep the enumeration of probe masks small
        return
    args = (words, alive, tables[0], tables[1], tables[2], tables[3], tables[4], tables[5], tables[6])
    got, _ = run_chunks(_kernels.mih_query, args, queries, r, 2, max(1, 12 * n))
    assert got == naive_range(words, alive, queries, r)


@pytest.mark.parametrize("nw", [2, 4])
def test_mih_query_wide_rows_with_huge_buckets(rng: np.random.Generator, nw: int) -> None:
    """Thousands of candidates in one bucket of every table, reported once each."""
    raw = rng.integers(0, 2**64 - 1, size=(9000, nw), dtype=np.uint64, endpoint=True)
    raw[:8500] = raw[0]  # one bucket of every table holds 8,500 rows
    raw[8500:8600, 0] ^= np.uint64(1)  # near copies, found through other tables
    words, tables = naive_mih(raw, raw, 5, 4 * nw)  # 16-bit substrings
    alive = (rng.random(9000) > 0.05).astype(np.uint8)
    queries = np.ascontiguousarray(np.concatenate([raw[:1], raw[8500:8502], raw[-3:]]))
    args = (words, alive, *tables)
    got, _ = run_chunks(_kernels.mih_query, args, queries, 5, 2, 9000 * len(queries))
    assert got == naive_range_fast(words, alive, queries, 5)


@pytest.mark.parametrize("nw", [1, 4])
def test_mih_query_parallel_matches_serial(rng: np.random.Generator, nw: int) -> None:
    raw = clustered_words(rng, 300, nw, flips=6)
    words, tables = naive_mih(raw, raw, 7, default_substrings(64 * nw, 300))
    alive = np.ones(300, np.uint8)
    args = (words, alive, *tables)
    serial, _ = run_chunks(_kernels.mih_query, args, raw[:100], 7, 4, 300 * 25)
    parallel, _ = run_chunks(_kernels.mih_query_parallel, args, raw[:100], 7, 4, 300 * 25)
    assert serial == parallel == naive_range(words, alive, raw[:100], 7)


def naive_subtree(v: int, first_child: np.ndarray, n_children: np.ndarray) -> list[int]:
    out, stack = [], [v]
    while stack:
        u = stack.pop()
        out.append(u)
        stack += range(first_child[u], first_child[u] + n_children[u])
    return out


@pytest.mark.parametrize("nw", [1, 4])
@pytest.mark.parametrize("data", ["random", "clustered", "zeros"])
def test_bktree_build_keeps_the_bk_invariant(rng: np.random.Generator, nw: int, data: str) -> None:
    n = 200
    words = {
        "random": rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True),
        "clustered": clustered_words(rng, n, nw),
        "zeros": np.zeros((n, nw), np.uint64),
    }[data]
    order, first_child, n_children, edge = _kernels.bktree_build(words)
    assert sorted(order.tolist()) == list(range(n))  # every row is one node
    nodes = words[order]
    for v in range(n):
        kids = range(first_child[v], first_child[v] + n_children[v])
        assert [edge[c] for c in kids] == sorted(edge[c] for c in kids)
        for c in kids:
            # every row below child c is at exactly edge[c] from v: what pruning relies on
            for u in naive_subtree(c, first_child, n_children):
                assert naive_distance(nodes[u], nodes[v]) == edge[c]


def test_bktree_build_empty() -> None:
    order, first_child, n_children, edge = _kernels.bktree_build(np.zeros((0, 1), np.uint64))
    assert order.shape == first_child.shape == n_children.shape == edge.shape == (0,)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nw=st.sampled_from([1, 4]), clustered=st.booleans(),
       n=st.integers(0, 120), r_frac=st.floats(0, 1))
def test_bktree_query_matches_list_scan(seed: int, nw: int, clustered: bool, n: int, r_frac: float) -> None:
    rng = np.random.default_rng(seed)
    raw = (clustered_words(rng, n, nw) if clustered and n
           else rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True))
    order, first_child, n_children, edge = _kernels.bktree_build(raw)
    words = np.ascontiguousarray(raw[order])
    alive = (rng.random(n) > 0.1).astype(np.uint8)
    r = int(round(r_frac * 64 * nw))
    queries = np.concatenate([raw[:8], rng.integers(0, 2**64 - 1, size=(4, nw), dtype=np.uint64, endpoint=True)])
    args = (words, alive, first_child, n_children, edge)
    got, _ = run_chunks(_kernels.bktree_query, args, queries, r, 3, max(1, 12 * n))
    assert got == naive_range(words, alive, queries, r)
    par, _ = run_chunks(_kernels.bktree_query_parallel, args, queries, r, 3, max(1, 12 * n))
    assert par == got


@pytest.mark.parametrize("nw", [1, 4])
def test_mih_tables_parallel_matches_serial(rng: np.random.Generator, nw: int) -> None:
    bits = 64 * nw
    starts, lengths = _layout(bits, bits // 16)
    words = clustered_words(rng, 500, nw)
    at = np.concatenate([[0], np.cumsum((1 << lengths) + 1)]).astype(np.int64)
    serial = _kernels.mih_tables(words, starts, lengths, at, nw == 1)
    parallel = _kernels.mih_tables_parallel(words, starts, lengths, at, nw == 1)
    for a, b in zip(serial, parallel):
        assert np.array_equal(a, b)
    # every table is a permutation of the rows, bucketed by its substring
    offsets, entries = serial[0], serial[1].astype(np.int64)
    for t in range(1, len(starts)):
        rows = entries[(t - 1) * 500 : t * 500]
        assert sorted(rows.tolist()) == list(range(500))
        keys = _kernels.substring_keys(words, starts[t], lengths[t])[rows]
        assert np.all(np.diff(keys.astype(np.int64)) >= 0)
        assert offsets[at[t] + (1 << lengths[t])] == 500

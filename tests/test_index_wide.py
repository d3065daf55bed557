"""The wide-row multi-index kernels (``index/_wide_kernels.py``) against naive twins."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.hashes import HashBatch
from hashmatch.index import Flat, MultiIndexHash
from hashmatch.index import _kernels
from hashmatch.index import _wide_kernels as _wide
from hashmatch.index.mih import _layout, _table_at, filter_chunks, probe_radii

from .test_index_kernels import clustered_words, naive_range, naive_range_fast, naive_value, run_chunks


def naive_chunk(row: np.ndarray, c: int) -> int:
    """Bits [32c, 32c + 32) of the row (bit 0 most significant), from a Python int."""
    bits = 64 * len(row)
    return (naive_value(row) >> (bits - 32 * c - 32)) & 0xFFFFFFFF


def wide_arrays(raw: np.ndarray, m: int):  # type: ignore[no-untyped-def]
    """Rows in table 0's order and the arrays ``wide_query`` takes, built as MultiIndexHash does."""
    bits = raw.shape[1] * 64
    starts, lengths = _layout(bits, m)
    keys = _kernels.substring_keys(raw, starts[0], lengths[0])
    words = np.ascontiguousarray(raw[np.argsort(keys, kind="stable")])
    at = _table_at(lengths)
    offsets, entries, _ = _kernels.mih_tables(words, starts, lengths, at, False)
    chunks = filter_chunks(bits, starts, lengths)
    records = np.empty((entries.shape[0], 2), np.uint64)
    _wide.wide_records(words, entries, chunks, records)
    return words, entries, (records, chunks, offsets, at, starts, lengths)


def random_rows(rng: np.random.Generator, n: int, nw: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True)


@pytest.mark.parametrize("nw", [2, 3, 4, 5, 16])
def test_filter_chunks_are_distinct_and_avoid_the_substring(nw: int) -> None:
    bits = 64 * nw
    for m in range(-(-bits // 16), bits // 4 + 1, max(1, bits // 64)):
        starts, lengths = _layout(bits, m)
        chunks = filter_chunks(bits, starts, lengths)
        for t in range(m):
            assert len(set(chunks[t].tolist())) == 3 and all(0 <= c < bits // 32 for c in chunks[t])
            own = {(starts[t] + k) // 32 for k in range(lengths[t])}
            if bits >= 256:  # room for three chunks clear of the substring's (at most two)
                assert not own & set(chunks[t].tolist())


@pytest.mark.parametrize("nw", [2, 4, 5])
def test_wide_records_hold_filter_chunks_and_row_numbers(rng: np.random.Generator, nw: int) -> None:
    raw = clustered_words(rng, 300, nw)
    words, entries, (records, chunks, *_) = wide_arrays(raw, 4 * nw)
    n = words.shape[0]
    for p in rng.integers(0, records.shape[0], 200).tolist():
        t = p // n + 1
        e = int(entries[p])
        a, b, c = (naive_chunk(words[e], int(k)) for k in chunks[t])
        assert int(records[p, 0]) == (a << 32) | b
        assert int(records[p, 1]) == (c << 32) | e
    parallel = np.empty_like(records)
    _wide.wide_records_parallel(words, entries, chunks, parallel)
    assert np.array_equal(parallel, records)


def test_wide_records_of_no_rows() -> None:
    out = np.empty((0, 2), np.uint64)
    _wide.wide_records(np.zeros((0, 4), np.uint64), np.zeros(0, np.uint32), np.zeros((16, 3), np.int64), out)
    _wide.wide_records_parallel(np.zeros((0, 4), np.uint64), np.zeros(0, np.uint32), np.zeros((16, 3), np.int64), out)


@given(lengths=st.lists(st.integers(1, 20), min_size=1, max_size=8), radii=st.lists(st.integers(-1, 24), min_size=8, max_size=8))
def test_probe_count_is_the_sum_of_ball_volumes(lengths: list[int], radii: list[int]) -> None:
    lens = np.array(lengths, np.int64)
    rad = np.array(radii[: len(lengths)], np.int64)
    expected = sum(sum(math.comb(L, k) for k in range(min(rt, L) + 1)) for L, rt in zip(lengths, rad.tolist()))
    assert _kernels.probe_count(lens, rad) == expected


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nw=st.sampled_from([2, 3, 4, 5]),
    clustered=st.booleans(),
    n=st.integers(0, 120),
    r_frac=st.floats(0, 1),
    m_pick=st.integers(0, 100),
)
def test_wide_query_matches_list_scan(seed: int, nw: int, clustered: bool, n: int, r_frac: float, m_pick: int) -> None:
    rng = np.random.default_rng(seed)
    bits = 64 * nw
    raw = clustered_words(rng, n, nw, flips=12) if clustered and n else random_rows(rng, n, nw)
    r = int(round(r_frac**3 * bits))  # small radii are where the probing and filter logic live
    lo, hi = -(-bits // 16), bits // 4
    m = lo + m_pick % (hi - lo + 1)
    if sum(2 ** L for L in _layout(bits, m)[1].tolist()) > 2**22 or r > 48:
        return  # keep the enumeration of probe masks small
    words, _, arrays = wide_arrays(raw, m)
    alive = (rng.random(n) > 0.1).astype(np.uint8)
    queries = np.concatenate([raw[:8], random_rows(rng, 4, nw)])
    # near copies of rows at about r bits: matches whose filter distance is close to r
    near = raw[: min(n, 4)].copy()
    for row in near:
        for b in rng.choice(bits, size=min(bits, r), replace=False):
            row[b // 64] ^= np.uint64(1) << np.uint64(63 - b % 64)
    queries = np.ascontiguousarray(np.concatenate([queries, near]))
    args = (words, alive, *arrays, probe_radii(r, m))
    got, _ = run_chunks(_wide.wide_query, args, queries, r, 2, max(1, 20 * n))
    assert got == naive_range(words, alive, queries, r)
    par, _ = run_chunks(_wide.wide_query_parallel, args, queries, r, 3, max(1, 20 * n))
    assert par == got


@pytest.mark.parametrize("nw", [2, 4])
def test_wide_query_with_huge_buckets_reports_each_row_once(rng: np.random.Generator, nw: int) -> None:
    """Thousands of candidates in one bucket of every table (the filter passes them all)."""
    raw = random_rows(rng, 9000, nw)
    raw[:8500] = raw[0]
    raw[8500:8600, 0] ^= np.uint64(1)  # near copies, found through other tables
    words, _, arrays = wide_arrays(raw, 4 * nw)
    alive = (rng.random(9000) > 0.05).astype(np.uint8)
    queries = np.ascontiguousarray(np.concatenate([raw[:1], raw[8500:8502], raw[-3:]]))
    args = (words, alive, *arrays, probe_radii(5, 4 * nw))
    got, counts = run_chunks(_wide.wide_query, args, queries, 5, 2, 9000 * len(queries))
    assert got == naive_range_fast(words, alive, queries, 5)


def test_wide_query_counts_past_capacity(rng: np.random.Generator) -> None:
    raw = np.repeat(random_rows(rng, 1, 4), 50, axis=0)
    words, _, arrays = wide_arrays(raw, 16)
    out = (np.empty(7, np.int64), np.empty(7, np.int64), np.empty(7, np.int32))
    counts = np.zeros(1, np.int64)
    _wide.wide_query(words, np.ones(50, np.uint8), *arrays, probe_radii(31, 16), words[:4],
                     np.array([0, 4], np.int64), 31, *out, 7, counts)
    assert counts[0] == 200  # 4 queries x 50 identical rows, though only 7 were written


@pytest.mark.parametrize("nw", [2, 4])
def test_multi_index_on_wide_rows_matches_flat(rng: np.random.Generator, nw: int) -> None:
    """Through the public index: near copies at every distance up to beyond r, removals."""
    bits = 64 * nw
    raw = random_rows(rng, 3000, nw)
    raw[1500:] = raw[:1500]
    for i in range(1500, 3000):
        for b in rng.choice(bits, size=int(rng.integers(0, bits // 4)), replace=False):
            raw[i, b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    batch = HashBatch(raw, algorithm="x", bits=bits)
    ids = rng.permutation(100_000)[:3000].astype(np.int64)
    mih, flat = MultiIndexHash.build(batch, ids, substrings=bits // 16), Flat.build(batch, ids)
    mih.remove(ids[:50])
    flat.remove(ids[:50])
    queries = HashBatch(np.ascontiguousarray(raw[rng.integers(0, 3000, 80)]), algorithm="x", bits=bits)
    assert not mih.scans_at(7)  # probes (at 3,000 rows the model scans for the larger radii)
    for r in (0, 7, bits // 8 - 1, bits // 8):
        a, b = mih.query(queries, r), flat.query(queries, r)
        assert np.array_equal(a.query_index, b.query_index) and np.array_equal(a.ids, b.ids)
        assert np.array_equal(a.distances, b.distances)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nw=st.sampled_from([2, 4]), n=st.integers(1030, 2500))
def test_row_number_tables_answer_like_records_and_survive_a_file(tmp_path_factory, seed: int, nw: int, n: int) -> None:  # type: ignore[no-untyped-def]
    """``filter_records=False`` (the local stage's memory budget): the same exact
    answers as the records layout, less memory, and a saved file keeps the layout
    (format flag 2) instead of deriving records on load."""
    rng = np.random.default_rng(seed)
    words = clustered_words(rng, n, nw)
    ids = rng.permutation(4 * n)[:n].astype(np.int64)
    batch = HashBatch(words, algorithm="orb", bits=64 * nw)
    plain = MultiIndexHash.build(batch, ids, filter_records=False)
    records = MultiIndexHash.build(batch, ids, substrings=plain.substrings)
    assert plain._records.shape[0] == 0 and plain._entries.shape[0] > 0
    assert plain.nbytes < records.nbytes
    path = tmp_path_factory.mktemp("rows") / "rows.hmidx"
    plain.save(path)
    loaded = MultiIndexHash.load(path)
    assert loaded._records.shape[0] == 0 and loaded.nbytes == plain.nbytes
    queries = HashBatch(np.concatenate([words[rng.integers(0, n, 12)], clustered_words(rng, 6, nw)]),
                        algorithm="orb", bits=64 * nw)
    for r in (0, 3, 16 * nw):
        ref = Flat.build(batch, ids).query(queries, r)
        want = sorted(zip(ref.query_index.tolist(), ref.ids.tolist(), ref.distances.tolist()))
        for index in (plain, records, loaded):
            got = index.query(queries, r)
            assert sorted(zip(got.query_index.tolist(), got.ids.tolist(), got.distances.tolist())) == want


def test_row_number_flag_is_refused_where_there_are_no_records(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import struct

    from hashmatch.errors import CorruptIndexError
    from hashmatch.index import _format, load_index

    path = tmp_path / "f.hmidx"
    MultiIndexHash.build(HashBatch(np.arange(2000, dtype=np.uint64).reshape(-1, 1), algorithm="phash", bits=64)).save(path)
    data = bytearray(path.read_bytes()[:-32])
    struct.pack_into("<I", data, 12, 2)  # flag 2 on a 64-bit multi-index
    path.write_bytes(bytes(data) + hashlib.sha256(bytes(data)).digest())
    with pytest.raises(CorruptIndexError, match="flag 2"):
        load_index(path)
    assert _format.FLAG_ROW_NUMBERS == 2


def test_big_wide_indexes_keep_row_numbers_by_default(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Records by default, row numbers above RECORDS_MAX_ROWS (memory), either when asked."""
    from hashmatch.index import mih

    words = clustered_words(np.random.default_rng(5), 3000, 4)
    batch = HashBatch(words, algorithm="pdq", bits=256)
    assert MultiIndexHash.build(batch)._records.shape[0] > 0
    monkeypatch.setattr(mih, "RECORDS_MAX_ROWS", 2999)
    big = MultiIndexHash.build(batch)
    assert big._records.shape[0] == 0 and big._entries.shape[0] > 0
    assert MultiIndexHash.build(batch, filter_records=True)._records.shape[0] > 0
    ref = Flat.build(batch).query(batch, 31)
    got = big.query(batch, 31)
    assert sorted(zip(got.query_index.tolist(), got.ids.tolist())) == sorted(zip(ref.query_index.tolist(), ref.ids.tolist()))

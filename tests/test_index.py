"""The index API: every kind returns exactly what Flat (and a list scan) returns."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hashmatch.index as index_pkg
from hashmatch.errors import (
    CorruptIndexError,
    HashmatchError,
    IncompatibleHashError,
    IndexArgumentError,
    InvalidHashError,
)
from hashmatch.hashes import Hash, HashBatch
from hashmatch.index import BKTree, Flat, MultiIndexHash, QueryResult, build_index, load_index

from .test_index_kernels import clustered_words, naive_distance

KINDS = [Flat, BKTree, MultiIndexHash]


def make_batch(words: np.ndarray, algorithm: str = "phash") -> HashBatch:
    return HashBatch(words, algorithm=algorithm, bits=words.shape[1] * 64)


def naive_query(words: np.ndarray, ids: np.ndarray, queries: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    return sorted(
        (qi, naive_distance(q, w), int(i))
        for qi, q in enumerate(queries)
        for w, i in zip(words, ids)
        if naive_distance(q, w) <= r
    )


def as_triples(res: QueryResult) -> list[tuple[int, int, int]]:
    return list(zip(res.query_index.tolist(), res.distances.tolist(), res.ids.tolist()))


def dataset(rng: np.random.Generator, kind: str, n: int, nw: int) -> np.ndarray:
    if kind == "random":
        return rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True)
    if kind == "zeros":
        return np.zeros((n, nw), np.uint64)
    return clustered_words(rng, n, nw, flips=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    nw=st.sampled_from([1, 4]),
    data=st.sampled_from(["random", "clustered", "zeros"]),
    n=st.integers(0, 150),
    radii=st.lists(st.integers(0, 256), min_size=1, max_size=3),
)
def test_every_index_matches_a_list_scan(seed: int, nw: int, data: str, n: int, radii: list[int]) -> None:
    rng = np.random.default_rng(seed)
    words = dataset(rng, data, n, nw)
    ids = rng.permutation(10 * n + 1)[:n].astype(np.int64) - 5 * n  # negative ids are fine
    queries = np.concatenate([words[:5], dataset(rng, "clustered", 6, nw), np.zeros((1, nw), np.uint64)])
    batch, qbatch = make_batch(words), make_batch(queries)
    for r in [0, 64 * nw, *[x % (64 * nw + 1) for x in radii]]:
        expected = naive_query(words, ids, queries, r)
        for kind in KINDS:
            assert as_triples(kind.build(batch, ids).query(qbatch, r)) == expected, (kind.kind, r)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    nw=st.sampled_from([1, 4]),
    data=st.sampled_from(["random", "clustered", "zeros"]),
    steps=st.lists(st.tuples(st.booleans(), st.integers(1, 60)), min_size=1, max_size=5),
)
def test_every_index_matches_flat_after_adds_removes_and_reload(
    tmp_path_factory: pytest.TempPathFactory, seed: int, nw: int, data: str, steps: list[tuple[bool, int]]
) -> None:
    rng = np.random.default_rng(seed)
    tmp = tmp_path_factory.mktemp("idx")
    start = dataset(rng, data, 80, nw)
    live: dict[int, np.ndarray] = {i: start[i] for i in range(80)}
    indexes = [kind.build(make_batch(start)) for kind in KINDS]
    next_id = 80
    removed: set[int] = set()
    for is_add, k in steps:
        if is_add:
            new = dataset(rng, data, k, nw)
            ids = np.arange(next_id, next_id + k)
            next_id += k
            for idx in indexes:
                idx.add(make_batch(new), ids)
            live.update({int(i): w for i, w in zip(ids, new)})
        else:
            gone = rng.choice(next_id, size=k)
            counts = {idx.remove(gone) for idx in indexes}
            expected_count = len(set(gone.tolist()) & set(live))
            assert counts == {expected_count}
            for i in gone.tolist():
                live.pop(i, None)
                removed.add(i)
    queries = make_batch(np.concatenate([start[:10], dataset(rng, "clustered", 5, nw)]))
    ids = np.array(sorted(live), dtype=np.int64)
    words = np.array([live[i] for i in ids.tolist()], dtype=np.uint64).reshape(-1, nw)
    for r in (0, 4, 11, 31, 64 * nw):
        expected = naive_query(words, ids, queries.words, r)
        for j, idx in enumerate(indexes):
            assert len(idx) == len(live)
            got = as_triples(idx.query(queries, r))
            assert got == expected
            assert not removed & {t[2] for t in got}
            path = tmp / f"{idx.kind}-{j}.hmidx"
            idx.save(path)
            for loaded in (load_index(path), type(idx).load(path)):
                assert type(loaded) is type(idx)
                assert len(loaded) == len(live)
                assert as_triples(loaded.query(queries, r)) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_query_result_is_sorted_by_query_distance_id(rng: np.random.Generator, kind: type) -> None:
    words = clustered_words(rng, 300, 1, flips=6)
    ids = rng.permutation(300).astype(np.int64)
    res = kind.build(make_batch(words), ids).query(make_batch(words[:40]), 6)
    keys = list(zip(res.query_index.tolist(), res.distances.tolist(), res.ids.tolist()))
    assert keys == sorted(keys) and len(keys) > 40
    assert res.query_index.dtype == np.int64 and res.ids.dtype == np.int64 and res.distances.dtype == np.int32


@pytest.mark.parametrize("kind", KINDS)
def test_query_with_many_matches_overflows_into_exact_rerun(kind: type) -> None:
    # 2000 identical rows x 200 queries: far past the first capacity guess.
    words = np.zeros((2000, 1), np.uint64)
    res = kind.build(make_batch(words)).query(make_batch(np.zeros((200, 1), np.uint64)), 0)
    assert len(res) == 400_000
    assert np.array_equal(np.bincount(res.query_index), np.full(200, 2000))


@pytest.mark.parametrize("kind", KINDS)
def test_query_from_many_threads_matches_one_thread(rng: np.random.Generator, kind: type) -> None:
    words = clustered_words(rng, 3000, 1, flips=4)
    idx = kind.build(make_batch(words))
    queries = [make_batch(words[i * 50 : (i + 1) * 50]) for i in range(8)]
    expected = [as_triples(idx.query(q, 5)) for q in queries]
    got: list[list[tuple[int, int, int]] | None] = [None] * 8

    def work(i: int) -> None:
        got[i] = as_triples(idx.query(queries[i], 5))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == expected


@pytest.mark.parametrize("kind", KINDS)
def test_removed_ids_never_return_and_compaction_reclaims(rng: np.random.Generator, kind: type) -> None:
    words = np.zeros((100, 1), np.uint64)  # all identical: every row matches every query
    idx = kind.build(make_batch(words))
    assert idx.remove(np.arange(10)) == 10
    assert idx.remove(np.arange(10)) == 0  # already gone
    assert len(idx) == 90 and idx._words.shape[0] == 100  # tombstoned, not yet compacted
    assert set(idx.query(make_batch(words[:1]), 0).ids.tolist()) == set(range(10, 100))
    idx.remove(np.arange(10, 40))  # past a quarter removed: compacts
    assert idx._words.shape[0] == 60 and len(idx) == 60
    assert set(idx.query(make_batch(words[:1]), 0).ids.tolist()) == set(range(40, 100))
    assert idx.remove(70) == 1  # a scalar id


@pytest.mark.parametrize("kind", KINDS)
def test_entries_are_the_live_rows_and_rebuild_the_same_index(rng: np.random.Generator, kind: type) -> None:
    words = rng.integers(0, 2**63, size=(50, 1), dtype=np.uint64)
    ids = np.arange(1000, 1050, dtype=np.int64)
    idx = kind.build(make_batch(words), ids)
    idx.remove(ids[:5])  # tombstoned, not compacted
    batch, got_ids = idx.entries()
    assert sorted(zip(got_ids.tolist(), [h.value for h in batch])) == sorted(zip(ids[5:].tolist(), words[5:, 0].tolist()))
    queries = make_batch(words[::7])
    again = Flat.build(batch, got_ids)
    assert again.query(queries, 20).ids.tolist() == idx.query(queries, 20).ids.tolist()


def test_mih_rows_and_tables_shrink_after_compaction(rng: np.random.Generator) -> None:
    words = rng.integers(0, 2**63, size=(1000, 1), dtype=np.uint64)
    idx = MultiIndexHash.build(make_batch(words))
    before = idx.nbytes
    idx.remove(np.arange(600))
    assert idx.nbytes < 0.6 * before


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index_and_empty_queries(kind: type) -> None:
    empty = HashBatch.empty(algorithm="pdq", bits=256)
    idx = kind.build(empty)
    assert len(idx) == 0
    res = idx.query(make_batch(np.ones((3, 4), np.uint64), "pdq"), 256)
    assert len(res) == 0 and res.ids.dtype == np.int64
    idx.add(make_batch(np.ones((2, 4), np.uint64), "pdq"), np.array([7, 9]))
    assert idx.query(empty, 10).ids.shape == (0,)
    assert idx.query(make_batch(np.ones((1, 4), np.uint64), "pdq"), 0).ids.tolist() == [7, 9]


@pytest.mark.parametrize("kind", KINDS)
def test_index_rejects_bad_input_with_project_errors(kind: type) -> None:
    batch = make_batch(np.zeros((4, 1), np.uint64))
    idx = kind.build(batch)
    with pytest.raises(IncompatibleHashError):
        idx.query(make_batch(np.zeros((1, 1), np.uint64), "dhash"), 3)
    with pytest.raises(IncompatibleHashError):
        idx.add(make_batch(np.zeros((1, 4), np.uint64)), [1])
    with pytest.raises(IndexArgumentError):
        idx.query(batch, -1)
    with pytest.raises(IndexArgumentError):
        idx.query(batch, 2.5)  # type: ignore[arg-type]
    with pytest.raises(IndexArgumentError):
        kind.build(batch, ids=[1, 2])
    with pytest.raises(IndexArgumentError):
        kind.build(batch, ids=["a", "b", "c", "d"])
    with pytest.raises(IndexArgumentError):
        idx.remove([[1, 2]])
    with pytest.raises(InvalidHashError):
        kind.build(np.zeros((4, 1), np.uint64))  # type: ignore[arg-type]
    with pytest.raises(InvalidHashError):
        kind.build(HashBatch(np.zeros((2, 1), np.uint64), algorithm="ahash", bits=36))


def test_max_distance_above_bit_length_means_everything(rng: np.random.Generator) -> None:
    words = rng.integers(0, 2**63, size=(30, 1), dtype=np.uint64)
    res = MultiIndexHash.build(make_batch(words)).query(make_batch(words[:2]), 1000)
    assert len(res) == 60


def test_hash_to_words_queries_like_a_batch(rng: np.random.Generator) -> None:
    h = Hash.from_hex("ffd7918181c9c8c0", algorithm="phash")
    idx = Flat.build(HashBatch.from_hashes([h]), ids=[42])
    q = HashBatch(h.to_words().reshape(1, -1), algorithm="phash", bits=64)
    assert idx.query(q, 0).ids.tolist() == [42]


def test_mih_substrings_option_is_checked_and_kept(tmp_path: Path, rng: np.random.Generator) -> None:
    batch = make_batch(rng.integers(0, 2**63, size=(500, 4), dtype=np.uint64))
    with pytest.raises(IndexArgumentError):
        MultiIndexHash.build(batch, substrings=3)
    idx = MultiIndexHash.build(batch, substrings=20)
    idx.save(tmp_path / "m.hmidx")
    assert MultiIndexHash.load(tmp_path / "m.hmidx").substrings == 20


def test_build_index_picks_by_size_and_radius(rng: np.random.Generator) -> None:
    small = make_batch(rng.integers(0, 2**63, size=(100, 1), dtype=np.uint64))
    large = make_batch(rng.integers(0, 2**63, size=(20_000, 1), dtype=np.uint64))
    assert isinstance(build_index(small, max_distance=8), Flat)
    assert isinstance(build_index(large, max_distance=4), MultiIndexHash)  # at r=8 a vector scan may win
    assert isinstance(build_index(large), MultiIndexHash)
    assert isinstance(build_index(large, max_distance=40), Flat)
    assert isinstance(build_index(small, kind="bktree"), BKTree)
    with pytest.raises(IndexArgumentError):
        build_index(small, kind="lsh")
    with pytest.raises(IndexArgumentError):
        build_index(small, max_distance=-2)


@pytest.mark.parametrize(("sliced", "cap"), [(True, 11), (False, 10)])
def test_64_bit_multi_index_scans_past_its_measured_radius(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, sliced: bool, cap: int
) -> None:
    # With the scan modelled dear (a large scan_cost_ns) only the cap decides. Measured
    # with the kernel of 4db70cf (notes/issue-14-flat.md, round 7): where Flat scans
    # 64-bit rows bit-sliced (AVX2, Intel AVX-512) the multi-index wins at r = 11 at 1M
    # rows and loses from 12; against the 512-bit row-order scan (Zen 4/5) it loses from
    # 11. Past the cap it scans, and build_index takes Flat (the policy's pHash r = 14).
    from hashmatch.index import mih as mih_module

    monkeypatch.setattr(mih_module, "scan_cost_ns", lambda bits, n: float("inf"))
    monkeypatch.setattr(mih_module, "scans_sliced", lambda bits: sliced)
    large = make_batch(rng.integers(0, 2**63, size=(20_000, 1), dtype=np.uint64))
    index = MultiIndexHash.build(large)
    assert mih_module.mih64_max_radius() == cap
    assert not index.scans_at(cap) and index.scans_at(cap + 1) and index.scans_at(14)
    assert isinstance(build_index(large, max_distance=cap), MultiIndexHash)
    assert isinstance(build_index(large, max_distance=cap + 1), Flat)
    assert isinstance(build_index(large, max_distance=14), Flat)
    queries = make_batch(np.ascontiguousarray(large.words[:30]) ^ np.uint64(0b1011011))
    for r in (cap, 14):  # exact whichever way it goes
        a, b = index.query(queries, r), Flat.build(large).query(queries, r)
        assert len(a) >= 30 and np.array_equal(a.ids, b.ids) and np.array_equal(a.distances, b.distances)


@pytest.mark.parametrize(
    ("sliced", "rows", "probing"),
    [(True, 100_000, [8, 9, 10]), (True, 1_000_000, [8, 9, 10, 11]),
     (False, 100_000, [8, 9]), (False, 1_000_000, [8, 9, 10])],
)
def test_64_bit_model_picks_the_measured_faster_structure(
    monkeypatch: pytest.MonkeyPatch, sliced: bool, rows: int, probing: list[int]
) -> None:
    # Round 7's measurements (radii 8-16, pHash-shaped and uniform rows): the radii at
    # which the multi-index was the faster one (m = 5, the default at both sizes); the
    # scans won everywhere else. scan_wins is what scans_at and build_index decide by.
    from hashmatch.index import mih as mih_module

    monkeypatch.setattr(mih_module, "scans_sliced", lambda bits: sliced)
    monkeypatch.setattr(mih_module, "vector_popcount", lambda: not sliced)
    assert [r for r in range(8, 17) if not mih_module.scan_wins(64, rows, 5, r)] == probing


def test_public_names_are_pinned() -> None:
    assert sorted(index_pkg.__all__) == sorted(
        ["BKTree", "Flat", "Index", "MultiIndexHash", "Origin", "QueryResult", "build_index", "load_index", "warmup"]
    )


def test_warmup_runs() -> None:
    index_pkg.warmup(bits=(64,))


def test_project_errors_share_the_root() -> None:
    assert issubclass(IndexArgumentError, HashmatchError) and issubclass(IndexArgumentError, ValueError)
    assert issubclass(CorruptIndexError, HashmatchError)

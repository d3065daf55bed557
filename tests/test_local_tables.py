"""The local stage's descriptor tables (``local/_tables.py``, ``local/_kernels.py``) against
a naive list scan, and as the snapshot's rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.hashes import HashBatch
from hashmatch.index import Flat, load_index
from hashmatch.local import _kernels
from hashmatch.local._tables import TABLES, DescriptorIndex, directory_bits

from .test_index_kernels import clustered_words, naive_range


def _batch(words: np.ndarray) -> HashBatch:
    return HashBatch(np.ascontiguousarray(words), algorithm="orb", bits=64 * words.shape[1])


def _answers(index: DescriptorIndex, queries: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    res = index.query(_batch(queries), r)
    return sorted(zip(res.query_index.tolist(), res.ids.tolist(), res.distances.tolist()))


def _oracle(words: np.ndarray, ids: np.ndarray, alive: np.ndarray, queries: np.ndarray, r: int) -> list[tuple[int, int, int]]:
    return sorted((q, int(ids[i]), d) for q, i, d in naive_range(words, alive, queries, r))


def _near(rng: np.random.Generator, rows: np.ndarray, k: int, flips: int) -> np.ndarray:
    """``k`` copies of random rows with up to ``flips`` bits flipped, and one far row."""
    out = rows[rng.integers(0, rows.shape[0], k)].copy()
    for i in range(k):
        for p in rng.choice(256, size=int(rng.integers(0, flips + 1)), replace=False):
            out[i, p // 64] ^= np.uint64(1) << np.uint64(63 - p % 64)
    return np.concatenate([out, ~rows[:1]])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), r=st.sampled_from([0, 1, 8, 15, 16, 17, 24, 31, 256]))
def test_descriptor_index_answers_as_a_list_scan(seed: int, n: int, r: int) -> None:
    rng = np.random.default_rng(seed)
    words = clustered_words(rng, n, 4, flips=20)
    ids = rng.integers(1, 50, n)  # owners repeat, as 16 rows of one reference do
    index = DescriptorIndex.build(_batch(words), ids)
    queries = _near(rng, words, 12, 24) if n else rng.integers(0, 2**63, (3, 4), dtype=np.uint64)
    assert _answers(index, queries, r) == _oracle(words, ids, np.ones(n, bool), queries, r)
    if n:
        gone = np.unique(ids[: n // 3])
        index.remove(gone)
        alive = ~np.isin(ids, gone)
        assert _answers(index, queries, r) == _oracle(words, ids, alive, queries, r)


def test_descriptor_index_reports_a_row_once_though_several_tables_hold_it(rng: np.random.Generator) -> None:
    words = clustered_words(rng, 300, 4, flips=2)
    index = DescriptorIndex.build(_batch(words), np.arange(300))
    res = index.query(_batch(words[:40]), 16)  # each row is in every table's ball of itself
    pairs = list(zip(res.query_index.tolist(), res.ids.tolist()))
    assert len(pairs) == len(set(pairs)) and all((q, q) in set(pairs) for q in range(40))


def test_descriptor_index_overflowing_its_first_guess_is_rerun_exactly(rng: np.random.Generator) -> None:
    words = np.repeat(rng.integers(0, 2**63, (1, 4), dtype=np.uint64), 3000, axis=0)  # 3,000 equal rows
    index = DescriptorIndex.build(_batch(words), np.arange(3000))
    res = index.query(_batch(words[:2]), 0)
    assert len(res) == 6000 and sorted(set(res.ids.tolist())) == list(range(3000))


def test_directory_bits_follow_the_rows_within_the_substrings() -> None:
    lengths = np.array([29, 29, 29, 29, 28, 28, 28, 28, 28])
    assert directory_bits(1_600_000, lengths) == 18  # ~6 rows per bucket at 100k references
    assert directory_bits(160_000, lengths) == 14
    assert directory_bits(0, lengths) == 13  # the low bits must fit 16
    assert directory_bits(160_000_000, lengths) == 22
    assert TABLES == lengths.size


def test_visits_are_the_directory_keys_within_each_table_radius(rng: np.random.Generator) -> None:
    index = DescriptorIndex.build(_batch(clustered_words(rng, 2000, 4)), np.arange(2000))
    assert index._dbits == 13  # 2,000 rows: the low bits' 16 are the bound
    assert index.visits(16) == 8 * (1 + 13) + 1  # eight tables at radius 1, one at 0
    assert index.visits(0) == 1


def test_parallel_and_serial_builds_make_the_same_tables(rng: np.random.Generator) -> None:
    index = DescriptorIndex.build(_batch(clustered_words(rng, 3000, 4, flips=20)), np.arange(3000))
    parallel = _kernels.tables_build_parallel(index._words, index._starts, index._lengths, index._dbits)
    for mine, theirs in zip((index._offsets, index._low, index._rows), parallel):
        assert np.array_equal(mine, theirs)


def test_descriptor_index_saves_as_flat_rows_and_rebuilds_its_tables(tmp_path, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    words = clustered_words(rng, 2000, 4, flips=12)
    ids = np.repeat(np.arange(1, 126), 16)
    index = DescriptorIndex.build(_batch(words), ids)
    index.save(tmp_path / "rows.hmidx")
    loaded = load_index(tmp_path / "rows.hmidx")
    assert type(loaded) is Flat
    again = DescriptorIndex.from_index(loaded)
    queries = _near(rng, words, 30, 20)
    assert _answers(again, queries, 16) == _answers(index, queries, 16) == _oracle(words, ids, np.ones(2000, bool), queries, 16)
    assert DescriptorIndex.from_index(again) is again
    # Memory: no word-major copy; 9 tables of 6 bytes per row beside the rows and ids.
    assert again.nbytes == index.nbytes < 2000 * (32 + 8 + 1 + 6 * TABLES) + 4 * TABLES * (2 ** 16 + 1)


@pytest.mark.parametrize("r", [0, 16])
def test_descriptor_index_of_no_rows_answers_nothing(r: int) -> None:
    index = DescriptorIndex.build(_batch(np.zeros((0, 4), np.uint64)), np.zeros(0, np.int64))
    assert len(index.query(_batch(np.zeros((2, 4), np.uint64)), r)) == 0


def test_local_index_shortlists_through_the_tables_as_through_a_flat_scan(rng: np.random.Generator) -> None:
    from hashmatch.local import LocalFeatures, LocalIndex

    def features(desc: np.ndarray) -> LocalFeatures:
        n = desc.shape[0]
        return LocalFeatures(rng.random((n, 2), dtype=np.float32) * 500, np.zeros(n, np.uint8), desc, 512, 512, 1.0)

    base = rng.integers(0, 256, (80, 32, 32), dtype=np.uint8)  # 80 references, 32 features (16 indexed)
    local = LocalIndex.from_features([features(d) for d in base], ids=range(1, 81), candidates=1000)
    assert isinstance(local._index, DescriptorIndex)  # 1,280 retrieval rows
    flat = LocalIndex.from_features([features(d) for d in base], ids=range(1, 81), candidates=1000)
    flat._index = Flat.build(*local._index.entries())
    noisy = base[rng.integers(0, 80, 300), rng.integers(0, 16, 300)]
    flips = rng.random((300, 256)) < rng.choice([0.01, 0.05, 0.1], (300, 1))
    query = features(np.packbits(np.unpackbits(noisy, axis=1) ^ flips, axis=1))
    found = local.shortlist(query, [300])
    assert found == flat.shortlist(query, [300]) and len(found) > 20


def test_warmup_loads_the_kernels_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from hashmatch.local import _tables

    calls: set[tuple[str, bool]] = set()
    real = _tables.DescriptorIndex._search

    def spy(self, queries, r, *rest):  # type: ignore[no-untyped-def]
        calls.add(("scan" if self.visits(r) > _tables._MAX_VISITS else "tables", threading.current_thread() is threading.main_thread()))
        return real(self, queries, r, *rest)

    monkeypatch.setattr(_tables.DescriptorIndex, "_search", spy)
    _tables.warmup()
    assert calls == {("tables", True), ("scan", True), ("tables", False), ("scan", False)}

"""The 64-bit-only index kernels (``index/_kernels64.py``) against naive list scans (the
bit-sliced Flat scan, once here, is in ``test_sliced_kernels.py``)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.errors import CorruptIndexError
from hashmatch.hashes import HashBatch
from hashmatch.index import MultiIndexHash, _base, _format, _kernels, _kernels64, load_index

from .test_index_kernels import clustered_words, naive_range_fast


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.sampled_from([1, 2, 50, 700, 3000]),
    m=st.integers(4, 16),
    r=st.one_of(st.integers(0, 10), st.integers(11, 64)),
    clustered=st.booleans(),
    many_queries=st.booleans(),
)
def test_mih64_matches_list_scan(seed: int, n: int, m: int, r: int, clustered: bool, many_queries: bool) -> None:
    """The partial-word tables answer exactly: every table layout, radii that probe one
    table up to every table, duplicates (equal partial words), removed rows, and the
    parallel kernel (64+ queries from the main thread)."""
    rng = np.random.default_rng(seed)
    words = (clustered_words(rng, n, 1, flips=6) if clustered
             else rng.integers(0, 2**64 - 1, size=(n, 1), dtype=np.uint64, endpoint=True))
    ids = rng.permutation(5 * n)[:n].astype(np.int64)
    index = MultiIndexHash.build(HashBatch(words, algorithm="t", bits=64), ids, substrings=m)
    dead = ids[rng.random(n) < 0.1]
    index.remove(dead)
    nq = 70 if many_queries else 7
    queries = np.concatenate([words[rng.integers(0, n, nq // 2)], clustered_words(rng, nq - nq // 2, 1, flips=6)])
    saved, _base._PARALLEL_MIN_PAIRS = _base._PARALLEL_MIN_PAIRS, 0  # small indexes too
    try:
        res = index.query(HashBatch(queries, algorithm="t", bits=64), r)
    finally:
        _base._PARALLEL_MIN_PAIRS = saved
    alive = (~np.isin(ids, dead)).astype(np.uint8)
    expected = [(qi, int(ids[i]), d) for qi, i, d in naive_range_fast(words, alive, queries, r)]
    assert sorted(zip(res.query_index.tolist(), res.ids.tolist(), res.distances.tolist())) == sorted(expected)
    assert len(set(zip(res.query_index.tolist(), res.ids.tolist()))) == len(res)  # each pair once


@given(w=st.integers(0, 2**64 - 1), start=st.integers(1, 48), length=st.integers(1, 16))
def test_part64_is_the_top_32_bits_without_the_substring(w: int, start: int, length: int) -> None:
    length = min(length, 64 - start)
    bits = format(w, "064b")
    rest = bits[:start] + bits[start + length :]
    assert int(_kernels64.part64(np.uint64(w), start, length)) == int(rest[:32], 2)
    assert int(_kernels64.key64(np.uint64(w), start, length)) == int(bits[start : start + length], 2)


@given(w=st.integers(0, 2**64 - 1), start=st.integers(0, 48), length=st.integers(1, 16))
def test_unpart64_rebuilds_the_bits_a_partial_word_and_its_key_hold(w: int, start: int, length: int) -> None:
    length = min(length, 64 - start)
    x = _kernels64.part64(np.uint64(w), start, length)
    key = _kernels64.key64(np.uint64(w), start, length)
    known = int(_kernels64.unpart64(x, key, start, length))
    mask = int(_kernels64.unpart64(np.uint32(0xFFFFFFFF), (1 << length) - 1, start, length))
    rest = [p for p in range(64) if not start <= p < start + length]  # bit 0 most significant
    held = set(range(start, start + length)) | set(rest[:32])
    assert mask == sum(1 << (63 - p) for p in held)
    assert known == w & mask  # the held bits are the row's, the others 0


@pytest.mark.parametrize("m", [4, 5, 8])
def test_mih64_many_queued_candidates_and_duplicate_rows(m: int) -> None:
    """One query with hundreds of candidates from tables t >= 1 (more than the kernel
    queues at once) and 400 copies of one row (more found rows than it checks at once)."""
    rng = np.random.default_rng(7)
    centre = rng.integers(0, 2**64 - 1, size=(1, 1), dtype=np.uint64, endpoint=True)
    words = np.repeat(centre, 3000, axis=0)
    for i in range(400, 3000):
        for p in rng.choice(64, size=int(rng.integers(1, 11)), replace=False):
            words[i, 0] ^= np.uint64(1) << np.uint64(63 - p)
    ids = np.arange(3000, dtype=np.int64)
    index = MultiIndexHash.build(HashBatch(words, algorithm="t", bits=64), ids, substrings=m)
    queries = np.concatenate([centre, words[[5, 900, 2999]]])
    alive = np.ones(3000, np.uint8)
    for r in (3, 10):
        res = index.query(HashBatch(queries, algorithm="t", bits=64), r)
        expected = [(qi, int(ids[i]), d) for qi, i, d in naive_range_fast(words, alive, queries, r)]
        assert sorted(zip(res.query_index.tolist(), res.ids.tolist(), res.distances.tolist())) == sorted(expected)


def test_mih64_memory_per_row() -> None:
    rng = np.random.default_rng(3)
    n = 200_000
    index = MultiIndexHash.build(HashBatch(rng.integers(0, 2**63, size=(n, 1), dtype=np.uint64), algorithm="t",
                                           bits=64), substrings=5)
    # rows 8 + ids 8 + removal mark 1 + 5 tables x 4 + offsets
    assert index.nbytes / n < 38


def _as_version_2(index: MultiIndexHash, path: Path) -> None:
    """Write ``index`` as a version 2 file: 64-bit tables of row numbers plus row copies."""
    offsets, entries, copies = _kernels.mih_tables(index._words, index._starts, index._lengths, index._table_at, True)
    n = index._words.shape[0]
    index.save(path)
    data = path.read_bytes()
    header = bytearray(data[: _format.HEADER_SIZE])
    struct.pack_into("<H", header, 8, 2)
    rows_end = _format.HEADER_SIZE + n * 16
    body = bytes(header) + data[_format.HEADER_SIZE : rows_end]
    for arr in (offsets.astype("<i4"), entries.astype("<u4"), copies.astype("<u8")):
        raw = arr.tobytes()
        body += raw + bytes(-len(raw) % 8)
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_version_2_files_of_64_bit_hashes_load_and_rebuild(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    words = clustered_words(rng, 4000, 1, flips=5)
    ids = rng.permutation(4000).astype(np.int64) * 3
    built = MultiIndexHash.build(HashBatch(words, algorithm="t", bits=64), ids)
    path = tmp_path / "v2.hmidx"
    _as_version_2(built, path)
    assert struct.unpack_from("<H", path.read_bytes(), 8)[0] == 2
    loaded = load_index(path)
    assert isinstance(loaded, MultiIndexHash) and loaded._entries.dtype == np.uint32
    assert not isinstance(loaded._entries, np.memmap)  # rebuilt from the rows, not mapped
    queries = HashBatch(np.concatenate([words[:30], clustered_words(rng, 30, 1)]), algorithm="t", bits=64)
    for r in (0, 4, 8, 20):
        a, b = built.query(queries, r), loaded.query(queries, r)
        assert a.ids.tolist() == b.ids.tolist() and a.distances.tolist() == b.distances.tolist()
    # and a version 4 file maps its tables
    built.save(path)
    assert struct.unpack_from("<H", path.read_bytes(), 8)[0] == _format.FORMAT_VERSION == 4
    assert isinstance(load_index(path)._entries, np.memmap) or isinstance(load_index(path)._entries.base, np.memmap)


def test_forged_partial_words_stay_in_bounds(tmp_path: Path) -> None:
    """Partial words are not bounds-checked (any value names a bucket of table 0): a
    forged file with a valid checksum loads and answers without reading out of bounds;
    forged offsets are still refused."""
    rng = np.random.default_rng(2)
    words = rng.integers(0, 2**64 - 1, size=(3000, 1), dtype=np.uint64, endpoint=True)
    path = tmp_path / "f.hmidx"
    MultiIndexHash.build(HashBatch(words, algorithm="t", bits=64), substrings=5).save(path)
    data = path.read_bytes()
    tables_at = _format.HEADER_SIZE + 3000 * 16
    specs = _format._table_specs("mih", 64, 5, 3000)
    parts_at = tables_at + _format._spec_bytes(specs[:1])
    forged = bytearray(data)
    forged[parts_at : parts_at + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    forged[parts_at + 4000 : parts_at + 4008] = b"\xff" * 8
    forged[-32:] = hashlib.sha256(bytes(forged[:-32])).digest()
    path.write_bytes(bytes(forged))
    index = MultiIndexHash.load(path)
    res = index.query(HashBatch(words[:50], algorithm="t", bits=64), 8)
    assert set(res.ids.tolist()) <= set(range(3000))
    forged[tables_at + 4 : tables_at + 8] = struct.pack("<i", 2**30)
    forged[-32:] = hashlib.sha256(bytes(forged[:-32])).digest()
    path.write_bytes(bytes(forged))
    with pytest.raises(CorruptIndexError, match="offsets"):
        MultiIndexHash.load(path)


def test_small_indexes_answer_batches_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch against a small index stays on one thread (waking the pool cost 250x the
    work); a batch against a large one still goes parallel when threads are available."""
    monkeypatch.setattr(_base, "use_parallel", lambda nq: nq >= _base._PARALLEL_MIN_QUERIES)
    assert not _base.query_in_parallel(512, 1_020)
    assert not _base.query_in_parallel(63, 10_000_000)
    assert _base.query_in_parallel(64, 1_000_000)
    calls: list[bool] = []
    words = np.random.default_rng(0).integers(0, 2**63, size=(1_020, 1), dtype=np.uint64)
    index = MultiIndexHash.build(HashBatch(words, algorithm="t", bits=64))
    real_search = index._search
    monkeypatch.setattr(index, "_search", lambda q, r, b, parallel, *a: (calls.append(parallel), real_search(q, r, b, parallel, *a))[1])
    res = index.query(HashBatch(np.repeat(words[:1], 512, axis=0), algorithm="t", bits=64), 0)
    assert calls and not any(calls)
    assert len(res) >= 512

"""The index file format: round trips, and every kind of damage is a CorruptIndexError."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from hashmatch.errors import CorruptIndexError
from hashmatch.hashes import HashBatch
from hashmatch.index import BKTree, Flat, MultiIndexHash, load_index
from hashmatch.index import _format


@pytest.fixture
def saved(tmp_path: Path, rng: np.random.Generator) -> Path:
    words = rng.integers(0, 2**64 - 1, size=(50, 4), dtype=np.uint64, endpoint=True)
    path = tmp_path / "pdq.hmidx"
    MultiIndexHash.build(HashBatch(words, algorithm="pdq", bits=256), ids=np.arange(50) * 3).save(path)
    return path


def rewrite_header(path: Path, offset: int, fmt: str, value: object) -> None:
    """Change one header field and fix the checksum, so only that field is wrong."""
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    path.write_bytes(bytes(data))


def test_format_round_trip_keeps_rows_ids_and_header(saved: Path) -> None:
    f = _format.read_index(saved)
    assert (f.kind, f.algorithm, f.bits, f.words.shape) == ("mih", "pdq", 256, (50, 4))
    assert sorted(f.ids.tolist()) == list(range(0, 150, 3))
    tables = _format._spec_bytes(_format._table_specs("mih", 256, f.parameter, 50))
    assert saved.stat().st_size == _format.HEADER_SIZE + 50 * (32 + 8) + tables + _format.CHECKSUM_SIZE
    assert saved.read_bytes()[:8] == _format.MAGIC
    built = MultiIndexHash.load(saved)
    assert [t.shape for t in f.tables] == [t.shape for t in built._file_tables()]
    assert f.tables[2].shape[0] == 0  # row copies are kept for 64-bit hashes only


def test_load_rejects_truncated_file(saved: Path) -> None:
    data = saved.read_bytes()
    for cut in (0, 5, 100, len(data) - 1, len(data) - 40):
        saved.write_bytes(data[:cut])
        with pytest.raises(CorruptIndexError, match="truncated"):
            load_index(saved) if cut >= 128 else MultiIndexHash.load(saved)


def test_load_rejects_trailing_bytes(saved: Path) -> None:
    saved.write_bytes(saved.read_bytes() + b"\0")
    with pytest.raises(CorruptIndexError, match="trailing"):
        MultiIndexHash.load(saved)


def test_load_rejects_flipped_bit_anywhere(saved: Path, rng: np.random.Generator) -> None:
    data = saved.read_bytes()
    for pos in [130, 1000, len(data) - 40, len(data) - 1, *rng.integers(128, len(data), 5).tolist()]:
        broken = bytearray(data)
        broken[pos] ^= 0x10
        saved.write_bytes(bytes(broken))
        with pytest.raises(CorruptIndexError, match="checksum"):
            MultiIndexHash.load(saved)


def test_load_rejects_bad_magic(saved: Path) -> None:
    saved.write_bytes(b"PK\x03\x04" + saved.read_bytes()[4:])
    with pytest.raises(CorruptIndexError, match="magic"):
        load_index(saved)


def test_load_rejects_newer_format_version(saved: Path) -> None:
    rewrite_header(saved, 8, "<H", _format.FORMAT_VERSION + 1)
    with pytest.raises(CorruptIndexError, match="newer"):
        MultiIndexHash.load(saved)


def test_load_rejects_wrong_kind(saved: Path) -> None:
    with pytest.raises(CorruptIndexError, match="expected 'flat'"):
        Flat.load(saved)
    with pytest.raises(CorruptIndexError, match="expected 'bktree'"):
        BKTree.load(saved)
    assert isinstance(load_index(saved), MultiIndexHash)


def test_load_rejects_unknown_kind(saved: Path) -> None:
    rewrite_header(saved, 16, "16s", b"lsh")
    with pytest.raises(CorruptIndexError, match="unknown index kind"):
        MultiIndexHash.load(saved)


def test_load_rejects_inconsistent_bits_and_counts(saved: Path) -> None:
    data = saved.read_bytes()
    for offset, fmt, value, message in [
        (80, "<I", 255, "bit length"),
        (84, "<I", 3, "bit length"),
        (88, "<Q", 51, "truncated"),
        (88, "<Q", 2**60, "truncated"),
        (96, "<I", 100, "substrings"),
        (12, "<I", 1, "flags"),
        (10, "<H", 64, "header size"),
    ]:
        saved.write_bytes(data)
        rewrite_header(saved, offset, fmt, value)
        with pytest.raises(CorruptIndexError, match=message):
            MultiIndexHash.load(saved)


def test_load_rejects_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(CorruptIndexError):
        load_index(tmp_path / "nope.hmidx")
    with pytest.raises(CorruptIndexError):
        Flat.load(tmp_path)


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path, rng: np.random.Generator) -> None:
    words = rng.integers(0, 2**63, size=(20, 1), dtype=np.uint64)
    path = tmp_path / "a.hmidx"
    Flat.build(HashBatch(words, algorithm="phash", bits=64)).save(path)
    Flat.build(HashBatch(words[:5], algorithm="phash", bits=64)).save(path)
    assert len(load_index(path)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["a.hmidx"]


def test_saved_file_holds_live_rows_only(tmp_path: Path, rng: np.random.Generator) -> None:
    words = rng.integers(0, 2**63, size=(40, 1), dtype=np.uint64)
    idx = BKTree.build(HashBatch(words, algorithm="phash", bits=64))
    idx.remove([3, 4])
    idx.save(tmp_path / "b.hmidx")
    f = _format.read_index(tmp_path / "b.hmidx")
    assert f.words.shape[0] == 38 and not {3, 4} & set(f.ids.tolist())


def _tables_start(path: Path, nw: int = 4) -> int:
    n = struct.unpack_from("<Q", path.read_bytes(), 88)[0]
    return _format.HEADER_SIZE + n * (8 * nw + 8)


def rewrite_bytes(path: Path, offset: int, raw: bytes) -> None:
    """Overwrite bytes and fix the checksum: a forged file that passes the checksum."""
    data = bytearray(path.read_bytes())
    data[offset : offset + len(raw)] = raw
    data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    path.write_bytes(bytes(data))


def test_damage_in_the_table_sections_is_caught(saved: Path, rng: np.random.Generator) -> None:
    data = saved.read_bytes()
    start = _tables_start(saved)
    for pos in [start, start + 7, len(data) - 33, *rng.integers(start, len(data) - 32, 8).tolist()]:
        broken = bytearray(data)
        broken[pos] ^= 0x01
        saved.write_bytes(bytes(broken))
        with pytest.raises(CorruptIndexError, match="checksum"):
            MultiIndexHash.load(saved)
    for cut in (start + 1, len(data) - 33):
        saved.write_bytes(data[:cut])
        with pytest.raises(CorruptIndexError, match="truncated"):
            load_index(saved)


@pytest.mark.parametrize("bits", [64, 256])
def test_forged_tables_with_valid_checksum_cannot_reach_out_of_bounds(
    tmp_path: Path, rng: np.random.Generator, bits: int
) -> None:
    """Offsets and row numbers (longer hashes' records) are bounds-checked:
    a kernel never indexes past the rows."""
    words = rng.integers(0, 2**64 - 1, size=(50, bits // 64), dtype=np.uint64, endpoint=True)
    saved = tmp_path / "t.hmidx"
    MultiIndexHash.build(HashBatch(words, algorithm="x", bits=bits)).save(saved)
    data = saved.read_bytes()
    f = _format.read_index(saved)
    specs = _format._table_specs("mih", bits, f.parameter, 50)
    offsets_at = _tables_start(saved, bits // 64)
    entries_at = offsets_at + _format._spec_bytes(specs[:1])
    # the row number of a record is the low half of its second word
    rows_at = offsets_at + _format._spec_bytes(specs[:3]) + 8
    forged_rows = (
        []  # 64-bit tables hold partial words, not row numbers (test_index64_kernels forges them)
        if bits == 64 else
        [(rows_at, struct.pack("<I", 50), "record"), (rows_at + 16 * 7, struct.pack("<I", 2**32 - 1), "record")]
    )
    for offset, raw, message in [
        (offsets_at, struct.pack("<i", 1), "offsets"),  # the first bucket does not start at 0
        (offsets_at + 4, struct.pack("<i", 2**30), "offsets"),  # past the rows
        (offsets_at + 4, struct.pack("<i", -5), "offsets"),  # decreasing
        *forged_rows,  # a row number == n, and far past it
    ]:
        saved.write_bytes(data)
        rewrite_bytes(saved, offset, raw)
        with pytest.raises(CorruptIndexError, match=message):
            MultiIndexHash.load(saved)
    if bits > 64:  # the high half of a record is filter bits: any value is in bounds
        saved.write_bytes(data)
        rewrite_bytes(saved, rows_at + 4, struct.pack("<I", 2**32 - 1))
        MultiIndexHash.load(saved)


def test_non_zero_padding_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    # 63 tables (4 of 5 bits, 59 of 4): an odd number of int32 offsets, so 4 bytes of padding.
    words = rng.integers(0, 2**63, size=(3, 4), dtype=np.uint64)
    path = tmp_path / "p.hmidx"
    MultiIndexHash.build(HashBatch(words, algorithm="pdq", bits=256), substrings=63).save(path)
    nbuckets = _format._table_specs("mih", 256, 63, 3)[0][2][0]
    assert nbuckets % 2 == 1
    padding_at = _tables_start(path) + nbuckets * 4
    assert path.read_bytes()[padding_at : padding_at + 4] == bytes(4)
    rewrite_bytes(path, padding_at, b"\x01")
    with pytest.raises(CorruptIndexError, match="padding"):
        MultiIndexHash.load(path)


def _as_version_1(path: Path, target: Path) -> None:
    """Write a saved index as a version 1 file (rows only, no tables)."""
    data = path.read_bytes()
    header = bytearray(data[:_format.HEADER_SIZE])
    struct.pack_into("<H", header, 8, 1)
    n, nw = struct.unpack_from("<Q", header, 88)[0], struct.unpack_from("<I", header, 84)[0]
    body = bytes(header) + data[_format.HEADER_SIZE : _format.HEADER_SIZE + n * (nw * 8 + 8)]
    target.write_bytes(body + hashlib.sha256(body).digest())


def _as_version_2(path: Path, target: Path) -> None:
    """Write a saved (version 4) multi-index as a version 2 file: the entries of every
    table as uint32 row numbers, no records section."""
    f = _format.read_index(path)
    entries = f.tables[1] if f.bits == 64 else (f.tables[3][:, 1] & np.uint64(0xFFFFFFFF)).astype("<u4")
    header = bytearray(path.read_bytes()[: _format.HEADER_SIZE])
    struct.pack_into("<H", header, 8, 2)
    body = bytes(header)
    for arr in (f.words, f.ids, f.tables[0], entries, f.tables[2]):
        raw = np.ascontiguousarray(arr).tobytes()
        body += raw + bytes(-len(raw) % 8)
    target.write_bytes(body + hashlib.sha256(body).digest())


def _mapped(arr: np.ndarray) -> bool:
    return isinstance(arr, np.memmap) or isinstance(arr.base, np.memmap)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("nw", [1, 2, 4])
def test_loaded_tables_answer_like_the_built_index_and_brute_force(tmp_path: Path, seed: int, nw: int) -> None:
    """Version 4 (mapped tables), version 2 (mapped entries; longer hashes derive their
    records) and version 1 (rebuilt tables) files answer exactly."""
    rng = np.random.default_rng(seed)
    n = 3000
    words = rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True)
    # Near-duplicates so small radii have matches.
    words[n // 2 :] = words[: n - n // 2] ^ (np.uint64(1) << rng.integers(0, 64, (n - n // 2, nw)).astype(np.uint64))
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    bits = 64 * nw
    batch = HashBatch(words, algorithm="x", bits=bits)
    built = MultiIndexHash.build(batch, ids)
    queries = np.concatenate([words[rng.integers(0, n, 40)], rng.integers(0, 2**63, size=(20, nw), dtype=np.uint64)])
    qbatch = HashBatch(queries, algorithm="x", bits=bits)
    path = tmp_path / "t.hmidx"
    built.save(path)
    v3 = MultiIndexHash.load(path)
    assert _mapped(v3._entries if nw == 1 else v3._records)  # mapped, not built
    if nw > 1:  # 64-bit version 2 files (row copies) are test_index64_kernels' case
        _as_version_2(path, tmp_path / "v2.hmidx")  # other files: path stays mapped by v3
        v2 = MultiIndexHash.load(tmp_path / "v2.hmidx")
        assert _mapped(v2._offsets) and not _mapped(v2._entries)
    else:
        v2 = built
    _as_version_1(path, tmp_path / "v1.hmidx")
    v1 = MultiIndexHash.load(tmp_path / "v1.hmidx")
    assert not _mapped(v1._offsets) and not _mapped(v1._records)  # rebuilt
    for index in (v3, v2, v1):
        assert index.nbytes == built.nbytes
    dist = np.zeros((len(queries), n), dtype=np.int64)
    for k in range(nw):
        x = queries[:, None, k] ^ words[None, :, k]
        dist += np.unpackbits(np.ascontiguousarray(x).view(np.uint8).reshape(len(queries), n, 8), axis=-1).sum(-1, dtype=np.int64)
    for r in (0, 1, 3, bits // 8, bits // 4):
        qi, col = np.nonzero(dist <= r)
        expected = sorted(zip(qi.tolist(), dist[qi, col].tolist(), ids[col].tolist()))
        for name, index in (("built", built), ("v3", v3), ("v2", v2), ("v1", v1)):
            res = index.query(qbatch, r)
            assert name and sorted(zip(res.query_index.tolist(), res.distances.tolist(), res.ids.tolist())) == expected
    v3.remove(ids[:10])
    res = v3.query(qbatch, bits // 8)
    assert not set(ids[:10].tolist()) & set(res.ids.tolist())

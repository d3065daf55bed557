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
    assert saved.stat().st_size == _format.HEADER_SIZE + 50 * (32 + 8) + _format.CHECKSUM_SIZE
    assert saved.read_bytes()[:8] == _format.MAGIC


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
    rewrite_header(saved, 8, "<H", 2)
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

"""Index files and Matcher snapshots: empty indexes, bounded headers, snapshots bound to their
store, special files under a snapshot's name (issue 10, item 11)."""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from hashmatch import Matcher
from hashmatch.errors import CorruptIndexError
from hashmatch.hashes import Hash, HashBatch
from hashmatch.index import BKTree, Flat, MultiIndexHash, load_index
from hashmatch.index import _format
from hashmatch._store import NewEntry, ReferenceStore


@pytest.mark.parametrize("cls", [Flat, MultiIndexHash, BKTree])
def test_empty_index_saves_and_loads(tmp_path: Path, cls: type) -> None:
    path = tmp_path / "empty.hmidx"
    cls.build(HashBatch(np.zeros((0, 4), np.uint64), algorithm="pdq", bits=256)).save(path)
    for loaded in (load_index(path), cls.load(path)):
        assert type(loaded) is cls and len(loaded) == 0
        assert len(loaded.query(HashBatch(np.zeros((1, 4), np.uint64), algorithm="pdq", bits=256), 256)) == 0


def _forged(path: Path, bits: int, n: int, parameter: int, kind: bytes = b"mih") -> None:
    """A file with a valid checksum whose header claims whatever we like."""
    nw = bits // 64
    header = _format._HEADER.pack(_format.MAGIC, 1, 128, 0, kind, b"pdq", bits, nw, n, parameter, b"", b"x")
    body = header + bytes(n * (nw * 8 + 8))
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_huge_bit_length_is_refused_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "forged.hmidx"
    _forged(path, 131_072, 1, 8192)
    assert path.stat().st_size < 17_000
    with pytest.raises(CorruptIndexError, match="over the limit"):
        load_index(path)


@pytest.mark.parametrize(("kind", "parameter"), [(b"mih", 0), (b"mih", 10**6), (b"flat", 3)])
def test_out_of_range_parameter_is_refused(tmp_path: Path, kind: bytes, parameter: int) -> None:
    path = tmp_path / "forged.hmidx"
    _forged(path, 256, 2, parameter, kind)
    with pytest.raises(CorruptIndexError):
        load_index(path)


def test_origin_round_trip_and_mismatch(tmp_path: Path, rng: np.random.Generator) -> None:
    words = rng.integers(0, 2**63, size=(30, 1), dtype=np.uint64)
    path = tmp_path / "snap.hmidx"
    origin = _format.Origin("0123456789abcdef", 7, "fedcba9876543210")
    Flat.build(HashBatch(words, algorithm="phash", bits=64)).save(path, origin=origin)
    assert _format.read_index(path).origin == origin
    assert len(load_index(path, origin=origin)) == 30
    for wrong in (_format.Origin("0123456789abcdee", 7, origin.token), _format.Origin(origin.store_id, 8, origin.token)):
        with pytest.raises(CorruptIndexError, match="not written as this snapshot"):
            load_index(path, origin=wrong)
    plain = tmp_path / "plain.hmidx"
    Flat.build(HashBatch(words, algorithm="phash", bits=64)).save(plain)
    with pytest.raises(CorruptIndexError, match="no origin"):
        load_index(plain, origin=origin)


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.hmidx"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(CorruptIndexError, match="regular file|cannot open"):
            load_index(path)


def _store(path: Path, seed: int, n: int = 1500) -> list[Hash]:
    rng = np.random.default_rng(seed)
    hashes = [Hash(int(v), "phash", 64) for v in rng.integers(0, 2**63, size=n)]
    with ReferenceStore(path) as s:
        s.add_entries("L", [NewEntry(h) for h in hashes], return_ids=False)
    return hashes


def _snapshot_files(store_path: Path) -> list[Path]:
    return sorted(Path(str(store_path) + ".snapshots").glob("*.hmidx"))


def test_snapshot_from_another_store_under_the_name_is_not_trusted(tmp_path: Path) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    hashes_a, _ = _store(a, 1), _store(b, 2)
    for path in (a, b):
        Matcher.from_store(path, algorithms=["phash"]).close()
    (snap_a,), (snap_b,) = _snapshot_files(a), _snapshot_files(b)
    snap_a.write_bytes(snap_b.read_bytes())  # a valid, checksummed index: of the wrong store
    with Matcher.from_store(a, algorithms=["phash"]) as m:
        assert len(m.match_hashes({"phash": [hashes_a[5]]})) == 1
    (fresh,) = _snapshot_files(a)
    assert load_index(fresh) is not None and fresh.read_bytes() != snap_b.read_bytes()


def test_fifo_under_the_snapshot_name_falls_back_to_a_rebuild(tmp_path: Path) -> None:
    a = tmp_path / "a.db"
    hashes = _store(a, 3)
    Matcher.from_store(a, algorithms=["phash"]).close()
    (snap,) = _snapshot_files(a)
    snap.unlink()
    os.mkfifo(snap)
    result: list[int] = []

    def run() -> None:
        with Matcher.from_store(a, algorithms=["phash"]) as m:
            result.append(len(m.match_hashes({"phash": [hashes[0]]})))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "from_store blocked on a FIFO snapshot"
    assert result == [1]


def test_truncated_snapshot_falls_back_to_a_rebuild(tmp_path: Path) -> None:
    a = tmp_path / "a.db"
    hashes = _store(a, 4)
    Matcher.from_store(a, algorithms=["phash"]).close()
    (snap,) = _snapshot_files(a)
    data = snap.read_bytes()
    for cut in (0, 100, 200, len(data) // 2, len(data) - 1):
        snap.write_bytes(data[:cut])
        with Matcher.from_store(a, algorithms=["phash"], cache_snapshots=True) as m:
            assert len(m.match_hashes({"phash": [hashes[-1]]})) == 1
        (snap,) = _snapshot_files(a)
        data = snap.read_bytes()
    assert struct.unpack_from("<I", data, 12)[0] == _format.FLAG_ORIGIN

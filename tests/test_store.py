"""ReferenceStore: lists, adds, duplicates, retraction, export, atomic imports, schema checks."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from hashmatch.errors import HashListError, InvalidHashError, StoreError
from hashmatch.hashes import Hash
from hashmatch._store import SCHEMA_VERSION, NewEntry, ReferenceStore


def _phash(rng: np.random.Generator) -> Hash:
    return Hash(int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2)), "phash", 64)


def _csv(hashes: list[Hash]) -> str:
    return "hash,algorithm,id\n" + "".join(f"{h.hex()},{h.algorithm},x{i}\n" for i, h in enumerate(hashes))


@pytest.fixture
def store(tmp_path: Path):
    with ReferenceStore(tmp_path / "refs.db") as s:
        yield s


def test_store_new_file_is_wal_and_versioned(store: ReferenceStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()
    assert len(store) == 0 and store.generation == 0


def test_store_open_refuses_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "refs.db"
    ReferenceStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="version 99"):
        ReferenceStore(path)


def test_store_open_refuses_other_sqlite_and_garbage(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a hashmatch reference store"):
        ReferenceStore(other)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError):
        ReferenceStore(garbage)


def test_store_open_missing_without_create_raises(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no reference store"):
        ReferenceStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_store_lists_create_and_duplicate_name(store: ReferenceStore) -> None:
    info = store.create_list("csam-a", source="partner", description="test list")
    assert (info.name, info.source, info.description) == ("csam-a", "partner", "test list")
    with pytest.raises(StoreError, match="already exists"):
        store.create_list("csam-a")
    assert store.ensure_list("csam-a").source == "partner"
    assert [lst.name for lst in store.lists()] == ["csam-a"]
    with pytest.raises(StoreError):
        store.create_list("")


def test_store_add_get_find_and_duplicates(store: ReferenceStore, rng: np.random.Generator) -> None:
    h = _phash(rng)
    entry_id = store.add("L", h, label="cat", external_id="e1")
    assert entry_id is not None
    assert store.add("L", h) is None  # same list, same hash: duplicate
    other = store.add("M", h)  # another list may hold the same hash
    assert other is not None and other != entry_id
    entry = store.get(entry_id)
    assert entry is not None
    assert (entry.hash, entry.list_name, entry.label, entry.external_id, entry.retracted) == (h, "L", "cat", "e1", None)
    assert h.hex() not in repr(entry)  # known-material hashes stay out of reprs
    assert sorted(e.entry_id for e in store.find(h)) == sorted([entry_id, other])
    assert store.get(10**9) is None


def test_store_add_rejects_wrong_bit_length_and_unknown_algorithm(store: ReferenceStore) -> None:
    with pytest.raises(InvalidHashError, match="64 bits"):
        store.add("L", Hash(1, "phash", 256))
    with pytest.raises(InvalidHashError, match="unknown algorithm"):
        store.add("L", Hash(1, "md5", 128))
    with pytest.raises(InvalidHashError, match="quality"):
        store.add("L", Hash(1, "pdq", 256), quality=101)
    assert len(store) == 0


def test_store_add_entries_reports_counts(store: ReferenceStore, rng: np.random.Generator) -> None:
    hashes = [_phash(rng) for _ in range(10)]
    report = store.add_entries("L", [NewEntry(h) for h in hashes + hashes[:3]])
    assert (report.added, report.duplicates, report.rejected_count) == (10, 3, 0)
    assert len(report.entry_ids) == 10 and len(store) == 10


def test_store_retract_keeps_entry_for_audit(store: ReferenceStore, rng: np.random.Generator) -> None:
    ids = store.add_entries("L", [NewEntry(_phash(rng)) for _ in range(4)]).entry_ids
    gen = store.generation
    assert store.retract([ids[0], ids[1], 10**9], reason="false positive") == 2
    assert store.retract([ids[0]]) == 0  # already retracted
    assert store.generation == gen + 1
    entry = store.get(ids[0])
    assert entry is not None and entry.retracted is not None and entry.retract_reason == "false positive"
    assert len(store) == 2
    assert [e.entry_id for e in store.entries()] == list(ids[2:])
    assert len(list(store.entries(include_retracted=True))) == 4
    assert store.find(entry.hash) == [] and len(store.find(entry.hash, include_retracted=True)) == 1
    stats = {(s.list_name, s.algorithm): (s.active, s.retracted) for s in store.stats()}
    assert stats == {("L", "phash"): (2, 2)}


def test_store_retracted_hash_can_be_added_again(store: ReferenceStore, rng: np.random.Generator) -> None:
    h = _phash(rng)
    first = store.add("L", h)
    store.retract([first])  # type: ignore[list-item]
    second = store.add("L", h)
    assert second is not None and second != first


def test_store_generation_counts_only_changes(store: ReferenceStore, rng: np.random.Generator) -> None:
    h = _phash(rng)
    store.add("L", h)
    gen = store.generation
    store.add("L", h)  # duplicate: nothing changed
    store.retract([10**9])
    assert store.generation == gen


def test_store_read_active_and_changes(store: ReferenceStore, rng: np.random.Generator) -> None:
    first = store.add_entries("L", [NewEntry(_phash(rng)) for _ in range(5)]).entry_ids
    batch, ids, gen = store.read_active("phash")
    assert list(ids) == list(first) and len(batch) == 5
    assert [store.get(int(i)).hash for i in ids] == list(batch)  # type: ignore[union-attr]
    later = store.add_entries("L", [NewEntry(_phash(rng)) for _ in range(3)]).entry_ids
    store.retract([first[0], later[0]])
    added, added_ids, removed, gen2 = store.read_changes("phash", gen)
    assert gen2 == gen + 2
    assert list(added_ids) == list(later[1:])  # added then retracted: in neither
    assert list(removed) == [first[0]]
    assert list(added) == [store.get(i).hash for i in later[1:]]  # type: ignore[union-attr]


def test_store_read_active_packs_256_bit_hashes(store: ReferenceStore, rng: np.random.Generator) -> None:
    hashes = [Hash(int.from_bytes(rng.bytes(32), "big"), "pdq", 256) for _ in range(7)]
    store.add_entries("P", [NewEntry(h, quality=80) for h in hashes])
    batch, _, _ = store.read_active("pdq")
    assert list(batch) == hashes


def test_store_import_file_reports_added_duplicates_rejected(store: ReferenceStore, rng: np.random.Generator) -> None:
    hashes = [_phash(rng) for _ in range(4)]
    text = _csv(hashes) + f"{hashes[0].hex()},phash,dup\nnothex,phash,bad\n"
    report = store.import_file(io.StringIO(text), "L", source_name="partner")
    assert (report.added, report.duplicates) == (4, 1)
    assert [(r.line, "hexadecimal" in r.reason) for r in report.rejected] == [(7, True)]
    again = store.import_file(io.StringIO(_csv(hashes)), "L")
    assert (again.added, again.duplicates) == (0, 4)
    assert store.get_list("L").source == "partner"  # type: ignore[union-attr]


def test_store_import_strict_adds_nothing_on_a_bad_row(store: ReferenceStore, rng: np.random.Generator) -> None:
    text = _csv([_phash(rng) for _ in range(3)]) + "nothex,phash,bad\n"
    with pytest.raises(HashListError, match="line 5"):
        store.import_file(io.StringIO(text), "L", strict=True)
    assert len(store) == 0 and store.generation == 0


def test_store_import_failing_mid_way_leaves_store_unchanged(store: ReferenceStore, rng: np.random.Generator) -> None:
    store.add("L", _phash(rng))
    gen, count = store.generation, len(store)

    class Broken(io.StringIO):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield "hash,algorithm\n"
            for _ in range(30_000):  # past one write chunk
                yield f"{_phash(rng).hex()},phash\n"
            raise OSError("disk went away")

    with pytest.raises(HashListError):
        store.import_file(Broken(), "L")
    assert (store.generation, len(store)) == (gen, count)


def test_store_import_killed_mid_way_leaves_store_unchanged(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "refs.db"
    with ReferenceStore(path) as s:
        s.add("L", _phash(rng))
    script = textwrap.dedent(
        f"""
        import os, signal
        from hashmatch._store import ReferenceStore
        def rows():
            yield "hash,algorithm\\n"
            for i in range(50_000):
                yield format(i, "016x") + ",phash\\n"
            os.kill(os.getpid(), signal.SIGKILL)  # killed after several chunks were written
        ReferenceStore({str(path)!r}).import_file(rows(), "L")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    with ReferenceStore(path) as s:
        assert len(s) == 1 and s.generation == 1


def test_store_export_formats(store: ReferenceStore, rng: np.random.Generator, tmp_path: Path) -> None:
    hashes = [_phash(rng) for _ in range(3)]
    ids = store.add_entries("L", [NewEntry(h, label=f"l{i}") for i, h in enumerate(hashes)]).entry_ids
    store.add("M", Hash(5, "dhash", 64))
    store.retract([ids[0]])
    out = tmp_path / "out.csv"
    assert store.export_file(out, list_name="L") == 2
    with ReferenceStore(tmp_path / "copy.db") as copy:
        report = copy.import_file(out, "L2")
        assert report.added == 2 and not report.rejected
        assert sorted(e.hash.value for e in copy.entries()) == sorted(h.value for h in hashes[1:])
        assert sorted(e.label for e in copy.entries()) == ["l1", "l2"]  # type: ignore[type-var]
    buf = io.StringIO()
    assert store.export_file(buf, format="hex", algorithm="dhash") == 1
    assert buf.getvalue() == "0000000000000005\n"
    with pytest.raises(StoreError, match="no list"):
        store.export_file(io.StringIO(), list_name="nope")


def test_store_serves_several_threads(store: ReferenceStore, rng: np.random.Generator) -> None:
    hashes = [_phash(rng) for _ in range(40)]
    errors: list[BaseException] = []

    def work(part: list[Hash]) -> None:
        try:
            for h in part:
                store.add("L", h)
                assert store.find(h)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(hashes[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(store) == 40


def test_store_closed_raises_store_error(tmp_path: Path) -> None:
    s = ReferenceStore(tmp_path / "refs.db")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        len(s)


def test_store_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        ReferenceStore(tmp_path / "no" / "such" / "dir" / "refs.db")
    with pytest.raises(StoreError):
        ReferenceStore(tmp_path)  # a directory

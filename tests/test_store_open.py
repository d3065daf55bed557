"""Opening stores: never create over an existing file, read-only deployments, stats and export
edges (issue 10, items 3, 4, 12 and 13)."""

from __future__ import annotations

import ctypes
import io
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashmatch.errors import HashListError, StoreError
from hashmatch.hashes import Hash
from hashmatch._store import NewEntry, ReferenceStore


def _grey_png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _filled(path: Path, n: int = 20, seed: int = 1) -> list[Hash]:
    rng = np.random.default_rng(seed)
    hashes = [Hash(int(rng.integers(0, 2**62)), "phash", 64) for _ in range(n)]
    with ReferenceStore(path) as s:
        s.add_entries("L", [NewEntry(h) for h in hashes], return_ids=False)
    return hashes


@pytest.mark.parametrize("content", [b"", b"\0", b"x", b"SQLite format 3\0"])
def test_existing_tiny_file_is_refused_and_left_unchanged(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "refs.db"
    path.write_bytes(content)
    for create in (True, False):
        with pytest.raises(StoreError, match="not a reference store"):
            ReferenceStore(path, create=create)
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refs.db"]


def test_empty_sqlite_database_is_not_taken_as_an_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "blank.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 0")
    conn.execute("VACUUM")  # a valid, schema-less SQLite file
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not a hashmatch reference store"):
        ReferenceStore(path)
    assert path.read_bytes() == before


def test_fifo_under_the_store_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "refs.db"
    os.mkfifo(path)
    with pytest.raises(StoreError, match="not a regular file"):
        ReferenceStore(path)


def test_nul_in_store_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="NUL"):
        ReferenceStore(str(tmp_path / "a\0b.db"))


def test_create_leaves_no_temporary_files(tmp_path: Path) -> None:
    ReferenceStore(tmp_path / "refs.db").close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refs.db"]


def test_missing_meta_rows_and_bad_generation_are_store_errors(tmp_path: Path) -> None:
    path = tmp_path / "refs.db"
    _filled(path)
    for sql, message in [
        ("UPDATE meta SET value = 'x7' WHERE key = 'generation'", "generation"),
        ("DELETE FROM meta WHERE key = 'generation'", "generation"),
        ("DELETE FROM meta WHERE key = 'store_id'", "store id"),
        ("DROP TABLE snapshots", "snapshots"),
    ]:
        copy = tmp_path / "copy.db"
        conn = sqlite3.connect(path)
        conn.execute(f"VACUUM INTO '{copy}'")
        conn.close()
        conn = sqlite3.connect(copy)
        conn.execute(sql)
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match=message):
            ReferenceStore(copy, create=False)
        copy.unlink()


def test_generation_damaged_after_open_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "refs.db"
    _filled(path)
    with ReferenceStore(path) as s:
        conn = sqlite3.connect(path)
        conn.execute("UPDATE meta SET value = '1.5' WHERE key = 'generation'")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="generation"):
            s.generation  # noqa: B018
        with pytest.raises(StoreError, match="generation"):
            s.add("L", Hash(5, "phash", 64))
        with pytest.raises(StoreError, match="generation"):
            s.read_active("phash")


def test_readonly_store_refuses_writes_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "refs.db"
    hashes = _filled(path)
    with ReferenceStore(path, readonly=True) as s:
        assert len(s) == len(hashes)
        with pytest.raises(StoreError, match="read-only"):
            s.add("L", Hash(1, "phash", 64))
    with pytest.raises(StoreError, match="no reference store"):
        ReferenceStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


_READONLY_SCRIPT = """
import logging, os, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
from hashmatch import Matcher
from hashmatch._store import ReferenceStore
from hashmatch.hashes import Hash
from hashmatch.cli import main
path, wanted = sys.argv[1], int(sys.argv[2], 16)
with ReferenceStore(path, readonly=True) as store:
    print("len", len(store), "gen", store.generation)
with Matcher.from_store(path, readonly=True, algorithms=["phash"]) as m:
    found = m.match_hashes({"phash": [Hash(wanted, "phash", 64)]})
    print("matched", len(found))
print("stats", main(["refs", "stats", "--store", path]))
print("export", main(["refs", "export", "--store", path, "-o", "-"]))
image = sys.argv[3]
print("match", main(["match", image, "--store", path]))
print("scan", main(["scan", os.path.dirname(image), "--store", path, "--workers", "0", "-q"]))
"""


def _without_root_overrides() -> None:
    """In the child: drop the capabilities that let root ignore file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_readonly_file_in_readonly_folder_serves_matches(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "refs.db"
    hashes = _filled(path)
    images = tmp_path / "images"
    images.mkdir()
    (images / "grey.png").write_bytes(_grey_png())
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    try:
        env = {**os.environ, "HOME": str(folder), "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_READONLY_SCRIPT), str(path), hashes[3].hex(), str(images / "grey.png")],
            capture_output=True, text=True, timeout=300, env=env, cwd=str(folder),
            preexec_fn=_without_root_overrides if os.geteuid() == 0 else None,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"len {len(hashes)} gen 1" in proc.stdout
        assert "matched 1" in proc.stdout
        assert "not caching index snapshots" in proc.stdout
        for command in ("stats", "export", "match", "scan"):
            assert f"{command} 0" in proc.stdout, proc.stdout + proc.stderr[-2000:]
        assert sorted(p.name for p in folder.iterdir()) == ["refs.db"]
    finally:
        os.chmod(folder, stat.S_IRWXU)


def test_readonly_folder_refuses_a_wal_it_cannot_see(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "refs.db"
    _filled(path)
    writer = sqlite3.connect(path)  # an open writer keeps its changes in the -wal
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE meta SET value = '2' WHERE key = 'generation'")
    writer.commit()
    copy = tmp_path / "copy"
    copy.mkdir()
    for suffix in ("", "-wal"):  # a copy without its -shm, as a deploy step might make
        (copy / ("refs.db" + suffix)).write_bytes(Path(str(path) + suffix).read_bytes())
    writer.close()
    os.chmod(copy, 0o555)
    script = textwrap.dedent("""
        import sys
        from hashmatch._store import ReferenceStore
        from hashmatch.errors import StoreError
        try:
            ReferenceStore(sys.argv[1], readonly=True)
        except StoreError as exc:
            print("refused:", exc)
    """)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(copy / "refs.db")], capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            preexec_fn=_without_root_overrides if os.geteuid() == 0 else None,
        )
    finally:
        os.chmod(copy, stat.S_IRWXU)
    assert "refused:" in proc.stdout and "-wal" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_stats_counts_an_empty_list_as_empty(tmp_path: Path) -> None:
    with ReferenceStore(tmp_path / "refs.db") as s:
        s.create_list("empty")
        s.add("full", Hash(3, "phash", 64))
        stats = {(st.list_name, st.algorithm): (st.active, st.retracted) for st in s.stats()}
    assert stats == {("empty", ""): (0, 0), ("full", "phash"): (1, 0)}


def test_failed_export_leaves_no_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "refs.db"
    with ReferenceStore(path) as s:
        s.add("L", Hash(3, "phash", 64))
        s.add("L", Hash(4, "phash", 64))
        target = tmp_path / "out.pdq"
        target.write_text("previous export\n")
        with pytest.raises(HashListError):
            s.export_file(target, format="pdq")  # phash rows cannot go in a PDQ list
        assert target.read_text() == "previous export\n"
        assert sorted(p.name for p in tmp_path.iterdir() if "refs.db" not in p.name) == ["out.pdq"]
        assert s.export_file(tmp_path / "ok.csv") == 2


def test_retract_out_of_range_id_is_a_store_error(tmp_path: Path) -> None:
    with ReferenceStore(tmp_path / "refs.db") as s:
        with pytest.raises(StoreError, match="entry id"):
            s.retract([99999999999999999999])


def test_a_second_open_in_one_process_keeps_the_first_ones_commits(tmp_path):
    # Closing any descriptor of the database file drops this process's POSIX locks: if
    # opening a store read its header through a descriptor of its own, another process
    # would then see no reader, checkpoint and delete the -wal the first store writes to.
    path = tmp_path / "s.db"
    first = ReferenceStore(path)
    first.add_entries("L", [NewEntry(Hash(1, "phash", 64))])
    second = ReferenceStore(path, create=False, readonly=True)
    script = "import sys; from hashmatch import ReferenceStore; ReferenceStore(sys.argv[1], create=False).close()"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120)
    first.add_entries("L", [NewEntry(Hash(2, "phash", 64))])
    first.close()
    second.close()
    with ReferenceStore(path, create=False) as again:
        assert len(again) == 2

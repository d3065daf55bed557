"""Local-stage snapshots (issue 12): the LocalIndex's retrieval index cached beside the store,
bound to it, refreshed by layers, and never the cause of a wrong match."""

from __future__ import annotations

import hashlib
import shutil
import sys
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from hashmatch import Matcher, ReferenceStore
from hashmatch.cli import main
from hashmatch.hashers import compute_hashes
from hashmatch.hashes import Hash, HashBatch
from hashmatch.index import Flat, MultiIndexHash, load_index
from hashmatch.index import _format
from hashmatch.local import LocalFeatures, LocalIndex, reference_features
from hashmatch.local._snapshot import SNAPSHOT_NAME, count_owners
from hashmatch.local._tables import DescriptorIndex
from hashmatch.testing.synthetic import generate_image
from hashmatch.testing.transforms import crop
from hashmatch import _local_stage
from hashmatch._snapshots import SnapshotCache
from hashmatch._store import NewEntry

# -- synthetic references: retrieval is what a snapshot holds, so random descriptors do ---------


def _features(rng: np.random.Generator, n: int = 24) -> LocalFeatures:
    xy = rng.uniform(0, 500, size=(n, 2)).astype(np.float32)
    return LocalFeatures(xy, rng.integers(0, 8, n).astype(np.uint8), rng.integers(0, 256, (n, 32), dtype=np.uint8),
                         512, 384, 1.0)


def _add(store: ReferenceStore, rng: np.random.Generator, count: int, *, features: bool = True) -> list[int]:
    entries = [NewEntry(Hash(int.from_bytes(rng.bytes(8), "big"), "phash", 64))
               for _ in range(count)]
    ids = list(store.add_entries("L", entries).entry_ids)
    if features:
        store.add_local_features([(i, _features(rng).to_row()) for i in ids])
    return ids


def _queries(store: ReferenceStore, rng: np.random.Generator) -> list[LocalFeatures]:
    """Uploads whose descriptors sit a few bits from stored ones, retracted ones included
    (and some random ones)."""
    blobs = [r[0] for r in store._conn().execute("SELECT substr(descriptors, 1, 512) FROM local_features")]
    rows = np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, 32)
    out = []
    for _ in range(3):
        picked = rows[rng.integers(0, len(rows), 40)] if len(rows) else np.zeros((0, 32), np.uint8)
        noise = np.zeros_like(picked)
        for _ in range(4):  # up to four bits per row
            noise[np.arange(len(picked)), rng.integers(0, 32, len(picked))] |= (1 << rng.integers(0, 8, len(picked))).astype(np.uint8)
        desc = np.concatenate([picked ^ noise, rng.integers(0, 256, (10, 32), dtype=np.uint8)])
        out.append(LocalFeatures(np.zeros((len(desc), 2), np.float32), np.zeros(len(desc), np.uint8), desc, 640, 480, 1.0))
    return out


def _answers(local: LocalIndex | None, queries: list[LocalFeatures]) -> tuple[int, list[list[tuple[int, float]]]]:
    if local is None:
        return 0, [[] for _ in queries]
    return len(local), [local.shortlist(q) for q in queries]


def _rebuilt(store: ReferenceStore, queries: list[LocalFeatures]) -> tuple[int, list[list[tuple[int, float]]]]:
    """The oracle: an index built from a full read of the store now."""
    local = LocalIndex.from_store(store, candidates=1000)
    return _answers(local if len(local) else None, queries)


def _snapshots(store: ReferenceStore) -> list[Path]:
    folder = Path(store.path + ".snapshots")
    return sorted(folder.glob(f"{SNAPSHOT_NAME}-*.hmidx")) if folder.is_dir() else []


def _no_full_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(*_: object, **__: object) -> None:
        raise AssertionError("a full build although a usable snapshot was there")

    monkeypatch.setattr(_local_stage, "base_from_rows", build)


def _local(matcher: Matcher) -> LocalIndex | None:
    return matcher._state.local


# -- round trip, refresh, oracle ------------------------------------------------------------------
def test_snapshot_round_trip_answers_as_a_rebuild(tmp_path: Path, rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with ReferenceStore(tmp_path / "refs.db") as store:
        _add(store, rng, 90)  # 1,440 rows: a multi-index
        queries = _queries(store, rng)
        first, _ = _local_stage.local_index("fallback", store, None, SnapshotCache(store))
        (snap,) = _snapshots(store)
        assert snap.name.startswith(f"{SNAPSHOT_NAME}-{store.store_id}-{store.generation}-")
        index = load_index(snap)
        assert type(index) is Flat and (index.algorithm, index.bits) == ("orb", 256)  # rows; tables derived
        assert count_owners(index.entries()[1]) == 90
        _no_full_read(monkeypatch)
        loaded, base = _local_stage.local_index("fallback", store, None, SnapshotCache(store))
        assert base is not None and base.generation == store.generation
        assert isinstance(base.index, DescriptorIndex)
        wide = LocalIndex.from_parts(loaded._index, len(loaded), loaded._source, candidates=1000)
        assert _answers(wide, queries) == _rebuilt(store, queries) != (0, [[], [], []])
        assert _answers(loaded, queries) == _answers(first, queries)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.sampled_from(["add", "add_many", "retract", "hash_only", "late", "replace", "restart"]),
                      min_size=1, max_size=6))
def test_refreshed_and_reloaded_snapshots_answer_as_a_rebuild(seed: int, steps: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever happens to the store, a refreshed Matcher and one started from the snapshot
    (layers: snapshot + new rows - retractions, or a rebuild) answer as a full rebuild."""
    monkeypatch.setattr("hashmatch.local._snapshot.DELTA_MIN", 6)  # folds happen too
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp, ReferenceStore(Path(tmp) / "refs.db") as store:
        ids = _add(store, rng, 70)
        plain: list[int] = []
        matcher = Matcher.from_store(store, local="fallback")
        for step in steps:
            if step == "add":
                ids += _add(store, rng, 2)
            elif step == "add_many":
                ids += _add(store, rng, 9)
            elif step == "retract":
                store.retract([int(i) for i in rng.choice(ids, 3, replace=False)])
            elif step == "hash_only":
                plain += _add(store, rng, 2, features=False)
            elif step == "late" and plain:  # features attached to an older entry
                store.add_local_features([(plain.pop(0), _features(rng).to_row())])
            elif step == "replace":
                store.add_local_features([(int(rng.choice(ids)), _features(rng).to_row())])
            elif step == "restart":
                matcher = Matcher.from_store(store, local="fallback")
            matcher.refresh()
            queries = _queries(store, rng)
            expected = _rebuilt(store, queries)
            for m in (matcher, Matcher.from_store(store, local="fallback")):
                local = _local(m)
                wide = None if local is None else LocalIndex.from_parts(local._index, len(local), local._source,
                                                                        candidates=1000)
                assert _answers(wide, queries) == expected


def test_features_rewritten_below_the_newest_force_a_rebuild(tmp_path: Path, rng: np.random.Generator) -> None:
    with ReferenceStore(tmp_path / "refs.db") as store:
        ids = _add(store, rng, 10)
        assert store.read_local_changes(16, -1, -1).rewritten == -1
        gen = store.generation
        store.add_local_features([(ids[-1] + 0, _features(rng).to_row())])  # replaced: at the newest
        assert store.read_local_changes(16, gen, ids[-1]).rewritten == store.generation
        newer = _add(store, rng, 1)  # above the newest: taken in by id, not a rewrite
        changes = store.read_local_changes(16, store.generation, newer[0] - 1)
        assert changes.rewritten < store.generation and set(changes.owners.tolist()) == set(newer)


# -- retraction, staleness -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [generate_image(seed, size=(480, 360)) for seed in range(5)]


def _image_store(path: Path, images: list[Image.Image]) -> list[int]:
    with ReferenceStore(path) as store:
        ids = []
        for k, image in enumerate(images):
            results = compute_hashes(image, ["phash"], fast=False)
            report = store.add_entries("L", [NewEntry(results["phash"][0].hash, None, "cat", f"ref{k}.png")])
            store.add_local_features([(report.entry_ids[0], reference_features(image).to_row())])
            ids.append(report.entry_ids[0])
    return ids


def test_retraction_after_the_snapshot_is_honoured(tmp_path: Path, photos: list[Image.Image],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "refs.db"
    ids = _image_store(path, photos[:3])
    query = crop(photos[1], fraction=0.3, x=1.0, y=0.0)
    with Matcher.from_store(path) as before:  # builds and caches the snapshot
        assert [(m.stage, m.entry_id) for m in before.match(query)] == [("local", ids[1])]
        with ReferenceStore(path) as store:
            (snap,) = _snapshots(store)
            store.retract([ids[1]])
        # Not refreshed: verification reads the store at query time.
        assert before.match(query) == []
        _no_full_read(monkeypatch)
        with Matcher.from_store(path) as after:  # the snapshot, minus the retraction
            assert _snapshots(after._store) == [snap] and len(_local(after)) == 2
            assert after.match(query) == []
            assert [m.entry_id for m in after.match(crop(photos[2], fraction=0.3, x=0.0, y=0.0))] == [ids[2]]


def test_snapshot_of_another_layout_or_store_is_not_used(tmp_path: Path, rng: np.random.Generator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with ReferenceStore(tmp_path / "a.db") as a, ReferenceStore(tmp_path / "b.db") as b:
        _add(a, rng, 5)
        _add(b, rng, 7)
        Matcher.from_store(a)
        Matcher.from_store(b)
        (snap_a,), (snap_b,) = _snapshots(a), _snapshots(b)
        snap_a.write_bytes(snap_b.read_bytes())  # b's valid snapshot under a's name
        queries = _queries(a, rng)
        assert _answers(_local(Matcher.from_store(a)), queries)[0] == 5
        # Another layout (say RETRIEVAL_FEATURES changed) has another name: rebuilt, not read.
        monkeypatch.setattr(_local_stage, "SNAPSHOT_NAME", SNAPSHOT_NAME.replace(".r16", ".r24"))
        m = Matcher.from_store(a)
        assert len(_local(m)) == 5
        assert len(list(Path(a.path + ".snapshots").glob(SNAPSHOT_NAME.replace(".r16", ".r24") + "-*"))) == 1


# -- damage: rebuilt, never a wrong answer -----------------------------------------------------------
def _rewrite(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(path.read_bytes())
    out = edit(data)
    path.write_bytes(bytes(out if out is not None else data))


def _resum(data: bytearray) -> bytearray:
    body = data[:-32]
    return body + hashlib.sha256(body).digest()


DAMAGE = {
    "bit flip in the header": lambda d: d.__setitem__(20, d[20] ^ 0x10),
    "bit flip in the rows": lambda d: d.__setitem__(300, d[300] ^ 0x01),
    "bit flip in the tables": lambda d: d.__setitem__(len(d) - 100, d[len(d) - 100] ^ 0x80),
    "bit flip in the checksum": lambda d: d.__setitem__(len(d) - 1, d[len(d) - 1] ^ 0x01),
    "truncated": lambda d: d[: len(d) // 2],
    "empty": lambda d: bytearray(),
    "trailing bytes": lambda d: d + b"\0" * 8,
    "newer version": lambda d: _resum(d[:8] + struct.pack("<H", 9) + d[10:]),
    "hostile row count": lambda d: _resum(d[:88] + struct.pack("<Q", 2**31 - 2) + d[96:]),
    "hostile bit length": lambda d: _resum(d[:80] + struct.pack("<II", 2**20, 2**14) + d[88:]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_snapshot_is_rebuilt(tmp_path: Path, rng: np.random.Generator, damage: str,
                                     caplog: pytest.LogCaptureFixture) -> None:
    with ReferenceStore(tmp_path / "refs.db") as store:
        _add(store, rng, 80)
        queries = _queries(store, rng)
        Matcher.from_store(store)
        (snap,) = _snapshots(store)
        _rewrite(snap, DAMAGE[damage])
        m = Matcher.from_store(store)
        local = _local(m)
        wide = LocalIndex.from_parts(local._index, len(local), local._source, candidates=1000)
        assert _answers(wide, queries) == _rebuilt(store, queries)
        assert "ignoring snapshot" in caplog.text
        (fresh,) = _snapshots(store)  # a good one replaced it
        assert load_index(fresh).algorithm == "orb"


def test_forged_snapshot_cannot_make_a_wrong_match(tmp_path: Path, photos: list[Image.Image],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A valid, vouched-for file whose rows lie (photo 1's descriptors labelled photo 0's
    entry) proposes the wrong candidate, which verification against the store rejects."""
    path = tmp_path / "refs.db"
    ids = _image_store(path, photos[:2])
    with ReferenceStore(path) as store:
        rows, owners = store.read_local_retrieval(16)
        lie = np.where(owners == ids[1], ids[0], ids[1])
        forged = Flat.build(HashBatch(np.frombuffer(rows.tobytes(), ">u8").astype(np.uint64).reshape(-1, 4),
                                      algorithm="orb", bits=256), lie)
        SnapshotCache(store).save(SNAPSHOT_NAME, forged, store.generation)
        hostile = Flat.build(HashBatch(np.zeros((2, 1), np.uint64), algorithm="phash", bits=64), [-1, 5])
    with Matcher.from_store(path) as matcher:
        found = matcher.match(crop(photos[1], fraction=0.3, x=1.0, y=0.0))
        assert all(m.entry_id != ids[0] for m in found)
    with ReferenceStore(path) as store:  # rows of another algorithm: not a local snapshot
        SnapshotCache(store).save(SNAPSHOT_NAME, hostile, store.generation)
    with Matcher.from_store(path) as matcher:
        assert len(_local(matcher)) == 2
        assert [m.entry_id for m in matcher.match(crop(photos[1], fraction=0.3, x=1.0, y=0.0))] == [ids[1]]
    assert "ignoring snapshot" in caplog.text


# -- serve and scan use it ---------------------------------------------------------------------------
def test_serve_caches_the_local_snapshot_before_starting_workers(tmp_path: Path, rng: np.random.Generator) -> None:
    with ReferenceStore(tmp_path / "refs.db") as store:
        _add(store, rng, 4)
    keys = tmp_path / "keys.txt"
    keys.write_text("not a key line\n")
    assert main(["serve", "--store", str(tmp_path / "refs.db"), "--keys", str(keys)]) == 2  # stops before uvicorn
    with ReferenceStore(tmp_path / "refs.db") as store:
        assert len(_snapshots(store)) == 1


def test_scan_starts_from_the_snapshot(tmp_path: Path, photos: list[Image.Image],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import hashmatch

    path = tmp_path / "refs.db"
    ids = _image_store(path, photos[:2])
    Matcher.from_store(path).close()
    root = tmp_path / "files"
    root.mkdir()
    crop(photos[0], fraction=0.3, x=1.0, y=0.0).save(root / "crop.png")
    _no_full_read(monkeypatch)
    assert main(["scan", str(root), "--store", str(path), "--workers", "0", "--out", str(tmp_path / "r.jsonl")]) == 1
    with Matcher.from_store(path) as matcher:
        (result,) = hashmatch.scan(root, matcher, workers=0)
        assert [(m.stage, m.entry_id) for m in result.matches] == [("local", ids[0])]


# -- global snapshots of format version 1 are saved again as version 2 --------------------------------
def _as_version_1(path: Path) -> None:
    data = path.read_bytes()
    header_size = struct.unpack_from("<H", data, 10)[0]
    nw, n = struct.unpack_from("<IQ", data, 84)
    body = data[:8] + struct.pack("<H", 1) + data[10:header_size + n * (nw * 8 + 8)]
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_version_1_global_snapshot_is_saved_again_as_version_2(tmp_path: Path, rng: np.random.Generator,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = [Hash(int.from_bytes(rng.bytes(8), "big"), "phash", 64) for _ in range(3000)]
    with ReferenceStore(tmp_path / "refs.db") as store:
        ids = store.add_entries("L", [NewEntry(h) for h in hashes]).entry_ids
        # A multi-index (what big sets get), whose version 1 file makes every load rebuild its tables.
        batch = HashBatch.from_hashes(hashes)
        SnapshotCache(store).save("phash", MultiIndexHash.build(batch, ids), store.generation)
        (snap,) = Path(store.path + ".snapshots").glob("phash-*.hmidx")
        _as_version_1(snap)
        v1_size = snap.stat().st_size
        assert _format.peek_version(snap) == 1 and isinstance(load_index(snap), MultiIndexHash)

        def no_full_read(*_: object) -> None:
            raise AssertionError("rebuilt from the store although the snapshot was usable")

        monkeypatch.setattr(ReferenceStore, "read_active", no_full_read)
        m = Matcher.from_store(store, local="off")
        assert [x.distance for x in m.match_hashes(hashes[7])] == [0]
        (again,) = Path(store.path + ".snapshots").glob("phash-*.hmidx")
        assert again != snap and _format.peek_version(again) == _format.FORMAT_VERSION
        assert isinstance(load_index(again), MultiIndexHash) and again.stat().st_size > v1_size and not snap.exists()
        assert again.name.startswith(f"phash-{store.store_id}-{store.generation}-")
        saved = []
        monkeypatch.setattr(SnapshotCache, "save", lambda *a: saved.append(a))
        m2 = Matcher.from_store(store, local="off")  # version 2 now: loaded as it is, not saved again
        assert saved == [] and [x.entry_id for x in m2.match_hashes(hashes[7])] == [x.entry_id for x in m.match_hashes(hashes[7])]


def test_auto_without_opencv_warns_only_when_active_features_exist(tmp_path: Path, rng: np.random.Generator,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with ReferenceStore(tmp_path / "refs.db") as store:
        ids = _add(store, rng, 3)
        assert store.has_local_features()
        assert not Matcher.from_store(store).has_local_stage
        assert "OpenCV is missing" in caplog.text and _snapshots(store) == []
        store.retract(ids)
        caplog.clear()
        assert not store.has_local_features() and not Matcher.from_store(store).has_local_stage
        assert "OpenCV is missing" not in caplog.text


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7))
def test_any_flipped_bit_in_a_snapshot_means_a_rebuild(tmp_path: Path, where: float, bit: int) -> None:
    pristine = tmp_path / "pristine"
    if not pristine.exists():  # one store and snapshot; each example damages a copy of both
        pristine.mkdir()
        with ReferenceStore(pristine / "refs.db") as store:
            _add(store, np.random.default_rng(7), 70)
            Matcher.from_store(store).close()
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    shutil.copytree(pristine, work, dirs_exist_ok=True)
    with ReferenceStore(work / "refs.db") as store:
        (snap,) = _snapshots(store)
        data = bytearray(snap.read_bytes())
        data[int(where * len(data))] ^= 1 << bit
        snap.write_bytes(bytes(data))
        queries = _queries(store, np.random.default_rng(1))
        local = _local(Matcher.from_store(store))
        wide = LocalIndex.from_parts(local._index, len(local), local._source, candidates=1000)
        assert _answers(wide, queries) == _rebuilt(store, queries)
        (fresh,) = _snapshots(store)
        assert fresh != snap  # rebuilt and saved again, not loaded

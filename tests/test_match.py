"""Matcher and Match: against a brute-force oracle, policies, dihedral variants, quality,
store-backed snapshots and refresh, and refresh under concurrent queries."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import hashmatch._refindex as refindex_module
from hashmatch import Match, Matcher, ReferenceStore, compute_hashes
from hashmatch.errors import IncompatibleHashError, InvalidHashError, StoreError, UnreadableImageError
from hashmatch.hashers import DIHEDRAL_NAMES, HashResult
from hashmatch.hashes import Hash
from hashmatch._match import DEFAULT_CONFIRMATIONS, DEFAULT_THRESHOLDS, default_threshold
from hashmatch._store import NewEntry

from .conftest import encode, photo_like


# -- naive twin -------------------------------------------------------------------------
def naive_matches(refs: list[Hash], ids: list[int], queries: list[Hash], threshold: int) -> list[tuple[int, int]]:
    """(id, distance) of every reference within the threshold of any query, best distance
    per id, sorted by distance then id: a list scan with int.bit_count."""
    best: dict[int, int] = {}
    for q in queries:
        for ref, entry_id in zip(refs, ids):
            if ref.algorithm != q.algorithm:
                continue
            d = (ref.value ^ q.value).bit_count()
            if d <= threshold and d < best.get(entry_id, 10**9):
                best[entry_id] = d
    return sorted(((i, d) for i, d in best.items()), key=lambda t: (t[1], t[0]))


def _random_hash(rng: np.random.Generator, algorithm: str = "phash", bits: int = 64) -> Hash:
    return Hash(int.from_bytes(rng.bytes(bits // 8), "big"), algorithm, bits)


def _flip(h: Hash, rng: np.random.Generator, nbits: int) -> Hash:
    positions = rng.choice(h.bits, size=nbits, replace=False)
    value = h.value
    for p in positions:
        value ^= 1 << int(p)
    return Hash(value, h.algorithm, h.bits)


# -- Match ------------------------------------------------------------------------------
def test_match_is_frozen_and_to_dict_has_no_hash() -> None:
    m = Match(3, "L", "cat", "e3", "phash", 2, "rot90")
    assert m.to_dict() == {
        "entry_id": 3, "list_name": "L", "label": "cat", "external_id": "e3",
        "algorithm": "phash", "distance": 2, "orientation": "rot90", "stage": "global",
    }
    with pytest.raises(AttributeError):
        m.distance = 0  # type: ignore[misc]


def test_default_thresholds_named_in_one_place() -> None:
    assert DEFAULT_THRESHOLDS["pdq"] == 31  # upstream's customary distance
    assert set(DEFAULT_THRESHOLDS) == {"pdq", "phash", "dhash", "ahash", "whash"}
    assert all(default_threshold(n, 64) == DEFAULT_THRESHOLDS[n] for n in ("phash", "dhash", "ahash", "whash"))
    assert default_threshold("other", 128) == 16


# -- in memory --------------------------------------------------------------------------
def test_matcher_from_hashes_matches_within_threshold_nearest_first(rng: np.random.Generator) -> None:
    base = _random_hash(rng)
    # Past the threshold and past the band for the upload as it is (pHash 10): no match.
    beyond = max([DEFAULT_THRESHOLDS["phash"], *(c.up_to for c in DEFAULT_CONFIRMATIONS if c.by is None)]) + 1
    refs = [_flip(base, rng, 5), _flip(base, rng, 1), _flip(base, rng, beyond), base]
    m = Matcher.from_hashes(refs, ids=[10, 11, 12, 13], labels=["a", "b", "c", "d"], list_name="mem")
    got = m.match_hashes(base)
    assert [(x.entry_id, x.distance, x.label) for x in got] == [(13, 0, "d"), (11, 1, "b"), (10, 5, "a")]
    assert all(x.list_name == "mem" and x.orientation is None for x in got)
    assert m.match_hashes(_random_hash(rng)) == []  # 64 random bits are almost never that close


def test_matcher_threshold_is_inclusive_and_configurable(rng: np.random.Generator) -> None:
    base = _random_hash(rng)
    t = DEFAULT_THRESHOLDS["phash"]
    refs = [_flip(base, rng, t), _flip(base, rng, t + 1)]
    # The default rule adds pHash 10 for the upload as it is (DEFAULT_CONFIRMATIONS); an
    # explicit threshold replaces it, and so does turning the bands off.
    assert [x.distance for x in Matcher.from_hashes(refs, confirmations=()).match_hashes(base)] == [t]
    assert [x.distance for x in Matcher.from_hashes(refs, thresholds={"phash": t}).match_hashes(base)] == [t]
    assert [x.distance for x in Matcher.from_hashes(refs).match_hashes(base)] == [t, t + 1]
    loose = Matcher.from_hashes(refs, thresholds={"phash": t + 1})
    assert [x.distance for x in loose.match_hashes(base)] == [t, t + 1]
    assert Matcher.from_hashes(refs, thresholds={"phash": 0}).match_hashes(base) == []
    with pytest.raises(ValueError, match="threshold"):
        Matcher.from_hashes(refs, thresholds={"phash": 65})
    with pytest.raises(ValueError, match="threshold"):
        Matcher.from_hashes(refs, thresholds={"phash": -1})


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nrefs=st.integers(0, 60),
    flips=st.lists(st.integers(0, 64), min_size=1, max_size=4),
    threshold=st.integers(0, 64),
    duplicates=st.booleans(),
)
def test_matcher_equals_naive_scan(seed: int, nrefs: int, flips: list[int], threshold: int, duplicates: bool) -> None:
    rng = np.random.default_rng(seed)
    refs = [_random_hash(rng) for _ in range(nrefs)]
    if duplicates and refs:
        refs += refs[: max(1, nrefs // 3)]
    ids = list(rng.permutation(10_000)[: len(refs)].astype(int))
    anchor = refs[0] if refs else _random_hash(rng)
    queries = [_flip(anchor, rng, f) for f in flips]
    m = Matcher.from_hashes(refs, ids=ids, thresholds={"phash": threshold})
    got = m.match_hashes(queries)
    assert [(x.entry_id, x.distance) for x in got] == naive_matches(refs, ids, queries, threshold)


def test_matcher_dihedral_variant_reports_orientation(rng: np.random.Generator) -> None:
    variants = [_random_hash(rng) for _ in DIHEDRAL_NAMES]
    m = Matcher.from_hashes([variants[3]], ids=[7])
    got = m.match_hashes({"phash": tuple(HashResult(v) for v in variants)})
    assert [(x.entry_id, x.distance, x.orientation) for x in got] == [(7, 0, DIHEDRAL_NAMES[3])]
    # On a tie the upload as it is wins over a rotated variant.
    tie = [variants[3]] * len(DIHEDRAL_NAMES)
    assert m.match_hashes({"phash": tie})[0].orientation is None
    # A plain list of hashes is a list of separate uploads, not variants.
    assert m.match_hashes([variants[0], variants[3]])[0].orientation is None


def test_matcher_policy_any_and_all(rng: np.random.Generator) -> None:
    p, d = _random_hash(rng, "phash"), _random_hash(rng, "dhash")
    refs = [p, d]
    query_only_p = {"phash": (HashResult(p),), "dhash": (HashResult(_random_hash(rng, "dhash")),)}
    both = {"phash": (HashResult(p),), "dhash": (HashResult(d),)}
    any_m = Matcher.from_hashes(refs, require="any")
    all_m = Matcher.from_hashes(refs, require="all")
    assert [x.algorithm for x in any_m.match_hashes(query_only_p)] == ["phash"]
    assert all_m.match_hashes(query_only_p) == []
    assert sorted(x.algorithm for x in all_m.match_hashes(both)) == ["dhash", "phash"]
    only = Matcher.from_hashes(refs, algorithms=["dhash"])
    assert [x.algorithm for x in only.match_hashes(both)] == ["dhash"]
    with pytest.raises(ValueError, match="require"):
        Matcher.from_hashes(refs, require="most")  # type: ignore[arg-type]


def test_matcher_skips_low_quality_pdq_queries(rng: np.random.Generator) -> None:
    ref = _random_hash(rng, "pdq", 256)
    m = Matcher.from_hashes([ref])
    assert m.match_hashes({"pdq": (HashResult(ref, quality=49),)}) == []
    assert [x.distance for x in m.match_hashes({"pdq": (HashResult(ref, quality=50),)})] == [0]
    lax = Matcher.from_hashes([ref], min_quality=None)
    assert len(lax.match_hashes({"pdq": (HashResult(ref, quality=0),)})) == 1


def test_matcher_rejects_bad_hash_input(rng: np.random.Generator) -> None:
    m = Matcher.from_hashes([_random_hash(rng)])
    with pytest.raises(InvalidHashError):
        m.match_hashes(["ffd7918181c9c3c3"])  # type: ignore[list-item]
    with pytest.raises(IncompatibleHashError):
        m.match_hashes(Hash(1, "phash", 256))
    with pytest.raises(IncompatibleHashError):
        m.match_hashes({"phash": (HashResult(_random_hash(rng, "dhash")),)})
    with pytest.raises(ValueError, match="unique"):
        Matcher.from_hashes([_random_hash(rng), _random_hash(rng)], ids=[1, 1])
    with pytest.raises(ValueError, match="ids"):
        Matcher.from_hashes([_random_hash(rng)], ids=[1, 2])


def test_matcher_match_image_finds_transformed_copies(rng: np.random.Generator) -> None:
    originals = [Image.fromarray(photo_like(rng, 256, 192)) for _ in range(3)]
    hashes = [compute_hashes(im, ["phash"])["phash"][0].hash for im in originals]
    m = Matcher.from_hashes(hashes, labels=["a", "b", "c"])
    assert m.algorithms == ("phash",) and m.dihedral
    resized = encode(originals[1].resize((200, 150)), "JPEG", quality=80)
    assert [x.label for x in m.match(resized)][:1] == ["b"]
    rotated = originals[2].transpose(Image.Transpose.ROTATE_180)
    got = m.match(rotated)
    assert got and got[0].label == "c" and got[0].orientation == "rot180"
    no_dihedral = Matcher.from_hashes(hashes, dihedral=False)
    assert [x for x in no_dihedral.match(rotated) if x.entry_id == 2] == []
    assert m.match(Image.fromarray(photo_like(rng, 256, 192))) == []


def test_matcher_match_many_yields_errors_in_place(rng: np.random.Generator) -> None:
    image = Image.fromarray(photo_like(rng, 128, 96))
    m = Matcher.from_hashes([compute_hashes(image, ["phash"])["phash"][0].hash])
    out = m.match_many([image, b"not an image", image])
    assert isinstance(out[1], UnreadableImageError)
    assert len(out[0]) == 1 and len(out[2]) == 1  # type: ignore[arg-type]


# -- from a store ---------------------------------------------------------------------
def _store_with(tmp_path: Path, hashes: list[Hash], name: str = "L") -> tuple[ReferenceStore, tuple[int, ...]]:
    store = ReferenceStore(tmp_path / "refs.db")
    report = store.add_entries(name, [NewEntry(h, label=f"l{i}", external_id=f"x{i}") for i, h in enumerate(hashes)])
    return store, report.entry_ids


def test_matcher_from_store_reports_list_label_and_external_id(tmp_path: Path, rng: np.random.Generator) -> None:
    hashes = [_random_hash(rng) for _ in range(5)]
    store, ids = _store_with(tmp_path, hashes)
    with store:
        m = Matcher.from_store(store)
        got = m.match_hashes(hashes[2])
        assert [(x.entry_id, x.list_name, x.label, x.external_id) for x in got] == [(ids[2], "L", "l2", "x2")]
        assert len(m) == 5 and m.generation == store.generation


def test_matcher_from_empty_store_matches_nothing(tmp_path: Path, rng: np.random.Generator) -> None:
    with ReferenceStore(tmp_path / "refs.db") as store:
        m = Matcher.from_store(store)
        assert m.algorithms == () and len(m) == 0
        assert m.match(Image.fromarray(photo_like(rng, 64, 64))) == []
        assert m.refresh() is False


def test_matcher_refresh_takes_in_adds_and_retractions(tmp_path: Path, rng: np.random.Generator) -> None:
    hashes = [_random_hash(rng) for _ in range(6)]
    store, ids = _store_with(tmp_path, hashes[:4])
    with store:
        m = Matcher.from_store(store)
        assert m.refresh() is False
        store.retract([ids[1]])
        new_id = store.add("L", hashes[5])
        assert m.match_hashes(hashes[1]) != []  # not yet refreshed
        assert m.refresh() is True
        assert m.match_hashes(hashes[1]) == []  # retracted: never matched again
        assert [x.entry_id for x in m.match_hashes(hashes[5])] == [new_id]
        assert len(m) == 4


def test_matcher_snapshot_is_reused_while_store_unchanged(tmp_path: Path, rng: np.random.Generator,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = [_random_hash(rng) for _ in range(50)]
    store, _ = _store_with(tmp_path, hashes)
    with store:
        Matcher.from_store(store)
        snaps = sorted(p.name for p in Path(store.path + ".snapshots").iterdir())
        assert len(snaps) == 1 and snaps[0].startswith(f"phash-{store.store_id}-{store.generation}-")

        def no_full_read(*_: object) -> None:
            raise AssertionError("rebuilt although the snapshot was current")

        monkeypatch.setattr(ReferenceStore, "read_active", no_full_read)
        m = Matcher.from_store(store)
        assert len(m.match_hashes(hashes[7])) == 1
        # A few changes later the old snapshot still serves, plus a delta.
        extra = _random_hash(rng)
        store.add("L", extra)
        m2 = Matcher.from_store(store)
        assert len(m2.match_hashes(extra)) == 1 and len(m2) == 51


def test_matcher_rebuilds_snapshot_when_delta_grows(tmp_path: Path, rng: np.random.Generator,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(refindex_module, "DELTA_MIN", 2)
    monkeypatch.setattr(refindex_module, "DELTA_FRACTION", 0.0)
    hashes = [_random_hash(rng) for _ in range(10)]
    store, ids = _store_with(tmp_path, hashes[:5])
    with store:
        m = Matcher.from_store(store)
        store.add_entries("L", [NewEntry(h) for h in hashes[5:]])
        store.retract(ids[:2])
        assert m.refresh()
        snaps = [p.name for p in Path(store.path + ".snapshots").iterdir()]
        assert len(snaps) == 1 and snaps[0].startswith(f"phash-{store.store_id}-{store.generation}-")  # old one gone
        assert len(m) == 8
        assert m.match_hashes(hashes[0]) == [] and len(m.match_hashes(hashes[9])) == 1


def test_matcher_ignores_corrupt_snapshot(tmp_path: Path, rng: np.random.Generator) -> None:
    hashes = [_random_hash(rng) for _ in range(20)]
    store, _ = _store_with(tmp_path, hashes)
    with store:
        Matcher.from_store(store)
        snap = next(Path(store.path + ".snapshots").iterdir())
        data = bytearray(snap.read_bytes())
        data[len(data) // 2] ^= 0xFF
        snap.write_bytes(bytes(data))
        m = Matcher.from_store(store)
        assert len(m.match_hashes(hashes[3])) == 1


def test_matcher_without_cache_writes_no_snapshot(tmp_path: Path, rng: np.random.Generator) -> None:
    store, _ = _store_with(tmp_path, [_random_hash(rng)])
    with store:
        Matcher.from_store(store, cache_snapshots=False)
        assert not Path(store.path + ".snapshots").exists()


def test_matcher_refresh_under_concurrent_queries(tmp_path: Path, rng: np.random.Generator) -> None:
    """Readers never fail, and each answer is the answer of a published generation."""
    pool = [_random_hash(rng) for _ in range(40)]
    store, first_ids = _store_with(tmp_path, pool[:20])
    with store:
        m = Matcher.from_store(store)
        id_of = dict(zip(first_ids, pool[:20]))

        def expected_now() -> dict[int, frozenset[int]]:
            active = {e.entry_id for e in store.entries()}
            return {qi: frozenset(i for i in active if id_of[i] == q) for qi, q in enumerate(pool)}

        published = {m.generation: expected_now()}
        stop = threading.Event()
        errors: list[BaseException] = []
        observations: list[tuple[int, int, int, frozenset[int]]] = []

        def reader(seed: int) -> None:
            local = np.random.default_rng(seed)
            try:
                while not stop.is_set():
                    qi = int(local.integers(len(pool)))
                    before = m.generation
                    got = frozenset(x.entry_id for x in m.match_hashes(pool[qi]) if x.distance == 0)
                    observations.append((before, m.generation, qi, got))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        def readers_moved_on(since: int) -> None:
            # Every refresh is raced by fresh queries, however the threads are scheduled.
            deadline = time.monotonic() + 30
            while len(observations) < since + 8 and not errors and time.monotonic() < deadline:
                time.sleep(0.001)
            assert len(observations) >= since + 8 or errors, "readers made no progress"

        try:
            for step in range(12):
                readers_moved_on(len(observations))
                new = pool[20 + step]
                new_id = store.add("L", new)
                assert new_id is not None
                id_of[new_id] = new
                victims = [i for i in id_of if store.get(i).retracted is None][:1]  # type: ignore[union-attr]
                store.retract(victims)
                expected = expected_now()
                assert m.refresh()
                published[m.generation] = expected
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == []
        assert len(observations) >= 12 * 8
        for before, after, qi, got in observations:
            candidates = [published[g][qi] for g in published if before <= g <= after]
            assert got in candidates


def test_matcher_close_leaves_a_passed_store_open(tmp_path: Path, rng: np.random.Generator) -> None:
    h = _random_hash(rng)
    store, _ = _store_with(tmp_path, [h])
    with store:
        with Matcher.from_store(store) as m:
            assert len(m.match_hashes(h)) == 1
        assert len(store) == 1  # still usable
    with Matcher.from_store(store.path) as owned:
        assert len(owned.match_hashes(h)) == 1
    with pytest.raises(StoreError):
        owned.match_hashes(h)  # its own store is closed with it


def test_matcher_from_missing_store_raises(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Matcher.from_store(tmp_path / "missing.db")


def test_matcher_ignores_snapshot_the_store_does_not_vouch_for(tmp_path: Path, rng: np.random.Generator,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A store restored from a backup must not trust a snapshot from its "future"."""
    hashes = [_random_hash(rng) for _ in range(30)]
    store, ids = _store_with(tmp_path, hashes)
    with store:
        Matcher.from_store(store)
        snap = next(Path(store.path + ".snapshots").iterdir())
        # Same generation, other content: forget the record, retract an entry behind its back.
        store._conn().execute("DELETE FROM snapshots")
        store.retract([ids[0]])
        store._conn().execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(store.generation - 1),))
        assert snap.name.split("-")[2] == str(store.generation)
        m = Matcher.from_store(store)
        assert m.match_hashes(hashes[0]) == []  # rebuilt from the store, not the stale file


def test_matcher_orders_across_algorithms_by_relative_distance(rng: np.random.Generator) -> None:
    p, q = _random_hash(rng, "phash"), _random_hash(rng, "pdq", 256)
    m = Matcher.from_hashes([_flip(p, rng, 4), _flip(q, rng, 12)], min_quality=None)
    got = m.match_hashes([p, q])
    # 12 of 256 bits (4.7 %) is nearer than 4 of 64 bits (6.25 %).
    assert [(x.algorithm, x.distance) for x in got] == [("pdq", 12), ("phash", 4)]


def test_matcher_warmup_leaves_results_unchanged(rng: np.random.Generator) -> None:
    image = Image.fromarray(photo_like(rng, 96, 96))
    h = compute_hashes(image, ["phash"])["phash"][0].hash
    m = Matcher.from_hashes([h])
    m.warmup()
    assert [x.distance for x in m.match(image)] == [0]


def test_matcher_from_hashes_takes_unregistered_algorithms(rng: np.random.Generator) -> None:
    h = _random_hash(rng, "myhash", 128)
    m = Matcher.from_hashes([h, _flip(h, rng, 20)], thresholds={"myhash": 20})
    assert [x.distance for x in m.match_hashes(h)] == [0, 20]
    assert m.algorithms == ()  # nothing to compute from an image
    with pytest.raises(ValueError, match="threshold"):
        Matcher.from_hashes([h], thresholds={"myhash": 129})


def _letterboxed(image: Image.Image, bar: int) -> Image.Image:
    canvas = Image.new("RGB", (image.width, image.height + 2 * bar), (0, 0, 0))
    canvas.paste(image, (0, bar))
    return canvas


def test_compute_query_hashes_adds_a_trimmed_view_only_for_bordered_images():
    from hashmatch.hashers import compute_query_hashes
    from hashmatch.testing.synthetic import generate_image

    original = generate_image(11, size=(320, 240))
    assert len(compute_query_hashes(original, ["phash"], trim_borders=True)) == 1
    views = compute_query_hashes(_letterboxed(original, 80), ["phash"], trim_borders=True)
    assert len(views) == 2
    assert views[1]["phash"][0].hash - compute_hashes(original, ["phash"])["phash"][0].hash <= 4


def test_matcher_trims_letterbox_bars_and_says_so():
    from hashmatch.testing.synthetic import generate_image

    original = generate_image(12, size=(320, 240))
    reference = compute_hashes(original, ["phash", "pdq"])
    hashes = [reference["phash"][0].hash, reference["pdq"][0].hash]
    upload = encode(_letterboxed(original, 90), "PNG")
    with_trim = Matcher.from_hashes(hashes, labels=["a", "a"])
    without = Matcher.from_hashes(hashes, labels=["a", "a"], trim_borders=False)
    found = with_trim.match(upload)
    assert {m.algorithm for m in found} == {"phash", "pdq"}
    assert all(m.orientation == "trimmed" for m in found)
    assert without.match(upload) == []
    # An image without borders matches as it is, with no trimmed view at all.
    assert [m.orientation for m in with_trim.match(encode(original, "PNG"))] == [None, None]

"""The global policy's confirmed bands (issue 12): the Matcher against a naive oracle, the
sibling rule in memory and in the store (and its in-memory links, hashmatch._links, against
the store's rule), and the calibration of the policy as a whole."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch import DEFAULT_CONFIRMATIONS, Confirmation, Matcher, QuerySpec, ReferenceStore
from hashmatch._calibrate import upper_rate_bound
from hashmatch._links import Links
from hashmatch._calibrate_policy import PolicyHashes, calibrate_policy, policy_matches, policy_pair_features
from hashmatch._store import NewEntry
from hashmatch.errors import UsageError
from hashmatch.hashers import DIHEDRAL_NAMES, HashResult
from hashmatch.hashes import Hash, HashBatch

PH_T, PDQ_T = 9, 31


def _rand(rng: np.random.Generator, algorithm: str, bits: int) -> Hash:
    return Hash(int.from_bytes(rng.bytes(bits // 8), "big"), algorithm, bits)


def _flip(h: Hash, rng: np.random.Generator, n: int) -> Hash:
    value = h.value
    for p in rng.choice(h.bits, size=n, replace=False):
        value ^= 1 << int(p)
    return Hash(value, h.algorithm, h.bits)


def test_default_policy_is_phash_9_alone_and_10_confirmed_by_pdq() -> None:
    spec = QuerySpec(algorithms=("pdq", "phash"))
    assert spec.threshold("phash", 64) == PH_T and spec.threshold("pdq", 256) == PDQ_T
    assert [(c.algorithm, c.up_to, c.by) for c in DEFAULT_CONFIRMATIONS] == [
        ("phash", 10, None), ("phash", 10, "pdq"), ("phash", 12, "pdq"), ("phash", 14, "pdq")]
    assert [c.within for c in DEFAULT_CONFIRMATIONS[1:]] == sorted((c.within for c in DEFAULT_CONFIRMATIONS[1:]), reverse=True)
    assert spec.search_radius("phash", 64) == 14 and spec.search_radius("pdq", 256) == PDQ_T
    assert [c.by for c in spec.bands("phash", 64, ["phash"])] == [None]  # no PDQ references: the as-is band only
    assert QuerySpec(thresholds={"phash": 12}).bands("phash", 64, ["pdq", "phash"]) == ()  # explicit: no default bands
    given = QuerySpec(thresholds={"phash": 12}, confirmations=DEFAULT_CONFIRMATIONS)
    assert [c.up_to for c in given.bands("phash", 64, ["pdq", "phash"])] == [14]  # 12 covers the rest


def test_confirmation_rejects_bad_values() -> None:
    with pytest.raises(UsageError):
        Confirmation("phash", 10, "phash", 50)
    with pytest.raises(UsageError):
        Confirmation("phash", -1, "pdq", 50)
    with pytest.raises(UsageError):
        QuerySpec(confirmations=[("phash", 10, "pdq", 50)])


# -- the Matcher against a naive oracle ----------------------------------------------------
def _oracle(refs: list[tuple[str, Hash, Hash | None, Hash | None]], views: list[dict[str, list[HashResult]]],
            bands: list[Confirmation], min_quality: int) -> set[tuple[str, int, int, str | None]]:
    """(algorithm, entry id, distance, orientation) the policy must report: a loop over
    every reference image, view and variant, in the words of the Confirmation docstring."""
    out = set()
    entry = 0
    for _ext, ph, pdq, _ in refs:
        for alg, ref in (("phash", ph), ("pdq", pdq)):
            if ref is None:
                continue
            best = None
            for vi, view in enumerate(views):
                for var, r in enumerate(view[alg]):
                    ok = r.quality is None or r.quality >= min_quality
                    if alg == "phash":  # pHash's content gate: PDQ's quality of the same variant
                        ok = view["pdq"][var].quality >= 25
                    d = (r.hash.value ^ ref.value).bit_count()
                    if not ok:
                        continue
                    accepted = d <= (PH_T if alg == "phash" else PDQ_T)
                    for band in bands if alg == "phash" else ():
                        if d > band.up_to:
                            continue
                        if band.by is None:
                            accepted |= vi == 0 and var == 0
                        elif pdq is not None:
                            c = view["pdq"][var]
                            c_ok = c.quality is None or c.quality >= min_quality
                            accepted |= c_ok and (c.hash.value ^ pdq.value).bit_count() <= band.within
                    if accepted and (best is None or (d, vi, var) < best):
                        best = (d, vi, var)
            if best is not None:
                d, vi, var = best
                turned = DIHEDRAL_NAMES[var] if var else None
                orient = turned if vi == 0 else ("trimmed" if turned is None else f"trimmed+{turned}")
                out.add((alg, entry if alg == "phash" else entry + 1, d, orient))
        entry += 2
    return out


_BANDS = st.lists(st.tuples(st.sampled_from([8, 10, 11, 12, 14]), st.one_of(st.none(), st.integers(0, 140))), max_size=3)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nimages=st.integers(1, 6), nviews=st.integers(1, 2), bands=_BANDS,
       lacks_pdq=st.lists(st.booleans(), min_size=6, max_size=6),
       low_quality=st.lists(st.booleans(), min_size=16, max_size=16))
def test_match_views_equals_naive_policy(seed: int, nimages: int, nviews: int, bands: list[tuple[int, int | None]],
                                         lacks_pdq: list[bool], low_quality: list[bool]) -> None:
    rng = np.random.default_rng(seed)
    anchor_ph, anchor_pdq = _rand(rng, "phash", 64), _rand(rng, "pdq", 256)
    refs = []
    for i in range(nimages):  # references near the upload: pHash 7-14 bits, PDQ 20-140 bits away
        ph = _flip(anchor_ph, rng, int(rng.integers(7, 15)))
        pdq = None if lacks_pdq[i] else _flip(anchor_pdq, rng, int(rng.integers(20, 141)))
        refs.append((f"img{i}", ph, pdq, None))
    views = []
    for v in range(nviews):
        view = {"phash": [], "pdq": []}
        for var in range(8):
            q = (10, 40)[var % 2] if low_quality[v * 8 + var] else 90  # under both gates, or only PDQ's
            view["phash"].append(HashResult(_flip(anchor_ph, rng, int(rng.integers(0, 3)))))
            view["pdq"].append(HashResult(_flip(anchor_pdq, rng, int(rng.integers(0, 10))), q))
        views.append(view)
    rules = [Confirmation("phash", u, None) if w is None else Confirmation("phash", u, "pdq", w) for u, w in bands]
    hashes, ids, exts = [], [], []
    for i, (ext, ph, pdq, _) in enumerate(refs):
        hashes.append(ph), ids.append(2 * i), exts.append(ext)
        if pdq is not None:
            hashes.append(pdq), ids.append(2 * i + 1), exts.append(ext)
    m = Matcher.from_hashes(hashes, ids=ids, external_ids=exts, confirmations=rules)
    got = {(x.algorithm, x.entry_id, x.distance, x.orientation) for x in m.match_views(views)}
    assert got == _oracle(refs, views, rules, 50)


def _turned_upload(rng: np.random.Generator, edge: Hash, pdq: Hash, quality: int = 100, at: int = 3) -> dict[str, list[HashResult]]:
    """Eight orientations: pHash ``edge`` at variant ``at`` (the others far away), PDQ
    ``pdq`` at every variant."""
    phs = [HashResult(edge if v == at else _rand(rng, "phash", 64)) for v in range(8)]
    return {"phash": phs, "pdq": [HashResult(pdq, quality) for _ in range(8)]}


def test_band_needs_the_same_image(rng: np.random.Generator) -> None:
    ph, pdq = _rand(rng, "phash", 64), _rand(rng, "pdq", 256)
    edge = _flip(ph, rng, 10)
    upload = _turned_upload(rng, edge, pdq)
    same = Matcher.from_hashes([ph, pdq], external_ids=["a", "a"])
    assert [(x.algorithm, x.distance, x.orientation) for x in same.match_hashes(upload)] == [
        ("pdq", 0, None), ("phash", 10, DIHEDRAL_NAMES[3])]
    other = Matcher.from_hashes([ph, pdq], external_ids=["a", "b"])  # PDQ of another image
    assert [x.algorithm for x in other.match_hashes(upload)] == ["pdq"]
    bare = Matcher.from_hashes([ph])  # a hash-only list without PDQ: 9, and 10 for the upload as it is
    assert bare.match_hashes(upload) == []
    assert [x.distance for x in bare.match_hashes(_turned_upload(rng, edge, pdq, at=0))] == [10]
    assert [x.distance for x in Matcher.from_hashes([ph], thresholds={"phash": 10}).match_hashes(upload)] == [10]
    unnamed = Matcher.from_hashes([ph, pdq], external_ids=[None, None])  # no external id: not one image
    assert [x.algorithm for x in unnamed.match_hashes(upload)] == ["pdq"]
    twins = Matcher.from_hashes([ph, pdq, _flip(pdq, rng, 3)], external_ids=["a", "a", "a"])  # two PDQs: ambiguous
    assert [x.algorithm for x in twins.match_hashes(upload)] == ["pdq", "pdq"]
    within = DEFAULT_CONFIRMATIONS[1].within  # inclusive, and the PDQ must pass the quality gate
    for flips, quality, found in ((within, 100, True), (within + 1, 100, False), (within, 49, False)):
        far = _turned_upload(rng, edge, _flip(pdq, rng, flips), quality)
        assert [x.algorithm for x in same.match_hashes(far)] == (["phash"] if found else [])


def test_phash_content_gate_follows_pdq_quality_of_the_same_variant(rng: np.random.Generator) -> None:
    ph, pdq = _rand(rng, "phash", 64), _rand(rng, "pdq", 256)
    m = Matcher.from_hashes([ph])
    for quality, found in ((24, False), (25, True)):
        upload = {"phash": [HashResult(ph)], "pdq": [HashResult(_rand(rng, "pdq", 256), quality)]}
        assert [x.distance for x in m.match_hashes(upload)] == ([0] if found else [])
    flat = {"phash": [HashResult(ph)], "pdq": [HashResult(pdq, 0)]}
    assert [x.distance for x in m.with_options(phash_content=None).match_hashes(flat)] == [0]
    assert [x.distance for x in m.match_hashes({"phash": [HashResult(ph)]})] == [0]  # no PDQ: ungated
    with pytest.raises(UsageError):
        QuerySpec(phash_content="high")


def test_store_siblings_are_one_write_one_list_one_external_id(tmp_path: Path, rng: np.random.Generator) -> None:
    store = ReferenceStore(tmp_path / "refs.db")
    ph, pdq = _rand(rng, "phash", 64), _rand(rng, "pdq", 256)
    report = store.add_entries("L", [NewEntry(ph, None, None, "x.jpg"), NewEntry(pdq, 90, None, "x.jpg")])
    ph_id = report.entry_ids[0]
    # Rows without ids imported in one write: several PDQs qualify, so none is a sibling.
    many = store.add_entries("L", [NewEntry(_rand(rng, "phash", 64), None, None, None)]
                             + [NewEntry(_rand(rng, "pdq", 256), 90, None, None) for _ in range(2)])
    later = store.add_entries("L", [NewEntry(_rand(rng, "pdq", 256), 90, None, "x.jpg")])  # another write
    assert store.sibling_hashes([ph_id, many.entry_ids[0]], "pdq") == {ph_id: pdq}
    upload = _turned_upload(rng, _flip(ph, rng, 10), _flip(pdq, rng, 40))
    with Matcher.from_store(store, cache_snapshots=False) as m:
        assert [(x.algorithm, x.entry_id, x.distance) for x in m.match_hashes(upload)] == [("phash", ph_id, 10)]
        assert m.thresholds["phash"] == 9
    store.retract([report.entry_ids[1]])
    assert store.sibling_hashes([ph_id], "pdq") == {}
    with Matcher.from_store(store, cache_snapshots=False) as m:
        assert m.match_hashes(upload) == []
    assert later.added == 1
    store.close()


# -- calibration of the policy --------------------------------------------------------------
def _policy_hashes(rng: np.random.Generator, n: int, v: int) -> PolicyHashes:
    """Images whose pHashes are near each other (so bands and thresholds are reached)
    and whose PDQs are random; uploads are the images with a few bits flipped."""
    def flips(rows: int, bits: int, p: float) -> np.ndarray:
        mask = (rng.random((rows, bits)) < p).astype(np.uint64) << np.arange(bits, dtype=np.uint64)
        return np.bitwise_or.reduce(mask, axis=1)

    base = rng.integers(0, 2**63, dtype=np.uint64)
    ph = (base ^ flips(n, 64, 0.1))[:, None]
    pdq = rng.integers(0, 2**63, size=(n, 4), dtype=np.uint64)
    qph = (ph[:, None, :] ^ flips(n * v, 64, 0.02).reshape(n, v, 1))
    qpdq = (pdq[:, None, :] ^ flips(n * v * 4, 64, 0.05).reshape(n, v, 4))
    quality = rng.choice(np.array([10, 30, 60, 100], np.int16), size=(n, v))  # both gates at work
    return PolicyHashes(pdq, ph, np.ascontiguousarray(qpdq), np.ascontiguousarray(qph), quality)


def _naive_features(h: PolicyHashes, e: int) -> dict[tuple[int, int], tuple[int, int, int]]:
    out = {}
    n, v = h.query_quality.shape
    ok, ph_ok = h.query_quality >= 50, h.query_quality >= 25  # the default gates
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            dp = [sum(int(a ^ b).bit_count() for a, b in zip(h.query_pdq[i, a_], h.ref_pdq[j])) if ok[i, a_] else 257
                  for a_ in range(v)]
            dh = [int(h.query_phash[i, a_, 0] ^ h.ref_phash[j, 0]).bit_count() if ph_ok[i, a_] else 65 for a_ in range(v)]
            conf = min([p for p, q in zip(dp, dh) if q <= e], default=257)
            out[(i, j)] = (min(dp), min(dh), conf)
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 14), v=st.integers(1, 4), e=st.integers(0, 16))
def test_policy_pair_features_equal_naive(seed: int, n: int, v: int, e: int) -> None:
    h = _policy_hashes(np.random.default_rng(seed), n, v)
    f = policy_pair_features(h, h, np.arange(n))
    naive = _naive_features(h, e)
    as_is = {(i, j): int(h.query_phash[i, 0, 0] ^ h.ref_phash[j, 0]).bit_count() if h.query_quality[i, 0] >= 25 else 65
             for i, j in naive}
    assert all(int(a) == as_is[(int(i), int(j))] for i, j, a in zip(f.query, f.reference, f.as_is))
    assert f.pairs == n * (n - 1)
    got = {(int(i), int(j)): (int(p), int(q), int(c)) for i, j, p, q, c in zip(f.query, f.reference, f.min_pdq, f.min_phash, f.confirm[:, e])}
    want = {k: val for k, val in naive.items() if val[0] <= 64 or val[1] <= 16}
    assert got == want
    spec = QuerySpec(thresholds={"pdq": 40, "phash": 8},
                     confirmations=[Confirmation("phash", e, "pdq", 100), Confirmation("phash", min(e + 1, 16), None)])
    hits = {k for k, (p, q, _) in naive.items() if p <= 40 or q <= 8} | {
        k for k, (p, q, c) in naive.items() if e > 8 and c <= 100} | {k for k in naive if e + 1 > 8 and as_is[k] <= min(e + 1, 16)}
    assert {k for k, hit in zip(got, policy_matches(f, spec)) if hit} == hits
    own = policy_pair_features(h, h, np.arange(n), only_owner=True)
    assert own.pairs == n and set(own.query.tolist()) <= set(range(n)) and (own.query == own.reference).all()


def test_calibrate_policy_counts_and_recommends(rng: np.random.Generator) -> None:
    h = _policy_hashes(rng, 40, 2)
    f = policy_pair_features(h, h, np.arange(40))
    spec = QuerySpec(thresholds={"phash": 9}, confirmations=[Confirmation("phash", 10, "pdq", 90)])
    alone = int(policy_matches(f, QuerySpec(thresholds={"phash": 9}, confirmations=())).sum())
    band = int(policy_matches(f, QuerySpec(thresholds={"phash": 10}, confirmations=())).sum()) - alone
    assert band > 3  # pairs in the band, so the recommendation has something to choose
    target = upper_rate_bound(alone + band // 2, f.pairs)  # room for some of the band, not all
    cal = calibrate_policy(f, target, spec)
    assert cal.standalone == alone
    assert cal.pairs == 40 * 39
    assert cal.false_positives == int(policy_matches(f, spec).sum())
    assert cal.upper_fpr == upper_rate_bound(cal.false_positives, cal.pairs)
    assert list(cal.band_within) == [0]
    for x, ok in ((cal.band_within[0], True), (cal.band_within[0] + 1, False)):
        loose = QuerySpec(thresholds={"phash": 9}, confirmations=[Confirmation("phash", 10, "pdq", x)])
        assert (upper_rate_bound(int(policy_matches(f, loose).sum()), cal.pairs) <= target) == ok
    assert "95% upper bound" in cal.summary()
    with pytest.raises(UsageError):
        calibrate_policy(f, 0.05, QuerySpec(confirmations=[Confirmation("dhash", 10, "pdq", 1)]))


def test_policy_hashes_checks_shapes() -> None:
    z = np.zeros
    with pytest.raises(UsageError):
        PolicyHashes(z((2, 4), np.uint64), z((2, 1), np.uint64), z((2, 8, 4), np.uint64), z((2, 8, 1), np.uint64), z((2, 7), np.int16))
    assert HashBatch  # the packed words are HashBatch.words rows


# -- in-memory links against the store's sibling rule ---------------------------------------
_EXTS = [None, "a.jpg", "b.jpg", "c.jpg"]
# A write: per image (external id, pHash count, PDQ count, list); or a retraction of
# entries picked by these numbers.
_WRITE = st.lists(st.tuples(st.sampled_from(_EXTS), st.integers(0, 2), st.integers(0, 2), st.sampled_from("LM")),
                  min_size=1, max_size=4)
_OPS = st.lists(st.one_of(_WRITE.map(lambda w: ("add", w)),
                          st.lists(st.integers(0, 10**6), min_size=1, max_size=3).map(lambda r: ("retract", r))),
                min_size=1, max_size=8)


def _active(store: ReferenceStore, algorithm: str) -> list[int]:
    return store.read_active(algorithm)[1].tolist()


@settings(max_examples=60, deadline=None)
@given(ops=_OPS, seed=st.integers(0, 2**32 - 1))
def test_links_follow_the_store_sibling_rule_through_writes_and_retractions(ops, seed) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        store = ReferenceStore(Path(tmp) / "refs.db")
        links = None
        for kind, what in ops:
            if kind == "add":
                entries = []
                for ext, nph, npdq, lst in what:
                    entries += [NewEntry(_rand(rng, "phash", 64), None, None, ext) for _ in range(nph)]
                    entries += [NewEntry(_rand(rng, "pdq", 256), 90, None, ext) for _ in range(npdq)]
                    if lst == "M":  # the same ids in another list, same write: never siblings across lists
                        store.add_entries("M", [NewEntry(_rand(rng, "pdq", 256), 90, None, ext)])
                if entries:
                    store.add_entries("L", entries)
            else:
                alive = _active(store, "pdq") + _active(store, "phash")
                if alive:
                    store.retract(sorted({alive[k % len(alive)] for k in what}))
            links = Links.from_store(store, "phash", "pdq", 256, links)
            ids = _active(store, "phash")
            assert links.hashes(ids) == store.sibling_hashes(ids, "pdq")
            fresh = Links.from_store(store, "phash", "pdq", 256, None)
            assert fresh.hashes(ids) == store.sibling_hashes(ids, "pdq")
        store.close()


def test_links_lookup_without_siblings() -> None:
    empty = Links("pdq", 256, np.zeros(0, np.int64), np.zeros((0, 4), np.uint64))
    has, words = empty.lookup(np.array([1, 2], np.int64))
    assert not has.any() and words.shape == (2, 4)
    assert empty.hashes([1]) == {} and empty.hashes([]) == {}


def test_retracting_one_of_two_pdqs_makes_the_other_the_sibling(tmp_path: Path, rng: np.random.Generator) -> None:
    store = ReferenceStore(tmp_path / "refs.db")
    ph, pdq1, pdq2 = _rand(rng, "phash", 64), _rand(rng, "pdq", 256), _rand(rng, "pdq", 256)
    ids = store.add_entries("L", [NewEntry(ph, None, None, "x"), NewEntry(pdq1, 90, None, "x"),
                                  NewEntry(pdq2, 90, None, "x")]).entry_ids
    upload = {"phash": [HashResult(_flip(ph, rng, 12))] + [HashResult(_rand(rng, "phash", 64)) for _ in range(7)],
              "pdq": [HashResult(_flip(pdq2, rng, 40), 100) for _ in range(8)]}
    with Matcher.from_store(store, cache_snapshots=False) as m:
        assert m.match_hashes(upload) == []  # two PDQs under one id: no sibling
        store.retract([ids[1]])
        m.refresh()
        assert [(x.entry_id, x.distance) for x in m.match_hashes(upload)] == [(ids[0], 12)]
        store.retract([ids[2]])
        m.refresh()
        assert m.match_hashes(upload) == []
    store.close()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nimages=st.integers(1, 6), one_write=st.booleans(),
       retract=st.lists(st.booleans(), min_size=6, max_size=6), bands=st.lists(
           st.tuples(st.sampled_from([10, 12, 14]), st.one_of(st.none(), st.integers(0, 140))), max_size=3))
def test_store_matcher_equals_naive_policy_across_refresh(seed, nimages, one_write, retract, bands) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    anchor_ph, anchor_pdq = _rand(rng, "phash", 64), _rand(rng, "pdq", 256)
    refs = [(f"img{i}", _flip(anchor_ph, rng, int(rng.integers(7, 15))),
             _flip(anchor_pdq, rng, int(rng.integers(20, 141))), None) for i in range(nimages)]
    views = [{"phash": [HashResult(_flip(anchor_ph, rng, int(rng.integers(0, 3)))) for _ in range(8)],
              "pdq": [HashResult(_flip(anchor_pdq, rng, int(rng.integers(0, 10))), 90) for _ in range(8)]}]
    rules = [Confirmation("phash", u, None) if w is None else Confirmation("phash", u, "pdq", w) for u, w in bands]
    with tempfile.TemporaryDirectory() as tmp:
        store = ReferenceStore(Path(tmp) / "refs.db")
        writes = [[NewEntry(ph, None, None, ext), NewEntry(pdq, 90, None, ext)] for ext, ph, pdq, _ in refs]
        if one_write:
            writes = [[e for w in writes for e in w]]
        ids = [i for w in writes for i in store.add_entries("L", w).entry_ids]
        with Matcher.from_store(store, cache_snapshots=False, confirmations=rules) as m:

            def verdict() -> set[tuple[str, int, int, str | None]]:
                return {(x.algorithm, x.entry_id, x.distance, x.orientation) for x in m.match_views(views)}

            def expected() -> set[tuple[str, int, int, str | None]]:
                oracle = _oracle(refs, views, rules, 50)  # entry ids 0, 1, 2, ... in the oracle
                return {(alg, ids[e], d, o) for alg, e, d, o in oracle}

            assert verdict() == expected()
            gone = [ids[2 * i + 1] for i in range(nimages) if retract[i]]
            if gone:
                store.retract(gone)
                m.refresh()
                refs = [(ext, ph, None if retract[i] else pdq, x) for i, (ext, ph, pdq, x) in enumerate(refs)]
                assert verdict() == expected()
        store.close()

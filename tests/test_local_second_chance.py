"""Issue 12, round 5: the local stage's second chance at a wider radius, and 20 retrieval rows."""

from __future__ import annotations

import numpy as np
import pytest

from hashmatch.errors import UsageError
from hashmatch.local import RETRIEVAL_FEATURES, LocalFeatures, LocalIndex, VerificationRule

RULE = VerificationRule(min_inliers=10)


def _features(xy: np.ndarray, desc: np.ndarray) -> LocalFeatures:
    return LocalFeatures(xy.astype(np.float32), np.zeros(len(desc), np.uint8), desc, 512, 512, 1.0)


def _flipped(desc: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Each row with exactly ``bits`` of its 256 bits flipped."""
    unpacked = np.unpackbits(desc, axis=1)
    for row in unpacked:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked, axis=1)


def _references(rng: np.random.Generator, n: int = 6, rows: int = 40) -> list[LocalFeatures]:
    return [_features(rng.uniform(0, 500, (rows, 2)), rng.integers(0, 256, (rows, 32), dtype=np.uint8)) for _ in range(n)]


def _drifted_copy(ref: LocalFeatures, bits: int, rng: np.random.Generator, noise: int = 30) -> LocalFeatures:
    """A shifted copy of ``ref`` whose descriptors drifted by ``bits``, then unrelated rows."""
    desc = np.concatenate([_flipped(ref.descriptors, bits, rng), rng.integers(0, 256, (noise, 32), dtype=np.uint8)])
    xy = np.concatenate([ref.xy + 7, rng.uniform(0, 500, (noise, 2))])
    return _features(xy, desc)


def test_second_chance_finds_a_copy_whose_rows_drifted_beyond_the_radius() -> None:
    rng = np.random.default_rng(3)
    refs = _references(rng)
    query = _drifted_copy(refs[2], 22, rng)  # 22 bits: beyond the first steps' radius, within the second's
    assert [m.entry_id for m in LocalIndex.from_features(refs, rule=RULE, second_radius=0).match_features(query)] == []
    index = LocalIndex.from_features(refs, rule=RULE)
    assert index.second_radius > 22 > index.radius
    found = index.match_features(query)
    assert [m.entry_id for m in found] == [2] and found[0].inliers >= 30
    # Too few rows looked up at the wide radius (the copy's rows come after the unrelated ones).
    late = _features(np.roll(query.xy, 30, axis=0), np.roll(query.descriptors, 30, axis=0))
    assert index.match_features(late) == []


def test_second_chance_runs_only_when_nothing_verified() -> None:
    rng = np.random.default_rng(4)
    refs = _references(rng)
    exact, drifted = _drifted_copy(refs[0], 0, rng, noise=0), _drifted_copy(refs[1], 22, rng, noise=0)
    # Reference 0 verifies with 20 inliers (below early_exit): the regions are searched, but
    # something verified, so reference 1 (reachable only at the wide radius) is not looked for.
    first20 = _features(exact.xy[:20], exact.descriptors[:20])
    both = _features(np.concatenate([drifted.xy, first20.xy]), np.concatenate([drifted.descriptors, first20.descriptors]))
    index = LocalIndex.from_features(refs, rule=RULE, query_lookups=60)
    assert [m.entry_id for m in index.match_features(both)] == [0]
    assert [m.entry_id for m in index.match_features(drifted)] == [1]


def test_second_chance_shortlist_leaves_verified_references_out() -> None:
    rng = np.random.default_rng(5)
    refs = _references(rng)
    query = _features(np.concatenate([refs[1].xy, refs[4].xy]), np.concatenate([_flipped(refs[1].descriptors, 20, rng),
                                                                                    _flipped(refs[4].descriptors[:5], 20, rng)]))
    index = LocalIndex.from_features(refs, rule=RULE)
    assert [e for e, _, _ in index._shortlist([query], [(0, 45)], radius=26)] == [1, 4]
    assert [e for e, _, _ in index._shortlist([query], [(0, 45)], radius=26, exclude={1})] == [4]
    assert index._shortlist([query], [(0, 45)]) == []  # nothing within the first steps' radius


def test_each_other_view_shares_the_second_lookups() -> None:
    rng = np.random.default_rng(6)
    refs = _references(rng)
    unrelated = _features(rng.uniform(0, 500, (50, 2)), rng.integers(0, 256, (50, 32), dtype=np.uint8))
    copy = _drifted_copy(refs[5], 22, rng, noise=0)
    # A region view: 15 unrelated rows, then the reference's drifted ones.
    region = _features(np.concatenate([unrelated.xy[:15], copy.xy]), np.concatenate([unrelated.descriptors[:15], copy.descriptors]))
    index = LocalIndex.from_features(refs, rule=RULE, second_lookups=40)
    # Two other views share 40 lookups: 20 rows of each reach the copy's rows.
    assert [m.entry_id for m in index.match_features([unrelated, region, unrelated])] == [5]
    # Four share them: 10 rows of each do not.
    assert index.match_features([unrelated, region, unrelated, unrelated, unrelated]) == []


@pytest.mark.parametrize(("name", "value"), [("second_radius", 65), ("second_radius", -1), ("second_lookups", -1)])
def test_second_chance_options_are_checked(name: str, value: int) -> None:
    with pytest.raises(UsageError, match=name):
        LocalIndex.from_features(_references(np.random.default_rng(0), 1), **{name: value})


def test_twenty_retrieval_rows_are_indexed_per_reference() -> None:
    rng = np.random.default_rng(8)
    refs = _references(rng, rows=40)
    index = LocalIndex.from_features(refs)
    assert RETRIEVAL_FEATURES == 20
    for row, found in ((19, [3]), (20, [])):  # the 20th row is indexed, the 21st is not
        query = _features(refs[3].xy[row:row + 1].repeat(2, 0), refs[3].descriptors[row:row + 1].repeat(2, 0))
        assert [e for e, _ in index.shortlist(query)] == found


def test_a_gate_decides_what_verified_for_a_permissive_rule() -> None:
    rng = np.random.default_rng(9)
    refs = _references(rng)
    weak, drifted = _drifted_copy(refs[0], 0, rng, noise=0), _drifted_copy(refs[1], 22, rng, noise=0)
    # Reference 0 verifies with 6 inliers: enough for a permissive rule, not for the default.
    query = _features(np.concatenate([drifted.xy[:20], weak.xy[:6]]), np.concatenate([drifted.descriptors[:20], weak.descriptors[:6]]))
    permissive = VerificationRule(min_inliers=4, min_coverage=0.0, min_inlier_ratio=0.0, min_spread=0.0)
    assert [m.entry_id for m in LocalIndex.from_features(refs, rule=permissive).match_features(query)] == [0]
    gated = LocalIndex.from_features(refs, rule=permissive, gate=RULE)
    assert [m.entry_id for m in gated.match_features(query)] == [1, 0]  # 20 inliers, then 6
    with pytest.raises(UsageError, match="gate"):
        LocalIndex.from_features(refs, gate="strict")  # type: ignore[arg-type]

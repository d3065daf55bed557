"""QuerySpec and the one query pipeline: every entry point gives an image one verdict."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hashmatch
from hashmatch import Matcher, QuerySpec, UsageError
from hashmatch.errors import UnknownAlgorithmError
from hashmatch.hashers import HashResult
from hashmatch.hashes import Hash
from hashmatch.testing.synthetic import generate_image


def test_query_spec_is_frozen_hashable_and_pickles():
    spec = QuerySpec(algorithms=["pdq", "phash"], thresholds={"pdq": 20}, options={"phash": {"hash_size": 8}})
    assert spec.algorithms == ("pdq", "phash")
    assert spec.threshold_map() == {"pdq": 20} and spec.options_for("phash") == {"hash_size": 8}
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert hash(spec) == hash(QuerySpec(algorithms=("pdq", "phash"), thresholds=(("pdq", 20),), options={"phash": {"hash_size": 8}}))
    with pytest.raises(AttributeError):
        spec.dihedral = False  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"thresholds": {"pdq": 300}}, "from 0 to 256"),
        ({"thresholds": {"phash": -1}}, "from 0 to 64"),
        ({"require": "most"}, "require"),
        ({"min_quality": "high"}, "min_quality"),
        ({"algorithms": "phash"}, "list of names"),
        ({"dihedral": "yes"}, "dihedral"),
        ({"options": {"phash": {"hash_szie": 8}}}, "hash_szie"),
    ],
)
def test_query_spec_refuses_bad_fields_with_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=message):
        QuerySpec(**kwargs)


def test_threshold_names_nobody_knows_are_refused_with_a_suggestion(rng):
    with pytest.raises(UnknownAlgorithmError, match="did you mean 'phash'"):
        Matcher.from_hashes([Hash(1, "phash", 64)], thresholds={"phahs": 3})
    with pytest.raises(UnknownAlgorithmError, match="did you mean 'pdq'"):
        Matcher.from_hashes([Hash(1, "phash", 64)], thresholds={"pdqq": 10})
    # An in-memory algorithm of the matcher's own hashes is a known name.
    assert Matcher.from_hashes([Hash(1, "mine", 64)], thresholds={"mine": 3}).thresholds == {"mine": 3}


def test_matcher_spec_carries_its_options_and_resolved_algorithms():
    ref = hashmatch.compute_hashes(generate_image(3, size=(96, 80)), ["phash", "pdq"])
    limits = hashmatch.ImageLimits(max_pixels=10_000)
    m = Matcher.from_hashes([ref["phash"][0].hash, ref["pdq"][0].hash], limits=limits, fast=False, dihedral=False)
    assert m.spec.algorithms == ("phash", "pdq")
    assert (m.spec.limits, m.spec.fast, m.spec.dihedral, m.spec.trim_borders) == (limits, False, False, True)
    with pytest.raises(hashmatch.ImageTooLargeError):  # the Matcher's own limits, not defaults
        m.match(np.zeros((200, 200, 3), np.uint8))


def test_require_all_is_applied_after_the_views_are_merged(rng):
    p = Hash(int.from_bytes(rng.bytes(8), "big"), "phash", 64)
    d = Hash(int.from_bytes(rng.bytes(8), "big"), "dhash", 64)
    m = Matcher.from_hashes([p, d], ids=[1, 2], require="all")
    # phash matches the upload as it is, dhash only its trimmed view: both algorithms matched.
    views = [{"phash": (HashResult(p),)}, {"dhash": (HashResult(d),)}]
    found = m.match_views(views)
    assert sorted((x.entry_id, x.orientation) for x in found) == [(1, None), (2, "trimmed")]
    assert m.match_views([{"phash": (HashResult(p),)}]) == []  # dhash matched in no view


def test_quality_gate_rule_is_one_rule():
    from hashmatch.hashers import is_low_quality

    assert HashResult(Hash(0, "pdq", 256), None).passes(50)
    assert not HashResult(Hash(0, "pdq", 256), 49).passes(50)
    assert HashResult(Hash(0, "pdq", 256), 49).passes(None)
    assert is_low_quality(49) and not is_low_quality(50) and not is_low_quality(None)


def _upload_set(folder: Path) -> tuple[list[Hash], list[Path]]:
    """References of three originals, and uploads: copies, a rotated and a letterboxed
    copy, unrelated images, a flat image (PDQ quality gate) and a file that is not an image."""
    folder.mkdir()
    originals = [generate_image(seed, size=(160, 120)) for seed in (21, 22, 23)]
    refs = []
    for image in originals:
        hashes = hashmatch.compute_hashes(image, ["phash", "pdq"])
        refs += [hashes["phash"][0].hash, hashes["pdq"][0].hash]
    uploads = {
        "copy.png": originals[0],
        "rotated.png": originals[1].transpose(Image.Transpose.ROTATE_90),
        "unrelated1.png": generate_image(31, size=(160, 120)),
        "unrelated2.jpg": generate_image(32, size=(200, 150)),
        "flat.png": Image.new("RGB", (64, 64), (120, 120, 120)),
    }
    boxed = Image.new("RGB", (160, 220))
    boxed.paste(originals[2], (0, 50))
    uploads["letterboxed.png"] = boxed
    paths = []
    for name, image in uploads.items():
        image.save(folder / name)
        paths.append(folder / name)
    (folder / "notes.txt").write_text("not an image")
    paths.append(folder / "notes.txt")
    return refs, paths


@pytest.mark.parametrize("require", ["any", "all"])
def test_one_image_one_verdict_through_match_match_many_and_scan(tmp_path, require):
    refs, paths = _upload_set(tmp_path / "uploads")
    m = Matcher.from_hashes(refs, labels=[f"l{i // 2}" for i in range(len(refs))], require=require)

    def verdict(matches):  # noqa: ANN001, ANN202
        return sorted((x.entry_id, x.algorithm, x.distance, x.orientation) for x in matches)

    one_by_one = {}
    for path in paths:
        try:
            one_by_one[str(path)] = verdict(m.match(path))
        except hashmatch.HashmatchError:
            one_by_one[str(path)] = "error"
    many = {str(p): ("error" if isinstance(r, hashmatch.HashmatchError) else verdict(r)) for p, r in zip(paths, m.match_many(paths))}
    scanned = {
        r.path: ("error" if r.error_kind else verdict(r.matches))
        for r in hashmatch.scan(tmp_path / "uploads", m, workers=0)
    }
    assert one_by_one == many == scanned
    matched = {Path(p).name for p, v in one_by_one.items() if v and v != "error"}
    assert matched == {"copy.png", "rotated.png", "letterboxed.png"}
    assert one_by_one[str(tmp_path / "uploads" / "notes.txt")] == "error"


def test_scan_uses_the_matchers_spec_in_worker_processes(tmp_path):
    refs, paths = _upload_set(tmp_path / "uploads")
    m = Matcher.from_hashes(refs)
    pooled = {r.path: [x.to_dict() for x in r.matches] for r in hashmatch.scan(tmp_path / "uploads", m, workers=2)}
    serial = {r.path: [x.to_dict() for x in r.matches] for r in hashmatch.scan(tmp_path / "uploads", m, workers=0)}
    assert pooled == serial


def test_scan_with_nothing_to_match_against_is_a_usage_error(tmp_path):
    empty = Matcher.from_hashes([])
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(UsageError, match="nothing to match against"):
        hashmatch.scan(tmp_path, empty, workers=0)


def test_with_options_shares_the_references_and_changes_only_the_spec(rng):
    original = generate_image(41, size=(128, 96))
    ref = hashmatch.compute_hashes(original, ["phash"])["phash"][0].hash
    m = Matcher.from_hashes([ref], labels=["x"])
    plain = m.with_options(dihedral=False)
    turned = original.transpose(Image.Transpose.ROTATE_90)
    assert m.match(turned) and plain.match(turned) == []
    assert plain.index("phash") is m.index("phash") and m.index("pdq") is None
    assert (m.dihedral, plain.dihedral) == (True, False)
    with pytest.raises(UsageError, match="thresholds"):
        m.with_options(thresholds={"phash": 3})


def test_a_store_with_nothing_to_match_warns_in_the_log(tmp_path, caplog):
    store = hashmatch.ReferenceStore(tmp_path / "s.db")
    store.add("L", Hash(1, "phash", 64))
    with caplog.at_level("WARNING", logger="hashmatch._match"):
        with Matcher.from_store(store, algorithms=["phash", "dhash"]) as m:
            assert m.counts == {"phash": 1, "dhash": 0}
    assert "no active dhash entries" in caplog.text
    store.retract([1])
    caplog.clear()
    with caplog.at_level("WARNING", logger="hashmatch._match"):
        with Matcher.from_store(store) as m:
            assert len(m) == 0 and m.match(np.zeros((32, 32, 3), np.uint8)) == []
    assert "no active entries" in caplog.text
    store.close()

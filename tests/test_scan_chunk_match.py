"""A scan matches a chunk of files at once (``Matcher.match_batch``, ``pack_views``): the
verdicts must be ``match_views``'s, file by file, whatever the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import hashmatch
from hashmatch import Hash, Matcher, ReferenceStore
from hashmatch._match import _BATCH_ROWS
from hashmatch._scan._worker import _encode, decode_views, own_hashes, pack_views
from hashmatch.hashers import HashResult
from hashmatch.index import _base
from hashmatch.testing.synthetic import generate_image


def _flip(value: int, bits: int, k: int, rng: np.random.Generator) -> int:
    for bit in rng.choice(bits, size=k, replace=False):
        value ^= 1 << int(bit)
    return value


def _references(rng: np.random.Generator, n: int) -> tuple[list[Hash], list[str]]:
    """n images, each with a pHash and a PDQ hash under one external id (the bands'
    sibling), plus a pHash-only image with no sibling."""
    hashes, external = [], []
    for i in range(n):
        hashes.append(Hash(int(rng.integers(0, 2**63)) << 1 | 1, "phash", 64))
        hashes.append(Hash(int.from_bytes(rng.bytes(32), "big"), "pdq", 256))
        external += [f"img{i}", f"img{i}"]
    hashes.append(Hash(int(rng.integers(0, 2**63)), "phash", 64))
    external.append("lonely")
    return hashes, external


def _upload(rng: np.random.Generator, refs: list[Hash], views: int) -> list[dict[str, tuple[HashResult, ...]]]:
    """Views as QuerySpec.hash gives them (eight variants per algorithm); some variants
    are near one reference image in both algorithms: within the thresholds, in a band,
    or past the search radius, with a PDQ quality on either side of the gates."""
    out = []
    for _ in range(views):
        phash, pdq = [], []
        for _ in range(8):
            if rng.random() < 0.4:
                image = int(rng.integers(len(refs) // 2))
                p = _flip(refs[2 * image].value, 64, int(rng.integers(0, 17)), rng)
                q = _flip(refs[2 * image + 1].value, 256, int(rng.integers(0, 101)), rng)
            else:
                p, q = int(rng.integers(0, 2**63)), int.from_bytes(rng.bytes(32), "big")
            phash.append(HashResult(Hash(p, "phash", 64)))
            pdq.append(HashResult(Hash(q, "pdq", 256), int(rng.integers(0, 101))))
        out.append({"phash": tuple(phash), "pdq": tuple(pdq)})
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), uploads=st.integers(1, 40), require=st.sampled_from(["any", "all"]),
       drop_pdq=st.booleans())
def test_match_batch_gives_match_views_verdict_for_every_upload(seed, uploads, require, drop_pdq):
    rng = np.random.default_rng(seed)
    refs, external = _references(rng, 12)
    matcher = Matcher.from_hashes(refs, external_ids=external, labels=[f"l{i}" for i in range(len(refs))],
                                  require=require)
    views = [_upload(rng, refs, int(rng.integers(1, 3))) for _ in range(uploads)]
    if drop_pdq:  # uploads without the confirming algorithm: no band but pHash 10 as is
        views = [[{"phash": v["phash"]} for v in upload] for upload in views]
    plain = [_encode(upload) for upload in views]
    batched = list(matcher.match_batch(len(plain), pack_views(plain), lambda j: decode_views(plain[j])))
    assert batched == [matcher.match_views(upload) for upload in views]


def test_match_batch_oracle_inputs_reach_thresholds_and_bands(rng):
    # The generator of the test above is not vacuous: its uploads match within the
    # thresholds, through confirmed pHash bands, and not at all.
    refs, external = _references(rng, 12)
    matcher = Matcher.from_hashes(refs, external_ids=external)
    views = [_upload(rng, refs, 2) for _ in range(60)]
    plain = [_encode(upload) for upload in views]
    batched = list(matcher.match_batch(len(plain), pack_views(plain), lambda j: decode_views(plain[j])))
    assert batched == [matcher.match_views(upload) for upload in views]
    found = [m for matches in batched for m in matches]
    assert any(m.algorithm == "phash" and m.distance <= 9 for m in found)
    assert any(m.algorithm == "phash" and m.distance > 10 for m in found)  # confirmed by PDQ
    assert any(m.algorithm == "pdq" for m in found)
    assert any(not matches for matches in batched)


def test_match_batch_asks_only_for_the_views_of_uploads_that_hit_a_reference(rng):
    refs, external = _references(rng, 4)
    matcher = Matcher.from_hashes(refs, external_ids=external)
    far = [[{"phash": (HashResult(Hash(h.value ^ (2**64 - 1), "phash", 64)),)}] for h in refs if h.algorithm == "phash"]
    near = [[{"phash": (HashResult(refs[0]),)}]]
    plain = [_encode(u) for u in far + near]
    asked = []

    def views_of(j):
        asked.append(j)
        return decode_views(plain[j])

    got = list(matcher.match_batch(len(plain), pack_views(plain), views_of))
    assert asked == [len(far)]
    assert [bool(m) for m in got] == [False] * len(far) + [True]


def test_match_batch_leaves_out_retracted_references_and_sees_added_ones(tmp_path: Path, rng):
    hashes = [Hash(int(rng.integers(0, 2**63)), "phash", 64) for _ in range(6)]
    with ReferenceStore(tmp_path / "refs.db") as store:
        ids = [store.add("L", h) for h in hashes[:4]]
        matcher = Matcher.from_store(store, algorithms=["phash"])
        store.retract([ids[1]])
        store.add("L", hashes[5])
        assert matcher.refresh()  # base from before, a delta and a retraction
        uploads = [[{"phash": (HashResult(h),)}] for h in hashes]
        plain = [_encode(u) for u in uploads]
        asked = []

        def views_of(j):
            asked.append(j)
            return decode_views(plain[j])

        got = list(matcher.match_batch(len(plain), pack_views(plain), views_of))
        assert got == [matcher.match_views(u) for u in uploads]
        assert [bool(m) for m in got] == [True, False, True, True, False, True]
        assert asked == [0, 2, 3, 5]  # a retracted reference is no reason to look closer


def test_match_batch_reports_hashes_of_another_length_as_match_views_does(rng):
    matcher = Matcher.from_hashes([Hash(5, "phash", 64)])
    plain = [[{"phash": [(5, 64, None)]}], [{"phash": [(5, 256, None)]}]]
    got = matcher.match_batch(2, pack_views(plain), lambda j: decode_views(plain[j]))
    assert next(got)[0].distance == 0
    with pytest.raises(hashmatch.errors.IncompatibleHashError):
        next(got)


def test_pack_views_keeps_every_hash_with_its_upload_in_the_batch_layout():
    plain = [
        [{"phash": [(1, 64, None), (2, 64, None)], "pdq": [(2**255 + 7, 256, 90)]}, {"phash": [(3, 64, None)]}],
        [{"phash": [(4, 64, None), (5, 32, None)]}],  # lengths mixed in one list: kept apart
    ]
    packed = {(name, bits): (words, owner) for name, bits, words, owner in pack_views(plain)}
    assert sorted(packed) == [("pdq", 256), ("phash", 32), ("phash", 64)]
    words, owner = packed[("phash", 64)]
    assert words.tolist() == [[1], [2], [3], [4]] and owner.tolist() == [0, 0, 0, 1]
    words, owner = packed[("pdq", 256)]
    assert words.tolist() == [Hash(2**255 + 7, "pdq", 256).to_words().tolist()] and owner.tolist() == [0]
    assert packed[("phash", 32)][1].tolist() == [1]


def test_own_hashes_are_the_first_views_first_variants():
    plain = [{"phash": [(0xAB, 64, None), (1, 64, None)], "pdq": [(3, 256, 77)]}, {"phash": [(9, 64, None)]}]
    views = decode_views(plain)
    own, quality = own_hashes(plain)
    assert own == {name: results[0].hash.hex() for name, results in views[0].items()}
    assert own["phash"] == "00000000000000ab" and quality == {"pdq": 77}


def test_match_batch_queries_stay_under_the_index_parallel_batch():
    # The scan's matching process shares its cores with its workers: serial kernels only.
    assert _BATCH_ROWS < _base._PARALLEL_MIN_QUERIES


class PerFile:
    """A matcher with only what scan requires (spec, match_views): the file-by-file path."""

    def __init__(self, matcher: Matcher) -> None:
        self.spec = matcher.spec
        self.match_views = matcher.match_views


@pytest.mark.parametrize("workers,chunk_size", [(0, 3), (2, None)])
def test_scan_with_chunk_matching_gives_the_file_by_file_results(tmp_path, workers, chunk_size):
    originals = [generate_image(seed, size=(160, 120)) for seed in range(6)]
    folder = tmp_path / "scan"
    folder.mkdir()
    for i, image in enumerate(originals):
        image.save(folder / f"new{i}.jpg", quality=85)  # unrelated to the references below
    for i, image in enumerate(originals[:3]):
        image.transpose(Image.Transpose.ROTATE_90).save(folder / f"rot{i}.png")
        boxed = Image.new("RGB", (160, 200))
        boxed.paste(image, (0, 40))
        boxed.save(folder / f"boxed{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    refs = [r.hash for image in originals[:3] for r in hashmatch.compute_hashes(image, ["phash", "pdq"]).values()
            for r in r[:1]]
    external = [f"x{i // 2}" for i in range(len(refs))]
    matcher = Matcher.from_hashes(refs, external_ids=external, labels=[f"l{i}" for i in range(len(refs))])
    kwargs = dict(workers=workers, chunk_size=chunk_size)
    batched = {r.path: r for r in hashmatch.scan(folder, matcher, **kwargs)}
    per_file = {r.path: r for r in hashmatch.scan(folder, PerFile(matcher), **kwargs)}
    assert batched == per_file
    assert sum(r.matched for r in batched.values()) >= 6  # rotated and letterboxed copies
    assert sum(r.error_kind is not None for r in batched.values()) == 1

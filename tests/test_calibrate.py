"""Calibration: pair-histogram kernels against naive twins, thresholds, confidence, folder CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch._calibrate_kernels import joint_query_pair_histogram, pair_histogram, query_pair_histogram
from hashmatch._calibrate import (
    calibrate,
    calibrate_folder,
    distance_histogram,
    false_positive_rates,
    upper_rate_bound,
)
from hashmatch.cli import main
from hashmatch.errors import CalibrationError, HashmatchError
from hashmatch.hashes import HashBatch
from hashmatch.testing.synthetic import write_dataset

WORDS = st.integers(0, 2**64 - 1)


def _dist(a, b) -> int:
    return sum((int(x) ^ int(y)).bit_count() for x, y in zip(a, b))


def naive_pair_histogram(words, bits):
    hist = [0] * (bits + 1)
    for i in range(len(words)):
        for j in range(i + 1, len(words)):
            hist[_dist(words[i], words[j])] += 1
    return hist


def naive_query_pair(queries, refs, query_ok, bits):
    hist = [0] * (bits + 1)
    for i in range(len(refs)):
        for j in range(len(refs)):
            if i != j and query_ok[i]:
                hist[min(_dist(q, refs[j]) for q in queries[i])] += 1
    return hist


def _rows(draw, n, w, duplicates):
    rows = [[draw(WORDS) for _ in range(w)] for _ in range(n)]
    if duplicates and n > 1:
        rows[-1] = list(rows[0])  # distance 0
    if n > 2 and draw(st.booleans()):
        rows[1] = [~np.uint64(v) & np.uint64(2**64 - 1) for v in rows[0]]  # the full bit length
    return np.array(rows, dtype=np.uint64).reshape(n, w)


@st.composite
def batches(draw, max_n=12):
    n = draw(st.integers(0, max_n))
    w = draw(st.sampled_from([1, 4]))
    return _rows(draw, n, w, draw(st.booleans())), w * 64


@settings(max_examples=60)
@given(batches())
def test_pair_histogram_equals_naive(case) -> None:
    words, bits = case
    assert pair_histogram(words, bits).tolist() == naive_pair_histogram(words.tolist(), bits)


@st.composite
def query_cases(draw, max_n=9):
    n = draw(st.integers(0, max_n))
    w = draw(st.sampled_from([1, 4]))
    v = draw(st.sampled_from([1, 8]))
    refs = _rows(draw, n, w, draw(st.booleans()))
    queries = np.array(
        [[refs[i] if a == 0 else [draw(WORDS) for _ in range(w)] for a in range(v)] for i in range(n)], dtype=np.uint64
    ).reshape(n, v, w)
    valid = np.array([draw(st.booleans()) or i == 0 for i in range(n)], dtype=np.bool_)
    return queries, refs, valid, w * 64


@settings(max_examples=60)
@given(query_cases())
def test_query_pair_histogram_equals_naive(case) -> None:
    queries, refs, valid, bits = case
    got = query_pair_histogram(queries, refs, valid, bits).tolist()
    assert got == naive_query_pair(queries.tolist(), refs.tolist(), valid.tolist(), bits)


@settings(max_examples=40)
@given(query_cases(), st.data())
def test_joint_histogram_equals_naive(case_a, data) -> None:
    qa, ra, query_ok, bits_a = case_a
    n = len(ra)
    wb, vb = data.draw(st.sampled_from([1, 4])), data.draw(st.sampled_from([1, 8]))
    rb = np.array([[data.draw(WORDS) for _ in range(wb)] for _ in range(n)], dtype=np.uint64).reshape(n, wb)
    qb = np.array(
        [[rb[i] if v == 0 else [data.draw(WORDS) for _ in range(wb)] for v in range(vb)] for i in range(n)],
        dtype=np.uint64,
    ).reshape(n, vb, wb)
    bits_b = wb * 64
    joint = joint_query_pair_histogram(qa, ra, bits_a, query_ok, qb, rb, bits_b)
    expected = np.zeros((bits_a + 2, bits_b + 1), dtype=np.int64)
    for i in range(n):
        for j in range(n):
            if i != j:
                da = min(_dist(q, ra[j]) for q in qa[i].tolist()) if query_ok[i] else bits_a + 1
                db = min(_dist(q, rb[j]) for q in qb[i].tolist())
                expected[da, db] += 1
    assert np.array_equal(joint, expected)


def test_pair_histogram_counts_every_pair_once(rng) -> None:
    words = rng.integers(0, 2**63, (50, 4), dtype=np.uint64)
    hist = pair_histogram(words, 256)
    assert hist.sum() == 50 * 49 // 2
    assert hist[0] == 0  # random 256-bit hashes do not collide


def test_upper_rate_bound_is_rule_of_three_at_zero_and_near_exact_chi_square() -> None:
    assert upper_rate_bound(0, 1_000_000) == pytest.approx(3.0e-6, rel=0.02)
    # Exact 95% Poisson upper limits for 1 and 10 events: 4.744 and 17.0.
    assert upper_rate_bound(1, 1000) == pytest.approx(4.744e-3, rel=0.01)
    assert upper_rate_bound(10, 1000) == pytest.approx(17.0e-3, rel=0.01)
    assert upper_rate_bound(5, 0) == 1.0


def test_false_positive_rates_are_cumulative() -> None:
    rates = false_positive_rates([0, 2, 3, 5])
    assert rates.tolist() == [0.0, 0.2, 0.5, 1.0]


def _batch(words, bits=64) -> HashBatch:
    return HashBatch(np.asarray(words, dtype=np.uint64).reshape(len(words), -1), algorithm="phash", bits=bits)


def test_calibrate_picks_largest_threshold_under_confident_bound(rng) -> None:
    batch = _batch(rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2) + np.uint64(1))
    result = calibrate(batch, 1e-5)
    rates = false_positive_rates(result.histogram, result.pairs)
    assert result.pairs == 3000 * 2999 // 2 and result.supported
    t = result.threshold
    assert t is not None and upper_rate_bound(result.false_positives, result.pairs) <= 1e-5
    assert upper_rate_bound(int(np.cumsum(result.histogram)[t + 1]), result.pairs) > 1e-5
    assert result.measured_threshold >= t and rates[result.measured_threshold] <= 1e-5
    assert result.measured_fpr == pytest.approx(rates[t])


def test_calibrate_reports_too_few_pairs(rng) -> None:
    batch = _batch(rng.integers(0, 2**63, 40, dtype=np.uint64))
    result = calibrate(batch, 1e-6)
    assert not result.supported and result.threshold is None
    assert "TOO FEW PAIRS" in result.summary() and f"{math.ceil(3e6):,}" in result.summary()


def test_calibrate_duplicates_block_any_threshold() -> None:
    batch = _batch([5] * 30)
    result = calibrate(batch, 1e-2)
    assert result.threshold is None and result.histogram[0] == 435


def test_calibrate_rejects_bad_arguments(rng) -> None:
    batch = _batch(rng.integers(0, 2**63, 10, dtype=np.uint64))
    for bad in (0, 1, -1e-6, "1e-6", True):
        with pytest.raises(ValueError):
            calibrate(batch, bad)
    with pytest.raises(CalibrationError):
        calibrate(batch[:1], 1e-3)
    with pytest.raises(ValueError):
        distance_histogram(batch, query_ok=[True])


def test_distance_histogram_quality_gate_drops_refused_queries_only(rng) -> None:
    batch = _batch(rng.integers(0, 2**63, 20, dtype=np.uint64))
    query_ok = np.ones(20, dtype=bool)
    query_ok[:5] = False
    assert distance_histogram(batch, query_ok=query_ok).sum() == 15 * 19
    assert distance_histogram(batch, [batch], query_ok=query_ok).sum() == 15 * 19
    gated = calibrate(batch, 0.5, query_ok=query_ok)
    assert gated.pairs == 20 * 19 and sum(gated.histogram) == 15 * 19


@pytest.fixture(scope="module")
def negatives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("neg")
    write_dataset(folder, 60, seed=3, size=(96, 72))
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def test_calibrate_folder_counts_pairs_and_skips_unreadable(negatives) -> None:
    result = calibrate_folder(negatives, "phash", 1e-2)
    assert result.images == 60 and result.skipped == 1 and result.pairs == 1770
    assert result.supported and result.threshold is not None and 4 <= result.threshold <= 24
    dihedral = calibrate_folder(negatives, "phash", 1e-2, dihedral=True)
    assert dihedral.pairs == 60 * 59 and dihedral.dihedral


def test_calibrate_folder_missing_or_empty_folder_is_a_hashmatch_error(tmp_path) -> None:
    with pytest.raises(HashmatchError):
        calibrate_folder(tmp_path / "nope", "phash", 1e-3)
    with pytest.raises(CalibrationError):
        calibrate_folder(tmp_path, "phash", 1e-3)


def test_calibrate_cli_prints_figures_and_exit_code(negatives, capsys) -> None:
    assert main(["calibrate", "--negatives", str(negatives), "--algorithm", "phash", "--fpr", "1e-2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "pairs compared 1,770" in out and "recommended threshold" in out
    code = main(["calibrate", "--negatives", str(negatives), "-a", "phash", "--fpr", "1e-6", "--json", "--workers", "1"])
    assert code == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["supported"] is False and payload["pairs_needed"] == 3_000_000
    assert sum(payload["histogram"]) == 1770


def test_calibrate_cli_bad_folder_is_one_line_error(tmp_path, capsys) -> None:
    assert main(["calibrate", "--negatives", str(tmp_path / "nope"), "-a", "phash"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_calibrate_policy_folder_and_cli(negatives, capsys) -> None:
    from hashmatch._calibrate_policy import PolicyHashes, calibrate_policy, calibrate_policy_folder, policy_matches, policy_pair_features
    from hashmatch import QuerySpec

    found = calibrate_policy_folder(negatives, 1e-2)
    assert found.images == 60 and found.skipped == 1 and found.pairs == 60 * 59
    assert found.bands and found.bands[0][1] is None  # the default policy: its as-is band first
    # The same figure from hashes made by hand, as the Matcher makes them.
    from hashmatch.hashers import compute_hashes
    from hashmatch.hashes import HashBatch
    spec = QuerySpec(algorithms=("pdq", "phash"))
    paths = sorted(p for p in negatives.iterdir() if p.suffix == ".jpg" and p.name != "broken.jpg")
    rows = []
    for p in paths:
        ref = compute_hashes(str(p), ["pdq", "phash"], fast=False)
        views = (spec.hash(str(p)) * 2)[:2]
        rows.append((ref["pdq"][0].hash.to_words(), ref["phash"][0].hash.to_words(),
                     HashBatch.from_hashes([r.hash for v in views for r in v["pdq"]]).words,
                     HashBatch.from_hashes([r.hash for v in views for r in v["phash"]]).words,
                     np.array([r.quality for v in views for r in v["pdq"]], np.int16)))
    h = PolicyHashes(*(np.ascontiguousarray(np.stack([r[k] for r in rows])) for k in range(5)))
    by_hand = policy_pair_features(h, h, np.arange(len(rows)))
    assert int(policy_matches(by_hand, spec).sum()) == found.false_positives
    assert calibrate_policy(by_hand, 1e-2).to_dict() | {"images": 60, "skipped": 1} == found.to_dict()
    assert main(["calibrate", "--policy", "--negatives", str(negatives), "--fpr", "1e-2", "--workers", "1"]) in (0, 1)
    out = capsys.readouterr().out
    assert "pairs compared 3,540" in out and "95% upper bound" in out
    assert main(["calibrate", "--policy", "--negatives", str(negatives), "--fpr", "1e-6", "--json", "--workers", "1"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["supported"] is False and payload["pairs"] == 3540

"""Retroaction: re-matching the hashes recorded in scan reports, reporting only new matches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hashmatch import Matcher, ReferenceStore, compute_hashes
from hashmatch._rematch import entries_added_since, new_matches, rematch_reports
from hashmatch.cli import main
from hashmatch.errors import ReportFormatError

from ._serve_helpers import jpeg


def _add(store: Path, data: bytes, list_name: str, label: str) -> int:
    r = compute_hashes(data, ["phash"])["phash"][0]
    with ReferenceStore(store) as s:
        return s.add(list_name, r.hash, label=label)  # type: ignore[return-value]


@pytest.fixture
def scanned(tmp_path):
    """A store with image a; a folder with a, b, c scanned into JSONL and CSV reports."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    images = {name: jpeg(seed, size=(200, 150)) for name, seed in (("a", 41), ("b", 42), ("c", 43))}
    for name, data in images.items():
        (folder / f"{name}.jpg").write_bytes(data)
    (folder / "broken.jpg").write_bytes(b"not an image")
    store = tmp_path / "refs.db"
    a_id = _add(store, images["a"], "known", "a")
    reports = []
    for ext in ("jsonl", "csv"):
        out = tmp_path / f"scan.{ext}"
        assert main(["scan", str(folder), "--store", str(store), "-j", "0", "-q", "--out", str(out)]) == 1
        reports.append(out)
    return store, images, reports, a_id


def test_rematch_reports_only_matches_the_scan_did_not_have(scanned, capsys):
    store, images, reports, a_id = scanned
    with Matcher.from_store(store) as matcher:
        assert list(rematch_reports(matcher, reports)) == []  # a matched at scan time already
    b_id = _add(store, images["b"], "later", "b")
    with Matcher.from_store(store) as matcher:
        found = list(rematch_reports(matcher, reports))
    assert [(Path(r.path).name, [m.entry_id for m in r.matches]) for r in found] == [("b.jpg", [b_id])] * 2
    assert {Path(r.report).suffix for r in found} == {".jsonl", ".csv"}
    assert found[0].sha256 and len(found[0].sha256) == 64 and a_id != b_id


def test_rematch_cli_exit_codes_and_jsonl(scanned, capsys):
    store, images, reports, _ = scanned
    assert main(["rematch", *map(str, reports), "--store", str(store)]) == 0
    assert capsys.readouterr().out == ""
    c_id = _add(store, images["c"], "later", "c")
    assert main(["rematch", str(reports[0]), "--store", str(store), "--format", "jsonl"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(Path(r["path"]).name, r["matches"][0]["entry_id"]) for r in rows] == [("c.jpg", c_id)]
    ref = compute_hashes(images["c"], ["phash"])["phash"][0].hash.hex()
    assert ref not in json.dumps(rows)
    assert main(["rematch", str(reports[1]), "--store", str(store)]) == 1
    assert "c.jpg: new match entry=" in capsys.readouterr().out


def test_rematch_cli_exit_2_on_a_file_that_is_not_a_report(scanned, tmp_path, capsys):
    store = scanned[0]
    bogus = tmp_path / "bogus.jsonl"
    bogus.write_text('{"hello": 1}\n')
    assert main(["rematch", str(bogus), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scan report" in err


def test_a_damaged_report_row_is_refused(scanned):
    store, _, reports, _ = scanned
    lines = reports[0].read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"status"', '"statu5"')
    reports[0].write_text("".join(lines))
    with Matcher.from_store(store) as matcher, pytest.raises(ReportFormatError):
        list(rematch_reports(matcher, [reports[0]]))


def test_new_matches_filters_known_and_only(tmp_path):
    store = tmp_path / "refs.db"
    data = jpeg(44)
    first = _add(store, data, "l1", "x")
    with ReferenceStore(store) as s:
        generation = s.generation
    second = _add(store, data, "l2", "y")
    hashes = compute_hashes(data, ["phash"])["phash"]
    with Matcher.from_store(store) as matcher, ReferenceStore(store) as s:
        assert {m.entry_id for m in new_matches(matcher, hashes)} == {first, second}
        assert [m.entry_id for m in new_matches(matcher, hashes, known_ids=[first])] == [second]
        assert [m.entry_id for m in new_matches(matcher, hashes, known=[("phash", second)])] == [first]
        since = entries_added_since(s, generation)
        assert since == {second}
        assert [m.entry_id for m in new_matches(matcher, hashes, only_ids=since)] == [second]
        s.retract([second])
        assert entries_added_since(s, generation) == frozenset()

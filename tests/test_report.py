"""The scan report format: round trips, escaping, partial rows after a kill, checks on resume."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch._report import (
    CSV_COLUMNS,
    REPORT_VERSION,
    ReportWriter,
    detect_format,
    parse_row,
    read_report,
    sidecar_path,
)
from hashmatch.errors import ReportFormatError

SETTINGS = {"algorithms": ["phash"], "dihedral": False, "hashes": True}

EVIL_NAMES = [
    "plain.jpg",
    "comma,name.jpg",
    'quote"name.jpg',
    "new\nline.jpg",
    "carriage\rreturn.jpg",
    "crlf\r\nname.jpg",
    "=HYPERLINK(\"http://x\",\"y\").jpg",
    "+cmd.jpg",
    "-2+3.jpg",
    "@SUM(A1).jpg",
    "\tTab.jpg",
    "'quoted.jpg",
    "''twice.jpg",
    "ünïcödé 写真.jpg",
    "bad-utf8-\udcff\udcfe.jpg",  # how Python spells a non-UTF-8 file name
    "",
]


def _row(path: str, i: int, *, matched: bool = False) -> dict[str, object]:
    return {
        "path": path,
        "size": 1000 + i,
        "mtime_ns": 1_700_000_000_000_000_000 + i,
        "mtime": "2023-11-14T22:13:20Z",
        "sha256": f"{i:064x}",
        "status": "matched" if matched else "clean",
        "hashes": {"phash": f"{i:016x}"},
        "quality": None,
        "matches": [{"entry_id": i, "list_name": "l", "label": "=evil", "distance": 1}] if matched else [],
        "error_kind": None,
        "error": None,
    }


def _write(path: str, fmt: str, rows: list[dict[str, object]]) -> None:
    writer = ReportWriter.open(path, fmt, SETTINGS)
    for row in rows:
        writer.write_row(row)
    writer.close()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_read_report_round_trips_evil_paths(tmp_path, fmt):
    path = str(tmp_path / f"r.{fmt}")
    rows = [_row(name, i, matched=i % 3 == 0) for i, name in enumerate(EVIL_NAMES)]
    _write(path, fmt, rows)
    state = read_report(path, fmt, SETTINGS)
    assert state.rows == len(rows)
    assert not state.dropped_partial_row
    assert state.good_bytes == os.path.getsize(path)
    expected = {(r["path"], r["size"], r["mtime_ns"]): bool(r["matches"]) for r in rows}
    assert state.done == expected


def test_csv_cells_never_start_a_formula(tmp_path):
    path = str(tmp_path / "r.csv")
    _write(path, "csv", [_row(name, i, matched=True) for i, name in enumerate(EVIL_NAMES)])
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        table = list(csv.reader(fh))
    assert tuple(table[0]) == CSV_COLUMNS
    assert len(table) == len(EVIL_NAMES) + 1  # newlines in names did not split rows
    for cells in table[1:]:
        assert len(cells) == len(CSV_COLUMNS)
        for cell in cells:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_csv_path_cell_is_recoverable(tmp_path):
    path = str(tmp_path / "r.csv")
    _write(path, "csv", [_row(name, i) for i, name in enumerate(EVIL_NAMES)])
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        table = list(csv.reader(fh))
    assert [parse_row(cells)["path"] for cells in table[1:]] == EVIL_NAMES


def test_jsonl_rows_are_json_objects_with_a_header(tmp_path):
    path = str(tmp_path / "r.jsonl")
    _write(path, "jsonl", [_row("a.jpg", 1, matched=True)])
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    header, row = json.loads(lines[0]), json.loads(lines[1])
    assert header["magic"] == "hashmatch-scan-report" and header["version"] == REPORT_VERSION
    assert header["settings"] == SETTINGS
    assert row["path"] == "a.jpg" and row["matches"][0]["entry_id"] == 1 and len(row["crc"]) == 8


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_read_report_drops_a_partial_last_row_at_every_cut(tmp_path, fmt, monkeypatch):
    # Both writes must carry the same "created" time, whatever second each starts in.
    frozen = time.gmtime()
    monkeypatch.setattr(time, "gmtime", lambda *args: frozen)
    path = str(tmp_path / f"r.{fmt}")
    rows = [_row(name, i) for i, name in enumerate(["a.jpg", "new\nline,\"q\".jpg", "=c.jpg"])]
    _write(path, fmt, rows)
    data = Path(path).read_bytes()
    full = read_report(path, fmt, SETTINGS)
    _write(path, fmt, rows[:2])
    two_rows = os.path.getsize(path)
    assert data[:two_rows] == Path(path).read_bytes()
    for cut in range(two_rows + 1, len(data)):
        with open(path, "wb") as fh:
            fh.write(data[:cut])
        state = read_report(path, fmt, SETTINGS)
        assert state.rows == 2, cut
        assert state.dropped_partial_row
        assert state.good_bytes == two_rows
    assert full.rows == 3


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_writer_resume_truncates_partial_row_then_appends(tmp_path, fmt):
    path = str(tmp_path / f"r.{fmt}")
    _write(path, fmt, [_row("a.jpg", 1), _row("b.jpg", 2)])
    with open(path, "ab") as fh:
        fh.write(b'{"path":"half' if fmt == "jsonl" else b'"half,\r\nrow')
    state = read_report(path, fmt, SETTINGS)
    writer = ReportWriter.open(path, fmt, SETTINGS, resume_from=state)
    writer.write_row(_row("c.jpg", 3))
    writer.close()
    after = read_report(path, fmt, SETTINGS)
    assert sorted(k[0] for k in after.done) == ["a.jpg", "b.jpg", "c.jpg"]
    assert not after.dropped_partial_row


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_read_report_rejects_a_damaged_middle_row(tmp_path, fmt):
    path = str(tmp_path / f"r.{fmt}")
    _write(path, fmt, [_row("a.jpg", 1), _row("b.jpg", 2), _row("c.jpg", 3)])
    data = Path(path).read_bytes().replace(b"b.jpg", b"x.jpg")
    Path(path).write_bytes(data)
    with pytest.raises(ReportFormatError, match="checksum"):
        read_report(path, fmt, SETTINGS)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_read_report_rejects_other_settings(tmp_path, fmt):
    path = str(tmp_path / f"r.{fmt}")
    _write(path, fmt, [_row("a.jpg", 1)])
    with pytest.raises(ReportFormatError, match="algorithms"):
        read_report(path, fmt, {**SETTINGS, "algorithms": ["pdq"]})


def test_read_report_rejects_newer_format_version(tmp_path):
    path = str(tmp_path / "r.jsonl")
    _write(path, "jsonl", [])
    text = Path(path).read_text(encoding="utf-8")
    header = json.loads(text)
    header.pop("crc")
    header["version"] = REPORT_VERSION + 1
    buf = io.StringIO()
    ReportWriter.stream(buf, "jsonl", SETTINGS)._write_jsonl(header)
    Path(path).write_text(buf.getvalue().split("\n", 1)[1], encoding="utf-8")
    with pytest.raises(ReportFormatError, match="version"):
        read_report(path, "jsonl", SETTINGS)


def test_read_report_rejects_a_file_that_is_not_a_report(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"just": "json"}\n{"more": 1}\n')
    with pytest.raises(ReportFormatError):
        read_report(str(path), "jsonl", SETTINGS)


def test_read_report_rejects_csv_without_sidecar(tmp_path):
    path = str(tmp_path / "r.csv")
    _write(path, "csv", [_row("a.jpg", 1)])
    os.remove(sidecar_path(path))
    with pytest.raises(ReportFormatError, match="sidecar"):
        read_report(path, "csv", SETTINGS)


def test_read_report_of_missing_or_headerless_file_is_empty(tmp_path):
    assert read_report(str(tmp_path / "none.jsonl"), "jsonl", SETTINGS).rows == 0
    partial = tmp_path / "p.jsonl"
    partial.write_bytes(b'{"magic":"hashm')  # killed while writing the header
    state = read_report(str(partial), "jsonl", SETTINGS)
    assert state.rows == 0 and not state.has_header and state.dropped_partial_row


def test_detect_format_by_extension_and_override():
    assert detect_format("x/report.CSV") == "csv"
    assert detect_format("x/report.jsonl") == "jsonl"
    assert detect_format("x/report.txt", "csv") == "csv"
    with pytest.raises(ReportFormatError):
        detect_format("x", "xml")


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=6), fmt=st.sampled_from(["jsonl", "csv"]))
def test_read_report_round_trips_any_text(tmp_path_factory, names, fmt):
    path = str(tmp_path_factory.mktemp("r") / f"r.{fmt}")
    rows = [_row(name, i) for i, name in enumerate(names)]
    _write(path, fmt, rows)
    state = read_report(path, fmt, SETTINGS)
    assert set(state.done) == {(r["path"], r["size"], r["mtime_ns"]) for r in rows}

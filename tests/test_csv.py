"""The one CSV writer and escaping rule: no cell splits a row, no cell runs as a formula,
and what hashmatch reads back it gets back exactly."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashmatch._csv import FORMULA_STARTS, CsvWriter, csv_line, escape_cell, unescape_cell
from hashmatch._hashlists import ParsedRow, SkippedLine, read_hashlist, write_hashlist
from hashmatch import ReferenceStore
from hashmatch.cli import main
from hashmatch.hashes import Hash

EVIL = [
    "plain",
    "comma,cell",
    'quote"cell',
    "line\nfeed",
    "bare\rCR=1+1",
    "\r=1+1",
    "crlf\r\nrow",
    "=1+1",
    "+1",
    "-1",
    "@SUM(A1)",
    "\tTAB",
    "'quoted",
    "''twice",
    "\uff1d1+1",  # full-width =
    "\uff0bcmd",
    "\uff0d1",
    "\uff20x",
    "tab\tinside",
    "",
    "trailing space ",
]


def _table(text: str, delimiter: str = ",") -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_every_evil_cell_stays_in_its_row_and_comes_back(delimiter):
    buf = io.StringIO(newline="")
    writer = CsvWriter(buf, delimiter=delimiter)
    for i, cell in enumerate(EVIL):
        writer.writerow([str(i), cell, "end"])
    rows = _table(buf.getvalue(), delimiter)
    assert [r[0] for r in rows] == [str(i) for i in range(len(EVIL))]  # no row split, none merged
    assert all(r[2] == "end" for r in rows)
    assert [unescape_cell(r[1]) for r in rows] == EVIL


def test_no_written_cell_starts_like_a_formula():
    for cell in EVIL:
        written = escape_cell(cell)
        assert not written.startswith(FORMULA_STARTS[:-1]), cell  # only ever the quote in front
        assert unescape_cell(written) == cell


def test_a_bare_cr_is_quoted_and_records_end_in_crlf():
    assert csv_line(["a\rb", "c"]) == '"a\rb",c\r\n'
    assert csv_line(["x"]) == "x\r\n"


@given(st.text())
def test_escaping_is_reversible(text):
    assert unescape_cell(escape_cell(text)) == text


def test_hash_lists_read_back_every_evil_label_and_id():
    h = Hash(0x0123456789ABCDEF, "phash", 64)
    labels = [cell for cell in EVIL if cell.strip() and cell == cell.strip() and "\n" not in cell and "\r" not in cell]
    for fmt in ("csv", "tsv"):
        buf = io.StringIO(newline="")
        write_hashlist(buf, [(h, None, label, label, "L") for label in labels], format=fmt)
        buf.seek(0)
        back = [r for r in read_hashlist(buf, format=fmt) if not isinstance(r, SkippedLine)]
        assert all(isinstance(r, ParsedRow) for r in back), back
        assert [(r.label, r.external_id) for r in back] == [(label, label) for label in labels]


def test_hash_command_csv_cannot_be_split_by_a_cr_in_a_path(tmp_path, capsys):
    name = tmp_path / "a\r=1+1.png"
    name.write_bytes(b"not an image")
    assert main(["hash", str(name), "-a", "phash,dhash"]) == 1
    rows = _table(capsys.readouterr().out)
    assert len(rows) == 3 and all(len(r) == 5 for r in rows)
    assert rows[1][0] == str(name)


def test_refs_export_csv_and_tsv_escape_labels(tmp_path, capsys):
    # A label holding a line break (added through the API: a hash-list file is one entry
    # per physical line) is exported on one line, with the formula rule applied.
    store = str(tmp_path / "s.db")
    with ReferenceStore(store) as refs:
        refs.add("L", Hash(0x0123456789ABCDEF, "phash", 64), label="\uff1dcmd\r=1")
    for fmt, delimiter in (("csv", ","), ("tsv", "\t")):
        assert main(["refs", "export", "--store", store, "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "\r" not in out.replace("\r\n", "")
        rows = _table(out, delimiter)
        assert len(rows) == 2 and rows[1][3] == "'\uff1dcmd =1"


def test_scan_report_csv_uses_the_same_rule():
    from hashmatch._report import _csv_cells

    cells = _csv_cells({"path": "\uff1devil", "matches": [], "hashes": {"phash": "00"}})
    assert cells[0] == "'\uff1devil" and json.loads(cells[8]) == []


def test_a_failed_export_leaves_no_partial_file(tmp_path):
    pdq = Hash(1, "pdq", 256)
    target = tmp_path / "out.pdq"
    target.write_text("the previous list\n")

    def rows():  # noqa: ANN202
        yield (pdq, 90, None, "a", "L")
        yield (Hash(1, "phash", 64), None, None, "b", "L")  # a PDQ list refuses it mid-way

    from hashmatch.errors import HashListError

    with pytest.raises(HashListError):
        write_hashlist(target, rows(), format="pdq")
    assert target.read_text() == "the previous list\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pdq"]  # no temporary file left
    assert write_hashlist(target, [(pdq, 90, None, "a", "L")], format="pdq") == 1
    assert target.read_text().startswith("0" * 63 + "1,90,a")

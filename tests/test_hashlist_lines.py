"""Hash-list import line by line: no swallowed rows, no global state, no hash in any message
(issue 10, items 6, 7 and 10)."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import pytest

from hashmatch.errors import HashListError
from hashmatch._hashlists import MAX_LINE, ParsedRow, RejectedRow, SkippedLine, looks_like_hash, read_hashlist
from hashmatch._store import ReferenceStore


def _hexes(n: int, digits: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("0123456789abcdef"), digits)) for _ in range(n)]


def _outcomes(text: str, **kwargs: object) -> list[ParsedRow | RejectedRow | SkippedLine]:
    return list(read_hashlist(io.StringIO(text), **kwargs))  # type: ignore[arg-type]


def test_stray_quote_rejects_its_own_line_only() -> None:
    h = _hexes(7, 16)
    lines = ["hash,algorithm,label", f"{h[0]},phash,ok", f'{h[1]},phash,"she said hi', *(f"{x},phash,fine" for x in h[2:6]),
             f'{h[6]},phash,"a"b']
    out = _outcomes("\n".join(lines) + "\n")
    assert [type(r).__name__ for r in out] == ["SkippedLine", "ParsedRow", "RejectedRow", *["ParsedRow"] * 4, "RejectedRow"]
    assert [r.line for r in out] == list(range(1, 9))
    assert "quote" in out[2].reason  # type: ignore[union-attr]


def test_import_counts_add_up_to_the_lines_read(tmp_path: Path) -> None:
    h = _hexes(5, 16)
    text = f'# comment\nhash,algorithm,label\n{h[0]},phash,"open\n{h[1]},phash,x\n\n{h[1]},phash,dup\nnothex,phash,\n'
    with ReferenceStore(tmp_path / "refs.db") as store:
        report = store.import_file(io.StringIO(text), "L")
    assert (report.added, report.duplicates, report.rejected_count, report.skipped) == (1, 1, 2, 3)
    assert report.added + report.duplicates + report.rejected_count + report.skipped == report.lines == 7


def test_read_hashlist_changes_no_global_csv_setting() -> None:
    before = csv.field_size_limit()
    h = _hexes(1, 16)[0]
    _outcomes(f"hash,algorithm\n{h},phash\n")
    assert csv.field_size_limit() == before


def test_huge_cell_rejects_its_row_not_the_file(tmp_path: Path) -> None:
    h = _hexes(3, 16)
    text = f"hash,algorithm,label\n{h[0]},phash,{'x' * (MAX_LINE + 10)}\n{h[1]},phash,{'y' * 100_000}z\n{h[2]},phash,ok\n"
    out = _outcomes(text)
    assert [type(r).__name__ for r in out] == ["SkippedLine", "RejectedRow", "RejectedRow", "ParsedRow"]
    assert [r.line for r in out] == [1, 2, 3, 4]
    path = tmp_path / "list.csv"
    path.write_text(text)
    with ReferenceStore(tmp_path / "refs.db") as store:
        report = store.import_file(path, "L")
    assert (report.added, report.rejected_count, report.lines) == (1, 2, 4)


def test_pdq_list_with_a_bad_first_line_is_read_as_pdq() -> None:
    h = _hexes(3, 64)
    out = _outcomes(f"{h[0][:-1]},100,broken.jpg\n{h[1]},100,a.jpg\n{h[2]},90,b.jpg\n")
    assert [type(r).__name__ for r in out] == ["RejectedRow", "ParsedRow", "ParsedRow"]
    assert all(r.hash.algorithm == "pdq" for r in out if isinstance(r, ParsedRow))


def test_lenient_import_rejects_rows_never_the_file(tmp_path: Path) -> None:
    h = _hexes(2, 16)
    text = f"hash,algorithm\n{h[0]},phash\n\0\0\0\n\"\"\"\n{'z' * (3 * MAX_LINE)}\n{h[1]},phash\n"
    with ReferenceStore(tmp_path / "refs.db") as store:
        report = store.import_file(io.StringIO(text), "L")
        assert report.added == 2 and report.rejected_count == 3
        with pytest.raises(HashListError, match="strict"):
            store.import_file(io.StringIO(text), "M", strict=True)


def _all_messages(text: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, **kwargs: object) -> str:
    messages: list[str] = []
    try:
        for row in _outcomes(text, **kwargs):
            if isinstance(row, RejectedRow):
                messages.append(str(row))
    except HashListError as exc:
        messages.append(str(exc))
    with ReferenceStore(tmp_path / "refs.db") as store:
        try:
            report = store.import_file(io.StringIO(text), "L", **kwargs)  # type: ignore[arg-type]
            messages.append(str(report))
            messages.extend(str(r) for r in report.rejected)
        except HashListError as exc:
            messages.append(str(exc))
    messages.extend(r.getMessage() for r in caplog.records)
    return "\n".join(messages)


@pytest.mark.parametrize(
    "template",
    [
        "{a},phash\n{b},phash\n",  # headerless CSV: the first row is taken as the header
        "algorithm,hash\n{a},phash\n",  # swapped columns
        "hash,algorithm\nphash,{a}\n{b},{a}\n",
        "hash,algorithm,quality\n{a},phash,{b}\n",
        "{a}\n",  # a hex list without the algorithm
        "{a},100\n",  # a PDQ-shaped line with a phash-length hash
    ],
)
def test_no_hash_value_in_any_import_message(
    template: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = _hexes(2, 16, seed=11)
    text = template.format(a=a, b=b)
    for i, kwargs in enumerate(({}, {"format": "csv"}, {"algorithm": "phash"})):
        folder = tmp_path / str(i)
        folder.mkdir()
        out = _all_messages(text, folder, caplog, **kwargs)
        for value in (a, b, a[:8], b[:8]):
            assert value not in out


def test_unknown_algorithm_argument_that_looks_like_a_hash_is_withheld() -> None:
    a = _hexes(1, 16, seed=5)[0]
    with pytest.raises(HashListError) as info:
        _outcomes("x\n", algorithm=a)
    assert a not in str(info.value) and a[:8] not in str(info.value)


@pytest.mark.parametrize(("text", "expected"), [("ffd7918181c9c3c3", True), ("deadbeef", True), ("phash", False),
                                                 ("label", False), ("aGVsbG8gd29ybGQgdGhpcyBpcw==", True)])
def test_looks_like_hash(text: str, expected: bool) -> None:
    assert looks_like_hash(text) is expected

"""Hash-list files: formats, detection, rejected rows with line numbers, round trips."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.errors import HashListError
from hashmatch.hashes import Hash
from hashmatch._hashlists import ParsedRow, RejectedRow, detect_format, read_hashlist, write_hashlist


def _read(text: str, **kwargs: object) -> tuple[list[ParsedRow], list[RejectedRow]]:
    rows = list(read_hashlist(io.StringIO(text), **kwargs))  # type: ignore[arg-type]
    return [r for r in rows if isinstance(r, ParsedRow)], [r for r in rows if isinstance(r, RejectedRow)]


def _hex(rng: np.random.Generator, digits: int) -> str:
    return "".join(rng.choice(list("0123456789abcdef"), digits))


def test_read_csv_takes_columns_by_header_name(rng: np.random.Generator) -> None:
    h = _hex(rng, 16)
    good, bad = _read(f"label,quality,hash,algorithm,id,extra\ncat,90,{h},phash,ext-1,x\n")
    assert bad == []
    assert len(good) == 1
    row = good[0]
    assert (row.hash.hex(), row.hash.algorithm, row.quality, row.label, row.external_id) == (h, "phash", 90, "cat", "ext-1")
    assert row.line == 2


def test_read_csv_rejects_bad_rows_with_line_numbers(rng: np.random.Generator) -> None:
    h = _hex(rng, 16)
    text = (
        "hash,algorithm,quality\n"
        f"{h},phash,\n"          # 2 ok
        f"{h[:-1]},phash,\n"     # 3 too short
        "zzzzzzzzzzzzzzzz,phash,\n"  # 4 not hex
        f"{h},nosuch,\n"         # 5 unknown algorithm
        "\n"                      # 6 blank: skipped silently
        f"{h},phash,101\n"       # 7 quality out of range
        f"{h},phash,abc\n"       # 8 quality not a number
        f"{_hex(rng, 64)},phash,\n"  # 9 a pdq-length hash labelled phash
    )
    good, bad = _read(text)
    assert [r.line for r in good] == [2]
    assert [r.line for r in bad] == [3, 4, 5, 7, 8, 9]
    reasons = [r.reason for r in bad]
    assert "wrong length" in reasons[0] and "not hexadecimal" in reasons[1] and "unknown algorithm" in reasons[2]
    assert "quality" in reasons[3] and "quality" in reasons[4] and "wrong length" in reasons[5]


def test_rejected_reasons_never_quote_the_hash(rng: np.random.Generator) -> None:
    h = _hex(rng, 15)
    _, bad = _read(f"hash,algorithm\n{h},phash\n{h}g,phash\n")
    assert len(bad) == 2
    assert all(h not in str(r) for r in bad)


def test_read_csv_with_algorithm_argument_rejects_other_algorithms(rng: np.random.Generator) -> None:
    a, b = _hex(rng, 16), _hex(rng, 16)
    good, bad = _read(f"hash,algorithm\n{a},phash\n{b},dhash\n{a},\n", algorithm="phash")
    assert [r.line for r in good] == [2, 4]
    assert [r.line for r in bad] == [3]


def test_read_csv_without_hash_column_raises() -> None:
    with pytest.raises(HashListError, match="no 'hash' column"):
        _read("digest,algorithm\nabc,phash\n", format="csv")


def test_read_csv_without_algorithm_needs_the_argument(rng: np.random.Generator) -> None:
    text = f"hash\n{_hex(rng, 16)}\n"
    with pytest.raises(HashListError, match="algorithm"):
        _read(text)
    good, _ = _read(text, algorithm="dhash")
    assert good[0].hash.algorithm == "dhash"


def test_read_tsv_and_category_alias(rng: np.random.Generator) -> None:
    h = _hex(rng, 16)
    good, bad = _read(f"hash\talgorithm\tcategory\texternal_id\n{h}\tahash\tviolence\tE9\n")
    assert bad == [] and good[0].label == "violence" and good[0].external_id == "E9"


def test_read_hex_list_as_imagehash_users_keep_it(rng: np.random.Generator) -> None:
    a, b = _hex(rng, 16), _hex(rng, 16)
    good, bad = _read(f"# my list\n{a}\n\n{b} photos/cat.jpg\nnothex!\n", algorithm="phash")
    assert [r.line for r in good] == [2, 4]
    assert good[1].external_id == "photos/cat.jpg" and good[0].external_id is None
    assert [r.line for r in bad] == [5]


def test_read_hex_list_needs_algorithm(rng: np.random.Generator) -> None:
    with pytest.raises(HashListError, match="needs the algorithm"):
        _read(f"{_hex(rng, 16)}\n", format="hex")


def test_read_pdq_list_hash_quality_name(rng: np.random.Generator) -> None:
    a, b = _hex(rng, 64), _hex(rng, 64)
    text = f"{a},100,bridge.jpg\nhash={b},quality=49,filename=x.png\n{a[:-2]},100,short.jpg\n{a}\n"
    good, bad = _read(text)
    assert [(r.line, r.quality, r.external_id) for r in good] == [(1, 100, "bridge.jpg"), (2, 49, "x.png")]
    assert all(r.hash.algorithm == "pdq" and r.hash.bits == 256 for r in good)
    assert [r.line for r in bad] == [3, 4]
    assert "wrong length" in bad[0].reason


def test_read_pdq_list_refuses_other_algorithm(rng: np.random.Generator) -> None:
    with pytest.raises(HashListError, match="pdq"):
        _read(f"{_hex(rng, 64)},100\n", format="pdq", algorithm="phash")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hash,algorithm", "csv"),
        ('"hash","label"', "csv"),
        ("algorithm\thash", "tsv"),
        ("a" * 64 + ",100,x.jpg", "pdq"),
        ("ffd7918181c9c3c3", "hex"),
    ],
)
def test_detect_format_from_first_line(line: str, expected: str) -> None:
    assert detect_format(line) == expected


def test_read_unknown_format_or_missing_file_raises(tmp_path: object) -> None:
    with pytest.raises(HashListError, match="unknown hash-list format"):
        list(read_hashlist(io.StringIO(""), format="xml"))
    with pytest.raises(HashListError, match="cannot read"):
        list(read_hashlist("/nonexistent/list.csv", algorithm="phash"))


def test_read_empty_csv_raises() -> None:
    with pytest.raises(HashListError, match="empty"):
        _read("", format="csv")


def test_read_unknown_algorithm_argument_raises() -> None:
    with pytest.raises(HashListError, match="unknown algorithm"):
        _read("", algorithm="md5")


def test_write_then_read_csv_round_trips_metadata(rng: np.random.Generator) -> None:
    hashes = [Hash.from_hex(_hex(rng, 16), algorithm="phash") for _ in range(5)]
    labels = ["=cmd|' /C calc'!A0", "plain", None, "+1", "tab\tin"]
    rows = [(h, None, lab, f"id{i}", "L") for i, (h, lab) in enumerate(zip(hashes, labels))]
    buf = io.StringIO()
    assert write_hashlist(buf, rows, format="csv") == 5
    text = buf.getvalue()
    assert "\n=cmd" not in text and ",=cmd" not in text  # formula cells are quoted for spreadsheets
    good, bad = _read(text)
    assert bad == []
    assert [r.hash for r in good] == hashes
    assert [r.label for r in good] == ["=cmd|' /C calc'!A0", "plain", None, "+1", "tab\tin"]


def test_write_pdq_refuses_other_algorithms(rng: np.random.Generator) -> None:
    with pytest.raises(HashListError, match="cannot hold"):
        write_hashlist(io.StringIO(), [(Hash.from_hex(_hex(rng, 16), algorithm="phash"), None, None, None, None)], format="pdq")


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.integers(0, 2**256 - 1), max_size=20),
    fmt=st.sampled_from(["csv", "tsv", "pdq", "hex"]),
    quality=st.integers(0, 100),
)
def test_write_read_round_trip_property(values: list[int], fmt: str, quality: int) -> None:
    hashes = [Hash(v, "pdq", 256) for v in values]
    buf = io.StringIO()
    write_hashlist(buf, [(h, quality, None, None, None) for h in hashes], format=fmt)
    good, bad = _read(buf.getvalue(), algorithm="pdq")
    assert bad == []
    assert [r.hash for r in good] == hashes
    if fmt != "hex":
        assert all(r.quality == quality for r in good)

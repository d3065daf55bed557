"""Hash-list files: reading and writing the lists that platforms exchange.

Three formats, read row by row so that one bad row never stops an import:

``csv`` / ``tsv``
    A header row names the columns: ``hash`` (required), ``algorithm`` (required
    unless the caller gives one), and optionally ``id`` (an external id), ``label``
    (or ``category``) and ``quality``. Other columns are ignored.
``hex``
    One hex hash per line, as imagehash users keep ``str(hash)``; the algorithm comes
    from the caller (the length alone cannot tell phash from dhash). Text after the
    hash on the same line becomes the external id; ``#`` starts a comment line.
``pdq``
    ThreatExchange-style PDQ lines, as the PDQ reference hasher prints them:
    ``hash,quality[,name]`` or ``hash=...,quality=...,filename=...``. No header.

Reading is by physical line: every line is exactly one of a header, a blank or
comment line (:class:`SkippedLine`), a row (:class:`ParsedRow`) or a rejected row
(:class:`RejectedRow`, with its line number), so the counts always add up to the
lines read. A CSV row is one line: a quoted field left open, a stray quote after a
closing one, or a line over ``MAX_LINE`` characters rejects that line alone and
never swallows the lines after it. No process-wide setting (``csv.field_size_limit``)
is touched. A file is refused as a whole only when it is not a hash list at all
(no header with a ``hash`` column, no algorithm known, unreadable, empty).

No reason or error ever quotes a value from a hash column, or a value that looks
like a hash (a run of hex digits or a long token), wherever it was found: lists of
known material are sensitive.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TextIO

from ._csv import FORMULA_STARTS, CsvWriter
from .errors import HashListError, InvalidHashError, UnknownAlgorithmError, looks_like_hash
from .hashes import DEFAULT_BITS, Hash, default_bits

__all__ = [
    "FORMATS",
    "MAX_LINE",
    "ParsedRow",
    "RejectedRow",
    "SkippedLine",
    "detect_format",
    "expected_bits",
    "read_hashlist",
    "write_hashlist",
]

FORMATS = ("csv", "tsv", "hex", "pdq")
"""Hash-list formats by name; ``auto`` detection picks one of these."""

_PDQ_LINE = re.compile(r"^\s*(?:hash=)?([0-9a-fA-F]{64})\s*,\s*(?:quality=)?(\d{1,3})\s*(?:,(.*))?$")
_FORMULA_START = FORMULA_STARTS  # the writer's rule (hashmatch._csv), undone on reading
MAX_LINE = 1 << 16
"""Longest line read (characters); a longer one is rejected, not read into memory."""
# Lines looked at to tell a PDQ list from a plain hex list: a bad first line or two
# must not make a PDQ list "hex" (and then refused for want of an algorithm).
_DETECT_LINES = 32


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One valid row of a hash list."""

    line: int
    hash: Hash
    quality: int | None = None
    label: str | None = None
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line that holds no row: blank, a comment, or the header."""

    line: int
    kind: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One row that could not be imported, and why (the hash itself is never quoted)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def expected_bits(algorithm: str) -> int:
    """The bit length a store accepts for ``algorithm`` (its default options)."""
    return default_bits(algorithm)


def _parse_hash(text: str, algorithm: str) -> Hash | str:
    """A Hash, or the reason it is not one (worded without the value)."""
    try:
        bits = expected_bits(algorithm)
    except UnknownAlgorithmError:
        return f"unknown algorithm {_shown(algorithm)}"
    if not text.strip():
        return "empty hash"
    try:
        parsed = Hash.from_hex(text, algorithm=algorithm)  # four bits per digit, as written
    except InvalidHashError:
        return "hash is not hexadecimal"
    width = (bits + 3) // 4
    if parsed.bits != 4 * width:
        # The CLI's import hint reads this wording ("64-digit hashes are pdq").
        return f"wrong length for {algorithm}: {parsed.bits // 4} hex digits, expected {width}"
    if parsed.value >> bits:
        return f"hash does not fit in {bits} bits"
    return parsed if parsed.bits == bits else Hash(parsed.value, algorithm, bits)


def _parse_quality(text: str | None) -> int | None | str:
    if text is None or not text.strip():
        return None
    try:
        value = int(text.strip())
    except ValueError:
        return "quality is not an integer"
    if not 0 <= value <= 100:
        return "quality must be between 0 and 100"
    return value


def _clean_text(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    # Undo the quote that write_hashlist puts before formula-like cells.
    if text[:1] == "'" and text[1:2] in _FORMULA_START:
        text = text[1:]
    return text or None


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(text: str) -> str:
    """A cell for a message: quoted when harmless, withheld when it may be a hash."""
    if looks_like_hash(text) or len(text) > 40:
        return "(a value withheld: it may be a hash)"
    return repr(text)


def detect_format(first_line: str, name: str | None = None, more: Iterable[str] = ()) -> str:
    """Guess a format from the first meaningful line (and the file name as a hint).

    ``more``: the next meaningful lines; any PDQ-shaped one makes a PDQ list, so one
    bad line at the top does not turn a PDQ list into something else.
    """
    fields = [f.strip().strip('"').lower() for f in re.split(r"[,\t]", first_line)]
    if "hash" in fields:
        if "\t" in first_line:
            return "tsv"
        return "csv"
    if _PDQ_LINE.match(first_line) or any(_PDQ_LINE.match(line.strip()) for line in more):
        return "pdq"
    if name and name.lower().endswith((".csv", ".tsv")):
        # A CSV without the header it needs: let the reader say so.
        return "tsv" if name.lower().endswith(".tsv") else "csv"
    return "hex"


_TOO_LONG = None  # marks a line over MAX_LINE characters (its text is not kept)


def _lines(stream: TextIO) -> Iterator[tuple[int, str | None]]:
    """(line number, text without its end) per physical line; None for an over-long one."""
    number = 0
    if not hasattr(stream, "readline"):  # an iterable of lines, as csv.reader takes
        for number, text in enumerate(stream, 1):
            yield number, (_TOO_LONG if len(text) > MAX_LINE + 2 else text.rstrip("\r\n"))
        return
    while True:
        text = stream.readline(MAX_LINE + 1)
        if not text:
            return
        number += 1
        if len(text) > MAX_LINE and not text.endswith(("\n", "\r")):
            while text and not text.endswith(("\n", "\r")):  # skip the rest, bounded reads
                text = stream.readline(MAX_LINE + 1)
            yield number, _TOO_LONG
            continue
        yield number, text.rstrip("\r\n")


def _too_long(line: int) -> RejectedRow:
    return RejectedRow(line, f"line is over {MAX_LINE} characters")


def _content_lines(lines: Iterable[tuple[int, str | None]]) -> Iterator[tuple[int, str | RejectedRow | SkippedLine]]:
    """Each line of a one-line-per-entry list, stripped, or already judged: too long
    (rejected), blank or a ``#`` comment (skipped)."""
    for line, text in lines:
        if text is None:
            yield line, _too_long(line)
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            yield line, SkippedLine(line, "comment" if stripped else "blank")
            continue
        yield line, stripped


def _split_row(text: str, delimiter: str) -> list[str] | str:
    """The cells of one line, or why it is not a well-formed row."""
    try:
        rows = list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return f"malformed row ({exc}): check its quotes"
    return rows[0] if rows else []


def _read_delimited(
    lines: Iterable[tuple[int, str | None]], delimiter: str, algorithm: str | None
) -> Iterator[ParsedRow | RejectedRow | SkippedLine]:
    header: list[str] | None = None
    col: dict[str, int] = {}
    for line, text in lines:
        if text is None:
            if header is None:
                raise HashListError(f"line {line}: the header is over {MAX_LINE} characters")
            yield _too_long(line)
            continue
        if not text.strip() or (header is None and text.lstrip().startswith("#")):
            yield SkippedLine(line, "blank" if not text.strip() else "comment")
            continue
        row = _split_row(text, delimiter)
        if header is None:
            if isinstance(row, str):
                raise HashListError(f"line {line}: the header is not a well-formed row: check its quotes")
            header = [c.strip().lower() for c in row]
            if "hash" not in header:
                shown = [_shown(c) if c else "''" for c in header[:12]]
                raise HashListError(
                    f"line {line}: the header has no 'hash' column (columns: {', '.join(shown)}"
                    f"{', …' if len(header) > 12 else ''})"
                )
            if "algorithm" not in header and algorithm is None:
                raise HashListError("the list has no 'algorithm' column: give the algorithm")
            col = {name: header.index(name) for name in header if name}
            if "category" in col and "label" not in col:
                col["label"] = col["category"]
            if "external_id" in col and "id" not in col:
                col["id"] = col["external_id"]
            yield SkippedLine(line, "header")
            continue
        if isinstance(row, str):
            yield RejectedRow(line, row)
            continue
        if all(not c.strip() for c in row):
            yield SkippedLine(line, "blank")
            continue
        yield _delimited_row(line, row, col, algorithm)
    if header is None:
        raise HashListError("the list is empty: no header row")


def _delimited_row(line: int, row: list[str], col: dict[str, int], algorithm: str | None) -> ParsedRow | RejectedRow:
    def cell(name: str) -> str | None:
        i = col.get(name)
        return row[i] if i is not None and i < len(row) else None

    alg = (cell("algorithm") or "").strip().lower() or algorithm
    if alg is None:
        return RejectedRow(line, "no algorithm")
    if algorithm is not None and alg != algorithm:
        return RejectedRow(line, f"algorithm {_shown(alg)} where {algorithm} was asked for")
    parsed = _parse_hash(cell("hash") or "", alg)
    if isinstance(parsed, str):
        return RejectedRow(line, parsed)
    quality = _parse_quality(cell("quality"))
    if isinstance(quality, str):
        return RejectedRow(line, quality)
    return ParsedRow(line, parsed, quality, _clean_text(cell("label")), _clean_text(cell("id")))


def _read_hex(
    lines: Iterable[tuple[int, str | None]], algorithm: str | None
) -> Iterator[ParsedRow | RejectedRow | SkippedLine]:
    if algorithm is None:
        raise HashListError("a plain hex list needs the algorithm (its hashes do not say)")
    for line, item in _content_lines(lines):
        if not isinstance(item, str):
            yield item
            continue
        stripped = item
        token, _, rest = _split_first(stripped)
        parsed = _parse_hash(token, algorithm)
        if isinstance(parsed, str):
            yield RejectedRow(line, parsed)
            continue
        yield ParsedRow(line, parsed, None, None, _clean_text(rest))


def _split_first(text: str) -> tuple[str, str, str]:
    match = re.search(r"[\s,;]", text)
    if match is None:
        return text, "", ""
    return text[: match.start()], match.group(), text[match.end() :].lstrip(" \t,;")


def _read_pdq(
    lines: Iterable[tuple[int, str | None]], algorithm: str | None
) -> Iterator[ParsedRow | RejectedRow | SkippedLine]:
    if algorithm not in (None, "pdq"):
        raise HashListError(f"a ThreatExchange PDQ list holds pdq hashes, not {_shown(algorithm)}")
    for line, item in _content_lines(lines):
        if not isinstance(item, str):
            yield item
            continue
        stripped = item
        match = _PDQ_LINE.match(stripped)
        if match is None:
            token = _split_first(stripped.removeprefix("hash="))[0]
            parsed = _parse_hash(token, "pdq")
            if isinstance(parsed, str):
                yield RejectedRow(line, parsed)
            else:
                yield RejectedRow(line, "expected hash,quality[,name]")
            continue
        parsed = _parse_hash(match.group(1), "pdq")
        quality = _parse_quality(match.group(2))
        if isinstance(parsed, str) or isinstance(quality, str):
            yield RejectedRow(line, parsed if isinstance(parsed, str) else str(quality))
            continue
        rest = match.group(3)
        if rest is not None:
            rest = re.sub(r"^\s*filename=", "", rest.split(",")[0] if "=" in rest else rest)
        yield ParsedRow(line, parsed, quality, None, _clean_text(rest))


def read_hashlist(
    source: str | os.PathLike[str] | TextIO,
    *,
    algorithm: str | None = None,
    format: str = "auto",  # noqa: A002 - the word users know
) -> Iterator[ParsedRow | RejectedRow | SkippedLine]:
    """Read a hash list line by line: a :class:`ParsedRow`, :class:`RejectedRow` or
    :class:`SkippedLine` for each physical line.

    ``algorithm`` is required for plain hex lists and for CSV without an
    ``algorithm`` column; when given, rows of another algorithm are rejected.
    Raises :class:`~hashmatch.errors.HashListError` when the file as a whole cannot
    be read (missing, not a hash list, no header, unknown format).
    """
    if format not in (*FORMATS, "auto"):
        raise HashListError(f"unknown hash-list format {_shown(str(format))}; known: auto, {', '.join(FORMATS)}")
    if algorithm is not None:
        try:
            expected_bits(algorithm)
        except UnknownAlgorithmError:
            known = ", ".join(sorted(DEFAULT_BITS))
            raise HashListError(f"unknown algorithm {_shown(str(algorithm))}; known: {known}") from None
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            stream: TextIO = open(name, encoding="utf-8-sig", errors="replace", newline="")
        except (OSError, ValueError) as exc:
            raise HashListError(f"cannot read {name!r}: {getattr(exc, 'strerror', None) or exc}") from None
        owned = True
    else:
        name, stream, owned = getattr(source, "name", None), source, False
    try:
        lines: Iterator[tuple[int, str | None]] = _lines(stream)
        if format == "auto":
            head: list[tuple[int, str | None]] = []
            meaningful: list[str] = []
            for item in lines:
                head.append(item)
                text = item[1]
                if text is not None and text.strip() and not text.lstrip().startswith("#"):
                    meaningful.append(text)
                    if len(meaningful) >= _DETECT_LINES:
                        break
            first = meaningful[0] if meaningful else ""
            format = detect_format(first, name if isinstance(name, str) else None, meaningful[1:])
            lines = itertools.chain(head, lines)
        if format in ("csv", "tsv"):
            yield from _read_delimited(lines, "," if format == "csv" else "\t", algorithm)
        elif format == "hex":
            yield from _read_hex(lines, algorithm)
        else:
            yield from _read_pdq(lines, algorithm)
    except OSError as exc:
        raise HashListError(f"cannot read {name or 'the list'}: {exc}") from None
    finally:
        if owned:
            stream.close()


def _one_line(text: str | None) -> str | None:
    # The reader takes one entry per physical line (a stray quote must not swallow the
    # rows after it), so a line break inside a cell is written as a space.
    return " ".join(text.splitlines()) if text else None


def write_hashlist(
    dest: str | os.PathLike[str] | IO[str],
    rows: Iterable[tuple[Hash, int | None, str | None, str | None, str | None]],
    *,
    format: str = "csv",  # noqa: A002
) -> int:
    """Write ``(hash, quality, label, external_id, list_name)`` rows; returns the count.

    ``csv``/``tsv`` write a header (hash, algorithm, id, label, quality, list) that
    :func:`read_hashlist` reads back; ``hex`` writes one hash per line; ``pdq`` writes
    ``hash,quality[,id]`` and accepts only pdq hashes. A path is written whole or not
    at all: to a temporary file beside it, renamed into place once complete.
    """
    if format not in FORMATS:
        raise HashListError(f"unknown hash-list format {format!r}; known: {', '.join(FORMATS)}")
    if not isinstance(dest, (str, os.PathLike)):
        return _write_rows(dest, rows, format)
    path = os.fspath(dest)
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-", suffix=".hashlist")
    except OSError as exc:
        raise HashListError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        # A temporary file beside the target (mode 0600), renamed into place once
        # complete and on disk: a failed export leaves no partial file.
        with open(fd, "w", encoding="utf-8", newline="") as out:
            count = _write_rows(out, rows, format)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise HashListError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def _write_rows(
    out: IO[str], rows: Iterable[tuple[Hash, int | None, str | None, str | None, str | None]], format: str  # noqa: A002
) -> int:
    count = 0
    try:
        if format in ("csv", "tsv"):
            writer = CsvWriter(out, delimiter="," if format == "csv" else "\t")
            writer.writerow(["hash", "algorithm", "id", "label", "quality", "list"])
            for h, quality, label, external_id, list_name in rows:
                writer.writerow([h.hex(), h.algorithm, _one_line(external_id), _one_line(label), quality, _one_line(list_name)])
                count += 1
        elif format == "hex":
            for h, *_ in rows:
                out.write(h.hex() + "\n")
                count += 1
        else:
            for h, quality, _label, external_id, _list in rows:
                if h.algorithm != "pdq":
                    raise HashListError(f"a PDQ list cannot hold {h.algorithm} hashes")
                # One line per hash, as ThreatExchange reads it: no separators inside the id.
                tail = "" if not external_id else "," + _one_line(external_id.replace(",", " "))
                out.write(f"{h.hex()},{100 if quality is None else quality}{tail}\n")
                count += 1
    except OSError as exc:
        raise HashListError(f"cannot write the list: {exc}") from None
    return count

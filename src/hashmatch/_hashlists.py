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

Bad rows come back as :class:`RejectedRow` with their line number and a reason
that never repeats the row's hash (lists of known material are sensitive).
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TextIO

from ._csv import FORMULA_STARTS, CsvWriter
from .errors import HashListError, UnknownAlgorithmError
from .hashes import Hash, default_bits

__all__ = [
    "FORMATS",
    "ParsedRow",
    "RejectedRow",
    "detect_format",
    "expected_bits",
    "read_hashlist",
    "write_hashlist",
]

FORMATS = ("csv", "tsv", "hex", "pdq")
"""Hash-list formats by name; ``auto`` detection picks one of these."""

_PDQ_LINE = re.compile(r"^\s*(?:hash=)?([0-9a-fA-F]{64})\s*,\s*(?:quality=)?(\d{1,3})\s*(?:,(.*))?$")
_HEX = re.compile(r"[0-9a-fA-F]+")
_FORMULA_START = FORMULA_STARTS  # the writer's rule (hashmatch._csv), undone on reading
_MAX_FIELD = 1 << 16


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One valid row of a hash list."""

    line: int
    hash: Hash
    quality: int | None = None
    label: str | None = None
    external_id: str | None = None


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
        return f"unknown algorithm {_short(algorithm)!r}"
    digits = text.strip()
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if not digits:
        return "empty hash"
    if _HEX.fullmatch(digits) is None:
        return "hash is not hexadecimal"
    width = (bits + 3) // 4
    if len(digits) != width:
        return f"wrong length for {algorithm}: {len(digits)} hex digits, expected {width}"
    value = int(digits, 16)
    if value >> bits:
        return f"hash does not fit in {bits} bits"
    return Hash(value, algorithm, bits)


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


def detect_format(first_line: str, name: str | None = None) -> str:
    """Guess a format from the first meaningful line (and the file name as a hint)."""
    fields = [f.strip().strip('"').lower() for f in re.split(r"[,\t]", first_line)]
    if "hash" in fields:
        if "\t" in first_line:
            return "tsv"
        return "csv"
    if _PDQ_LINE.match(first_line):
        return "pdq"
    if name and name.lower().endswith((".csv", ".tsv")):
        # A CSV without the header it needs: let the reader say so.
        return "tsv" if name.lower().endswith(".tsv") else "csv"
    return "hex"


def _lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, 1):
        yield number, line.rstrip("\r\n")


def _read_delimited(
    stream: TextIO, delimiter: str, algorithm: str | None
) -> Iterator[ParsedRow | RejectedRow]:
    reader = csv.reader(stream, delimiter=delimiter)
    header: list[str] | None = None
    try:
        for row in reader:
            if header is None:
                if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                    continue
                header = [c.strip().lower() for c in row]
                if "hash" not in header:
                    raise HashListError(
                        f"line {reader.line_num}: the header has no 'hash' column (columns: {', '.join(header)})"
                    )
                if "algorithm" not in header and algorithm is None:
                    raise HashListError("the list has no 'algorithm' column: give the algorithm")
                col = {name: header.index(name) for name in header if name}
                if "category" in col and "label" not in col:
                    col["label"] = col["category"]
                if "external_id" in col and "id" not in col:
                    col["id"] = col["external_id"]
                continue
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue

            def cell(name: str) -> str | None:
                i = col.get(name)
                return row[i] if i is not None and i < len(row) else None

            alg = (cell("algorithm") or "").strip().lower() or algorithm
            if alg is None:
                yield RejectedRow(line, "no algorithm")
                continue
            if algorithm is not None and alg != algorithm:
                yield RejectedRow(line, f"algorithm {_short(alg)!r} where {algorithm} was asked for")
                continue
            parsed = _parse_hash(cell("hash") or "", alg)
            if isinstance(parsed, str):
                yield RejectedRow(line, parsed)
                continue
            quality = _parse_quality(cell("quality"))
            if isinstance(quality, str):
                yield RejectedRow(line, quality)
                continue
            yield ParsedRow(line, parsed, quality, _clean_text(cell("label")), _clean_text(cell("id")))
    except csv.Error as exc:
        raise HashListError(f"line {reader.line_num}: unreadable {('TSV' if delimiter == chr(9) else 'CSV')}: {exc}") from None
    if header is None:
        raise HashListError("the list is empty: no header row")


def _read_hex(stream: TextIO, algorithm: str | None) -> Iterator[ParsedRow | RejectedRow]:
    if algorithm is None:
        raise HashListError("a plain hex list needs the algorithm (its hashes do not say)")
    for line, text in _lines(stream):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
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


def _read_pdq(stream: TextIO, algorithm: str | None) -> Iterator[ParsedRow | RejectedRow]:
    if algorithm not in (None, "pdq"):
        raise HashListError(f"a ThreatExchange PDQ list holds pdq hashes, not {algorithm}")
    for line, text in _lines(stream):
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
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
) -> Iterator[ParsedRow | RejectedRow]:
    """Read a hash list row by row: a :class:`ParsedRow` or a :class:`RejectedRow` each.

    ``algorithm`` is required for plain hex lists and for CSV without an
    ``algorithm`` column; when given, rows of another algorithm are rejected.
    Raises :class:`~hashmatch.errors.HashListError` when the file as a whole cannot
    be read (missing, no header, unknown format).
    """
    if format not in (*FORMATS, "auto"):
        raise HashListError(f"unknown hash-list format {format!r}; known: auto, {', '.join(FORMATS)}")
    if algorithm is not None:
        try:
            expected_bits(algorithm)
        except UnknownAlgorithmError as exc:
            raise HashListError(str(exc)) from None
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            stream: TextIO = open(name, encoding="utf-8-sig", errors="replace", newline="")
        except OSError as exc:
            raise HashListError(f"cannot read {name}: {exc.strerror or exc}") from None
        owned = True
    else:
        name, stream, owned = getattr(source, "name", None), source, False
    handle = stream
    try:
        csv.field_size_limit(_MAX_FIELD)
        if format == "auto":
            first = ""
            buffered: list[str] = []
            for raw in stream:
                buffered.append(raw)
                if raw.strip() and not raw.lstrip().startswith("#"):
                    first = raw.rstrip("\r\n")
                    break
            format = detect_format(first, name if isinstance(name, str) else None)
            stream = _Chain(buffered, stream)
        if format in ("csv", "tsv"):
            yield from _read_delimited(stream, "," if format == "csv" else "\t", algorithm)
        elif format == "hex":
            yield from _read_hex(stream, algorithm)
        else:
            yield from _read_pdq(stream, algorithm)
    except OSError as exc:
        raise HashListError(f"cannot read {name or 'the list'}: {exc}") from None
    finally:
        if owned:
            handle.close()


class _Chain(io.TextIOBase):
    """Lines already read for detection, then the rest of the stream."""

    def __init__(self, head: list[str], tail: TextIO) -> None:
        self._head, self._tail = head, tail

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        yield from self._head
        yield from self._tail

    def readline(self, size: int = -1) -> str:  # pragma: no cover - csv iterates
        return self._head.pop(0) if self._head else self._tail.readline(size)


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
        with open(fd, "w", encoding="utf-8", newline="") as out:
            count = _write_rows(out, rows, format)
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
                writer.writerow([h.hex(), h.algorithm, external_id or None, label or None, quality, list_name or None])
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
                tail = "" if not external_id else "," + " ".join(external_id.replace(",", " ").splitlines())
                out.write(f"{h.hex()},{100 if quality is None else quality}{tail}\n")
                count += 1
    except OSError as exc:
        raise HashListError(f"cannot write the list: {exc}") from None
    return count

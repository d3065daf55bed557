"""The scan report format: JSON Lines or CSV, one self-contained row per file.

Written row by row while a scan runs and read back to resume it, so every choice here
serves "a killed run loses at most the rows in flight":

* Each row is one ``write`` followed by a flush; the file is fsynced every few seconds
  and at the end. After ``kill -9`` the last line may be partial: :func:`read_report`
  drops it and truncates the file there before a resumed run appends.
* Each row carries ``crc``, the CRC-32 of the row's own serialised fields, so a
  damaged row in the middle of a report is detected rather than silently skipped.
* JSON Lines starts with a meta line (magic, format version, settings). CSV keeps its
  meta in a sidecar ``<report>.meta.json`` (so spreadsheets see only the table), and
  its first row names the columns. Resume refuses a report of another kind or with
  other settings (:class:`~hashmatch.errors.ReportFormatError`).
* CSV cells follow the project's one rule (:mod:`hashmatch._csv`): RFC 4180 quoting,
  CRLF records, and a ``'`` before formula-like cells, stripped again on reading, so
  paths round-trip exactly.
* File names that are not valid UTF-8 (surrogate-escaped by Python) are written as
  ``\\udcXX`` escapes in JSON and as their raw bytes in CSV; both read back unchanged.

Just over 400 lines: one file format in one module, as every format here is (writer,
reader, resume checks and their version), so a change to the format is made in one place.
"""

from __future__ import annotations

import csv
import json
import os
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from ._version import __version__
from ._csv import csv_line as _csv_line
from ._csv import escape_cell as _escape_cell
from ._csv import unescape_cell as _unescape_cell
from .errors import ReportFormatError

__all__ = [
    "REPORT_MAGIC",
    "REPORT_VERSION",
    "ReportState",
    "ReportWriter",
    "detect_format",
    "read_report",
]

REPORT_MAGIC = "hashmatch-scan-report"
REPORT_VERSION = 1
FORMATS = ("jsonl", "csv")

# The CSV table; list- and dict-valued fields are JSON inside their cell.
CSV_COLUMNS = (
    "path",
    "size",
    "mtime_ns",
    "mtime",
    "sha256",
    "status",
    "hashes",
    "quality",
    "matches",
    "error_kind",
    "error",
    "crc",
)
_CSV_JSON_COLUMNS = ("hashes", "quality", "matches")
_CSV_INT_COLUMNS = ("size", "mtime_ns")
_FSYNC_EVERY_SECONDS = 2.0


def detect_format(path: str | os.PathLike[str], fmt: str | None = None) -> str:
    """``fmt`` if given, else ``csv`` for a ``.csv`` name and ``jsonl`` otherwise."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ReportFormatError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    return "csv" if os.fspath(path).lower().endswith(".csv") else "jsonl"


def sidecar_path(path: str | os.PathLike[str]) -> str:
    return os.fspath(path) + ".meta.json"


def _crc(text: str) -> str:
    return f"{zlib.crc32(text.encode('utf-8', 'surrogateescape')):08x}"


def _json_dumps(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate-escaped file name: keep it exact as \\udcXX
        text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text


def _csv_cells(row: Mapping[str, Any]) -> list[str]:
    cells = []
    for name in CSV_COLUMNS[:-1]:
        value = row.get(name)
        if value is None:
            cells.append("")
        elif name in _CSV_JSON_COLUMNS:
            cells.append(_escape_cell(_json_dumps(value)))
        else:
            cells.append(_escape_cell(str(value)))
    return cells


def _meta_record(fmt: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "magic": REPORT_MAGIC,
        "version": REPORT_VERSION,
        "format": fmt,
        "library_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": dict(settings),
    }


def _check_meta(meta: Any, fmt: str, settings: Mapping[str, Any], where: str) -> None:
    if not isinstance(meta, dict) or meta.get("magic") != REPORT_MAGIC:
        raise ReportFormatError(f"{where}: not a hashmatch scan report (no {REPORT_MAGIC!r} header)")
    if meta.get("version") != REPORT_VERSION:
        raise ReportFormatError(
            f"{where}: report format version {meta.get('version')!r}, this hashmatch reads {REPORT_VERSION}"
        )
    if meta.get("format") != fmt:
        raise ReportFormatError(f"{where}: a {meta.get('format')!r} report, expected {fmt!r}")
    theirs = meta.get("settings")
    if not isinstance(theirs, dict):
        raise ReportFormatError(f"{where}: header has no settings")
    for key, value in settings.items():
        if theirs.get(key) != value:
            raise ReportFormatError(
                f"{where}: written with {key}={theirs.get(key)!r}, this scan uses {key}={value!r}; "
                "resume with the same settings or write a new report"
            )


@dataclass
class ReportState:
    """What an existing report already holds, for resume."""

    done: dict[tuple[str, int | None, int | None], bool] = field(default_factory=dict)
    """(path, size, mtime_ns) -> whether that file matched."""
    rows: int = 0
    good_bytes: int = 0
    """Length of the intact part; a partial last row lies beyond it."""
    dropped_partial_row: bool = False
    has_header: bool = False

    @property
    def matched_files(self) -> int:
        return sum(self.done.values())


def _row_key(row: Mapping[str, Any]) -> tuple[str, int | None, int | None]:
    return (row["path"], row.get("size"), row.get("mtime_ns"))


def _complete_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, line) for each newline-terminated line; a partial tail is not yielded."""
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return
        yield end + 1, data[start:end]
        start = end + 1


def _read_jsonl(data: bytes, settings: Mapping[str, Any], where: str) -> ReportState:
    state = ReportState()
    lines = list(_complete_lines(data))
    state.dropped_partial_row = bool(data) and not data.endswith(b"\n")
    for number, (end, raw) in enumerate(lines, start=1):
        text = raw.decode("utf-8", "surrogateescape")
        try:
            record = _verify_jsonl_line(text)
        except ReportFormatError as exc:
            if number == len(lines) and not state.dropped_partial_row:
                # A complete-looking but unverifiable last line can only be a write the kill
                # interrupted (rows are appended whole): drop it like a partial one.
                state.dropped_partial_row = True
                break
            raise ReportFormatError(f"{where}: line {number}: {exc}") from None
        if number == 1:
            _check_meta(record, "jsonl", settings, where)
            state.has_header = True
        else:
            if not isinstance(record.get("path"), str):
                raise ReportFormatError(f"{where}: line {number}: row has no path")
            state.done[_row_key(record)] = bool(record.get("matches"))
            state.rows += 1
        state.good_bytes = end
    return state


def _verify_jsonl_line(text: str) -> dict[str, Any]:
    suffix_len = len(',"crc":"00000000"}')
    body, tail = text[:-suffix_len], text[-suffix_len:]
    if len(text) <= suffix_len or not tail.startswith(',"crc":"') or not tail.endswith('"}'):
        raise ReportFormatError("row has no checksum (truncated or edited)")
    if _crc(body + "}") != tail[8:16]:
        raise ReportFormatError("row checksum does not match (damaged or edited)")
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise ReportFormatError(f"row is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ReportFormatError("row is not a JSON object")
    record.pop("crc", None)
    return record


def _read_csv(data: bytes, meta_path: str, settings: Mapping[str, Any], where: str) -> ReportState:
    try:
        with open(meta_path, "rb") as fh:
            meta = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        raise ReportFormatError(f"{where}: its sidecar {meta_path} is missing; cannot check it is a scan report") from None
    except (OSError, ValueError) as exc:
        raise ReportFormatError(f"{where}: cannot read its sidecar {meta_path}: {exc}") from None
    _check_meta(meta, "csv", settings, meta_path)
    state = ReportState(has_header=True)
    text = data.decode("utf-8", "surrogateescape")
    # Records end at CRLF outside quotes: join CRLF-split pieces until the quotes balance.
    pieces = text.split("\r\n")
    tail = pieces.pop()  # "" when the file ends with a complete record
    records: list[str] = []
    pending: list[str] = []
    for piece in pieces:
        pending.append(piece)
        joined = "\r\n".join(pending)
        if joined.count('"') % 2 == 0:
            records.append(joined)
            pending = []
    state.dropped_partial_row = bool(pending) or bool(tail)
    offset = 0
    for number, record in enumerate(records, start=1):
        is_last = number == len(records)
        try:
            cells = next(csv.reader([record], strict=True))
        except (csv.Error, StopIteration) as exc:
            if is_last:
                state.dropped_partial_row = True
                break
            raise ReportFormatError(f"{where}: row {number}: not valid CSV: {exc}") from None
        if number == 1:
            if tuple(cells) != CSV_COLUMNS:
                raise ReportFormatError(f"{where}: first row is not the scan report's column names")
        else:
            try:
                row = _verify_csv_cells(cells)
            except ReportFormatError as exc:
                if is_last:
                    state.dropped_partial_row = True
                    break
                raise ReportFormatError(f"{where}: row {number}: {exc}") from None
            state.done[_row_key(row)] = bool(row.get("matches"))
            state.rows += 1
        offset += len(record.encode("utf-8", "surrogateescape")) + 2
        state.good_bytes = offset
    return state


def _verify_csv_cells(cells: list[str]) -> dict[str, Any]:
    if len(cells) != len(CSV_COLUMNS):
        raise ReportFormatError(f"row has {len(cells)} cells, expected {len(CSV_COLUMNS)}")
    if _crc(_csv_line(cells[:-1])) != cells[-1]:
        raise ReportFormatError("row checksum does not match (damaged or edited)")
    row: dict[str, Any] = {}
    for name, cell in zip(CSV_COLUMNS[:-1], cells[:-1]):
        value: Any = _unescape_cell(cell)
        if name == "path":
            pass  # always a string, even an empty one
        elif value == "":
            value = None
        elif name in _CSV_INT_COLUMNS:
            try:
                value = int(value)
            except ValueError:
                raise ReportFormatError(f"{name} is not an integer: {value!r}") from None
        elif name in _CSV_JSON_COLUMNS:
            try:
                value = json.loads(value)
            except ValueError:
                raise ReportFormatError(f"{name} is not JSON") from None
        row[name] = value
    return row


def parse_row(line_or_cells: str | list[str]) -> dict[str, Any]:
    """One report row back as a dict (checksum verified): a JSONL line or CSV cells."""
    if isinstance(line_or_cells, str):
        return _verify_jsonl_line(line_or_cells.rstrip("\n"))
    return _verify_csv_cells(line_or_cells)


def read_report(
    path: str | os.PathLike[str], fmt: str, settings: Mapping[str, Any]
) -> ReportState:
    """Read an existing report to resume it. A missing or empty report is an empty state.

    Raises :class:`~hashmatch.errors.ReportFormatError` when the file is not a scan
    report, is of another format or version, was written with other ``settings``, or has
    a damaged row anywhere but at the very end (where a killed run leaves a partial row).
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return ReportState()
    except OSError as exc:
        raise ReportFormatError(f"{where}: cannot read report: {exc.strerror or exc}") from None
    if fmt == "jsonl":
        return _read_jsonl(data, settings, where)
    if not data:
        return ReportState()
    return _read_csv(data, sidecar_path(path), settings, where)


class ReportWriter:
    """Appends rows to a report, one write and flush per row, fsync every few seconds.

    ``open`` creates the file (with its header) or, given a :class:`ReportState` from
    :func:`read_report`, truncates any partial last row and appends after the rest.
    ``stream`` writes to an already open text stream (stdout) instead of a file.
    """

    def __init__(self, fh: IO[str], fmt: str, *, owns: bool) -> None:
        self._fh = fh
        self._fmt = fmt
        self._owns = owns
        self._last_sync = time.monotonic()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        fmt: str,
        settings: Mapping[str, Any],
        *,
        resume_from: ReportState | None = None,
    ) -> ReportWriter:
        path = os.fspath(path)
        keep = resume_from.good_bytes if resume_from is not None and resume_from.has_header else 0
        appending = keep > 0
        try:
            if appending:
                with open(path, "r+b") as raw:
                    raw.truncate(keep)
                fh = open(path, "a", encoding="utf-8", errors="surrogateescape", newline="")
            else:
                if fmt == "csv":
                    _write_sidecar(sidecar_path(path), _meta_record(fmt, settings))
                fh = open(path, "w", encoding="utf-8", errors="surrogateescape", newline="")
        except OSError as exc:
            raise ReportFormatError(f"{path}: cannot write report: {exc.strerror or exc}") from None
        writer = cls(fh, fmt, owns=True)
        if not appending:
            if fmt == "jsonl":
                writer._write_jsonl(_meta_record(fmt, settings))
            else:
                writer._fh.write(_csv_line(list(CSV_COLUMNS)))
                writer._fh.flush()
            writer.sync(force=True)
        return writer

    @classmethod
    def stream(cls, fh: IO[str], fmt: str, settings: Mapping[str, Any]) -> ReportWriter:
        writer = cls(fh, fmt, owns=False)
        if fmt == "jsonl":
            writer._write_jsonl(_meta_record(fmt, settings))
        else:
            fh.write(_csv_line(list(CSV_COLUMNS)))
            fh.flush()
        return writer

    def _write_jsonl(self, record: Mapping[str, Any]) -> None:
        body = _json_dumps(dict(record))
        # The checksum covers the object as written without it, so reading verifies the exact text.
        line = f'{body[:-1]},"crc":"{_crc(body)}"}}\n'
        self._fh.write(line)
        self._fh.flush()

    def write_row(self, row: Mapping[str, Any]) -> None:
        if self._fmt == "jsonl":
            self._write_jsonl(row)
        else:
            cells = _csv_cells(row)
            self._fh.write(_csv_line(cells + [_crc(_csv_line(cells))]))
            self._fh.flush()
        self.sync()

    def sync(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._owns or (not force and now - self._last_sync < _FSYNC_EVERY_SECONDS):
            return
        self._last_sync = now
        try:
            os.fsync(self._fh.fileno())
        except OSError:  # some file systems refuse fsync; the flush already happened
            pass

    def close(self) -> None:
        if self._fh.closed:
            return
        self._fh.flush()
        self.sync(force=True)
        if self._owns:
            self._fh.close()


def _write_sidecar(path: str, meta: Mapping[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

"""Retroaction: find earlier uploads that match references added since, from their
recorded hashes alone (no image is read again).

Two sources of recorded hashes: scan reports (:func:`rematch_reports`, which reads
them with the report module's own reader) and hashes a platform logged
(:func:`new_matches`, which the service's ``/v1/rematch`` uses). Only *new* matches
are reported: entries the upload did not already match when it was recorded, or,
given a generation, entries added after it.

A report records each file's hash as stored, not its rotated and mirrored variants,
so a rematch finds copies in the orientation they were uploaded in; the
scan that recorded them found the others then.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Collection, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ._match import Match, Matcher
from ._report import detect_format, parse_row, read_report
from ._store import ReferenceStore
from .errors import InvalidHashError, ReportFormatError
from .hashers import HashResult
from .hashes import Hash

__all__ = ["RematchResult", "entries_added_since", "new_matches", "rematch_reports"]


@dataclass(frozen=True, slots=True)
class RematchResult:
    """New matches of one recorded upload (a report row)."""

    report: str
    path: str
    sha256: str | None
    matches: tuple[Match, ...]


def new_matches(
    matcher: Matcher,
    hashes: Iterable[HashResult | Hash],
    *,
    known_ids: Collection[int] = (),
    known: Collection[tuple[str, int]] = (),
    only_ids: Container[int] | None = None,
) -> list[Match]:
    """Matches of recorded hashes that are new: not in ``known_ids`` (entry ids) or
    ``known`` ((algorithm, entry id) pairs), and in ``only_ids`` when given."""
    known_set = set(known)
    known_id_set = set(known_ids)
    return [
        m for m in matcher.match_hashes(list(hashes))
        if m.entry_id not in known_id_set
        and (m.algorithm, m.entry_id) not in known_set
        and (only_ids is None or m.entry_id in only_ids)
    ]


def entries_added_since(store: ReferenceStore, generation: int) -> frozenset[int]:
    """Ids of active entries added after store ``generation`` (any algorithm)."""
    ids: set[int] = set()
    for name in store.algorithms():
        _, added_ids, _, _ = store.read_changes(name, generation)
        ids.update(added_ids.tolist())
    return frozenset(ids)


def _rows(path: str) -> Iterator[dict[str, object]]:
    """Verified rows of one report; the report reader checks the header and every
    row's checksum first (a partial last row, left by a killed scan, is skipped)."""
    fmt = detect_format(path)
    state = read_report(path, fmt, {})
    if not state.has_header:
        raise ReportFormatError(f"{path}: not a scan report (empty or missing)")
    with open(path, "rb") as fh:
        data = fh.read(state.good_bytes)
    text = data.decode("utf-8", "surrogateescape")
    if fmt == "jsonl":
        for line in text.splitlines()[1:]:
            yield parse_row(line)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        next(reader, None)  # the column names
        for cells in reader:
            yield parse_row(cells)


def _recorded(row: dict[str, object], where: str) -> tuple[list[HashResult], set[tuple[str, int]]]:
    hashes = row.get("hashes") or {}
    quality = row.get("quality") or {}
    if not isinstance(hashes, dict) or not isinstance(quality, dict):
        raise ReportFormatError(f"{where}: hashes and quality must be objects")
    results = []
    for name, text in hashes.items():
        try:
            h = Hash.from_hex(text, algorithm=name)  # type: ignore[arg-type]
        except InvalidHashError as exc:
            raise ReportFormatError(f"{where}: {name}: {exc}") from None
        q = quality.get(name)
        results.append(HashResult(h, q if isinstance(q, int) else None))
    matched = row.get("matches") or []
    known = {(m["algorithm"], m["entry_id"]) for m in matched if isinstance(m, dict)}  # type: ignore[union-attr]
    return results, known


def rematch_reports(matcher: Matcher, paths: Sequence[str | os.PathLike[str]]) -> Iterator[RematchResult]:
    """New matches of every file recorded in scan reports, report by report.

    Rows without hashes (errors, or scans run without recording hashes) are skipped.
    Raises :class:`~hashmatch.errors.ReportFormatError` for a file that is not a
    readable report.
    """
    for report in paths:
        where = os.fspath(report)
        for number, row in enumerate(_rows(where), start=2):
            if row.get("error_kind") or not row.get("hashes"):
                continue
            hashes, known = _recorded(row, f"{where} row {number}")
            found = new_matches(matcher, hashes, known=known)
            if found:
                sha = row.get("sha256")
                yield RematchResult(where, str(row["path"]), sha if isinstance(sha, str) else None, tuple(found))

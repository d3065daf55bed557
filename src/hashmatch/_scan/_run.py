"""A scan run: list, hash on a backend, match in this process, report as it goes.

:func:`scan` lists the files first (so progress knows the total and resume can skip
what a report already holds), then the scheduler hands them out in chunks (large, then shrinking) to
worker processes or a Dask cluster. Workers only read and hash with the matcher's
:class:`~hashmatch.QuerySpec`; the reference hashes stay in this process with the
matcher (matching one image takes microseconds, hashing it milliseconds). A chunk's
results are matched together (``Matcher.match_batch``: one index search per algorithm;
``match_views`` per file for a matcher without it), then each is yielded and, with a
report, written and flushed at once, so a killed run loses at most the chunks in flight.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Protocol

from .._matches import Match
from .._query import QuerySpec, View
from .._report import ReportState, ReportWriter, detect_format, read_report
from ..errors import ReportFormatError, UsageError
from ._backends import Backend, DaskBackend, InProcess, ProcessPool
from ._results import ScanResult, ScanSummary
from ._schedule import Failed, guided_chunks, schedule_chunks
from ._walk import Entry, WalkError, walk
from ._warm import prepare
from ..hashers import get_algorithm
from ._worker import (
    DEFAULT_MMAP_THRESHOLD, Raw, available_cores, decode_local, decode_views, own_hashes, pack_views, paused_gc,
)

__all__ = ["DEFAULT_TIMEOUT", "MatcherLike", "ScanRun", "scan"]

DEFAULT_TIMEOUT = 60.0
"""Seconds one file may take in a worker before the worker is stopped (hashing a
1024x768 JPEG takes milliseconds; a file at the default pixel limit, seconds)."""


class MatcherLike(Protocol):
    """What :func:`scan` needs from a matcher (:class:`hashmatch.Matcher` has it). A
    matcher that also has ``match_batch`` (as :class:`hashmatch.Matcher` does) gets each
    chunk of files matched at once; others are asked file by file."""

    @property
    def spec(self) -> QuerySpec: ...

    def match_views(self, views: Sequence[View]) -> list[Match]: ...


class ScanRun(Iterator[ScanResult]):
    """An iterator over the results of a scan, with its live :attr:`summary`.

    Iterating drives the scan. :meth:`list_files` walks the folders and returns how many
    files this run will process (iteration calls it if you do not). Use it as a context
    manager, or call :meth:`close`, to stop workers and close the report early.
    """

    def __init__(
        self,
        roots: list[str],
        matcher: MatcherLike,
        *,
        spec: QuerySpec,
        workers: int,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
        follow_symlinks: bool,
        report: str | os.PathLike[str] | IO[str] | None,
        report_format: str | None,
        resume: bool,
        include_hashes: bool,
        reference: str | None,
        dask: str | None,
        chunk_size: int | None,
        mmap_threshold: int | None,
        timeout: float | None = None,
    ) -> None:
        self.summary = ScanSummary()
        self._roots = roots
        self._matcher = matcher
        self._spec = spec
        self._workers = workers
        self._include, self._exclude = include, exclude
        self._follow = follow_symlinks
        self._include_hashes = include_hashes
        self._dask = dask
        self._chunk_size = chunk_size
        self._threshold = mmap_threshold
        self._timeout = timeout
        self._todo: list[Entry | ScanResult] | None = None
        self._writer: ReportWriter | None = None
        self._state: ReportState | None = None
        self._iter: Iterator[ScanResult] | None = None
        self._backend_obj: Backend | None = None
        self._settings = {
            "algorithms": list(spec.algorithms),
            "dihedral": spec.dihedral,
            "trim_borders": spec.trim_borders,
            "fast": spec.fast,
            "hashes": include_hashes,
            "max_pixels": spec.limits.max_pixels,
            "max_file_bytes": spec.limits.max_file_bytes,
            "reference": reference,
        }
        self._report = report
        self._fmt: str | None = None
        if report is not None and not hasattr(report, "write"):
            self._fmt = detect_format(report, report_format)  # type: ignore[arg-type]
            if resume:
                self._state = read_report(report, self._fmt, self._settings)  # type: ignore[arg-type]
            elif os.path.exists(report) and os.path.getsize(report) > 0:  # type: ignore[arg-type]
                raise ReportFormatError(
                    f"{os.fspath(report)} already exists: resume it or choose another report"  # type: ignore[arg-type]
                )
        elif report is not None:
            if resume:
                raise ReportFormatError("resume needs a report file, not a stream")
            self._fmt = report_format or "jsonl"
            detect_format("", self._fmt)

    @property
    def report_state(self) -> ReportState | None:
        """What the resumed report held before this run (None without resume)."""
        return self._state

    def list_files(self) -> int:
        """Walk the folders (once) and return how many results this run will yield."""
        if self._todo is None:
            done = self._state.done if self._state is not None else {}
            todo: list[Entry | ScanResult] = []
            found = walk(
                self._roots, include=self._include, exclude=self._exclude,
                follow_symlinks=self._follow, skipped=self.summary.skipped,
            )
            for walked in found:
                item: Entry | ScanResult
                if isinstance(walked, WalkError):
                    item = ScanResult(walked.path, error_kind=walked.kind, error=walked.message)
                else:
                    item = walked
                    self.summary.listed += 1
                key = (item.path, item.size, item.mtime_ns)
                if key in done:
                    self.summary.already_done += 1
                    self.summary.previously_matched += done[key]
                    continue
                todo.append(item)
            self._todo = todo
            self.summary.to_do = len(todo)
        return self.summary.to_do

    def start(self) -> int:
        """List the files and start the workers; returns how many results will follow.

        Iteration calls it if you do not. Call it before starting threads of your own
        (a progress display): with one thread alive, workers can be forked warm.
        """
        with paused_gc():  # all serial start-up: a full collection here delays every worker
            total = self.list_files()
            if self._backend_obj is None and any(isinstance(item, Entry) for item in self._todo or ()):
                if self._dask is None:  # Dask workers are elsewhere, with caches of their own
                    prepare(self._matcher, self._spec)
                self._backend_obj = self._backend()
        return total

    def __iter__(self) -> ScanRun:
        return self

    def __next__(self) -> ScanResult:
        if self._iter is None:
            self._iter = self._run()
        return next(self._iter)

    def __enter__(self) -> ScanRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and flush and close the report (results so far are kept)."""
        if self._iter is not None:
            self._iter.close()  # type: ignore[attr-defined]
        if self._backend_obj is not None:
            self._backend_obj.close()
            self._backend_obj = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open_writer(self) -> None:
        if self._report is None or self._fmt is None:
            return
        if hasattr(self._report, "write"):
            self._writer = ReportWriter.stream(self._report, self._fmt, self._settings)  # type: ignore[arg-type]
        else:
            self._writer = ReportWriter.open(self._report, self._fmt, self._settings, resume_from=self._state)  # type: ignore[arg-type]

    def _record(self, result: ScanResult) -> ScanResult:
        s = self.summary
        s.processed += 1
        if result.error_kind is not None:
            s.errors[result.error_kind] = s.errors.get(result.error_kind, 0) + 1
        else:
            s.hashed += 1
            if result.matches:
                s.matched_files += 1
                s.matches += len(result.matches)
        if self._writer is not None:
            self._writer.write_row(result.to_row(include_hashes=self._include_hashes))
        return result

    def _finish(self, raw: Raw) -> ScanResult:
        path, size, mtime_ns, digest, plain, kind, message = raw[:7]
        if kind is not None:
            return ScanResult(path, size, mtime_ns, digest, error_kind=kind, error=message)
        views = decode_views(plain)
        if len(raw) > 7:  # the spec asked for local features: the Matcher has a local stage
            matches = tuple(self._matcher.match_with_local(views, decode_local(raw[7])))  # type: ignore[attr-defined]
        else:
            matches = tuple(self._matcher.match_views(views))
        own, quality = own_hashes(plain)
        return ScanResult(path, size, mtime_ns, digest, own, quality, matches)

    def _finish_chunk(self, raws: list[Raw]) -> Iterator[ScanResult]:
        """:meth:`_finish` for a chunk's replies, with one index search per algorithm
        for all its hashed files (``Matcher.match_batch``): per file, an index call and
        the hashes rebuilt as Hash objects cost the scanning process ~0.2 ms, CPU the
        workers need. Files with local features and errors take :meth:`_finish`."""
        batch = getattr(self._matcher, "match_batch", None)
        plain = [i for i, raw in enumerate(raws) if raw[5] is None and len(raw) == 7]
        if batch is None or len(plain) < 2:
            yield from map(self._finish, raws)
            return
        uploads = [raws[i][4] for i in plain]
        matched = batch(len(plain), pack_views(uploads), lambda j: decode_views(uploads[j]))
        position = dict(zip(plain, range(len(plain))))
        for i, raw in enumerate(raws):
            if i not in position:
                yield self._finish(raw)
                continue
            path, size, mtime_ns, digest, views = raw[:5]
            own, quality = own_hashes(views)
            yield ScanResult(path, size, mtime_ns, digest, own, quality, tuple(next(matched)))

    def _run(self) -> Iterator[ScanResult]:
        self.start()
        todo = self._todo or []
        self._open_writer()
        try:
            files: list[tuple[str, int, int]] = []
            for item in todo:
                if isinstance(item, ScanResult):
                    yield self._record(item)  # walk errors: written like any other row
                else:
                    files.append((item.path, item.size, item.mtime_ns))
            if files:
                yield from self._hash_all(files)
        finally:
            self.summary.finished = time.monotonic()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def _backend(self) -> Backend:
        if self._dask is not None:
            return DaskBackend(self._spec, self._dask, max(1, self._workers), self._threshold)
        if self._workers == 0:
            return InProcess(self._spec)
        return ProcessPool(self._spec, self._workers, self._threshold, self._timeout)

    def _hash_all(self, files: list[tuple[str, int, int]]) -> Iterator[ScanResult]:
        backend = self._backend_obj or self._backend()
        self._backend_obj = None  # closed below
        try:
            # Each chunk is a round trip to a worker and back (the parent's main cost per
            # file after matching), so chunks are large while many files are left and
            # shrink towards the end, so no worker idles while another finishes a big one.
            # A kill loses at most the chunks in flight (resume redoes them).
            largest = 128 if isinstance(backend, DaskBackend) else 64
            if self._chunk_size is not None:
                outcomes = schedule_chunks(files, backend, self._chunk_size)
            else:
                outcomes = schedule_chunks(guided_chunks(files, largest, max(1, backend.capacity)), backend)
            for outcome in outcomes:
                if isinstance(outcome, Failed):
                    yield self._record(ScanResult(
                        outcome.path, outcome.size, outcome.mtime_ns, error_kind=outcome.kind, error=outcome.message
                    ))
                else:
                    yield from map(self._record, self._finish_chunk(outcome[1]))
        finally:
            backend.close()


def scan(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    matcher: MatcherLike,
    *,
    workers: int | None = None,
    report: str | os.PathLike[str] | IO[str] | None = None,
    report_format: str | None = None,
    resume: bool = False,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    follow_symlinks: bool = False,
    include_hashes: bool = True,
    reference: str | None = None,
    dask: str | None = None,
    chunk_size: int | None = None,
    mmap_threshold: int | None = DEFAULT_MMAP_THRESHOLD,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> ScanRun:
    """Scan files and folders (recursively) against ``matcher``; iterate to get results.

    ``workers`` processes hash (default: every core; 0 hashes in this process). With
    ``report`` (a path, or an open text stream) each result is also written as a row,
    JSON Lines or CSV (``report_format``, else by the file's extension) and flushed at once;
    ``resume=True`` skips the files the report already holds (same path, size and mtime)
    and appends the rest. ``include``/``exclude`` are glob patterns matched against the
    file name, or against the path below the scan root when they contain a ``/``;
    ``exclude`` also prunes folders; files named in ``paths`` are always scanned. Symlinks found while walking are skipped unless
    ``follow_symlinks``. ``reference`` names the reference data (the CLI passes the store)
    and is checked on resume. ``dask`` is a scheduler address or ``"local"`` for a
    LocalCluster of ``workers`` processes (needs ``hashmatch[dask]``). Each worker sets
    glibc's mmap threshold to ``mmap_threshold`` (None leaves it alone). A worker process
    that spends more than ``timeout`` seconds on one file (a decoder that hangs) is
    stopped and the file reported with ``error_kind="timeout"``; None waits forever
    (with ``workers=0`` or on Dask there is no worker process of the scan's to stop).

    Files are hashed as ``matcher.spec`` says (algorithms, views, limits, decoding), so
    a file gets the verdict ``matcher.match`` would give it. A matcher with nothing to
    match against (no references) raises :class:`~hashmatch.errors.UsageError`.

    Paths are made absolute (not resolved), so reports name files the same way from any
    working directory. Results come in completion order, not listing order.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    # Absolute paths: rows name files unambiguously and resume works from any directory.
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    if not roots:
        raise UsageError("scan needs at least one path")
    spec = matcher.spec
    if getattr(matcher, "has_local_stage", False):
        spec = dataclasses.replace(spec, local_features=True)
    if not spec.algorithms:
        raise UsageError("nothing to match against: the references hold no hashes of an algorithm hashmatch computes")
    for name in spec.algorithms:
        get_algorithm(name)
    if workers is None:
        workers = available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UsageError(f"workers must be a non-negative integer, got {workers!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise UsageError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise UsageError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return ScanRun(
        roots,
        matcher,
        spec=spec,
        workers=workers,
        include=tuple(include),
        exclude=tuple(exclude),
        follow_symlinks=follow_symlinks,
        report=report,
        report_format=report_format,
        resume=resume,
        include_hashes=include_hashes,
        reference=reference,
        dask=dask,
        chunk_size=chunk_size,
        mmap_threshold=mmap_threshold,
        timeout=None if timeout is None else float(timeout),
    )

"""``hashmatch scan``: walk folders, hash in parallel, match, stream a resumable report.

Exit codes follow grep: 1 when any file matched (in this run or the run it resumed),
0 when none did, 2 on a usage error, a missing or bad store, or a report that cannot be
resumed. Files that cannot be read are rows with an error and counts in the summary;
they do not change the exit code, so one bad upload cannot hide a match from a script.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import IO, Any

import click

from .._loading import DEFAULT_LIMITS, ImageLimits
from .._scan import DEFAULT_TIMEOUT, ScanRun, ScanSummary, paused_gc, scan
from ._match import open_matcher
from ._options import (
    EXIT_FOUND,
    EXIT_OK,
    algorithms_option,
    dihedral_option,
    follow_symlinks_option,
    store_option,
    workers_option,
)


class _Progress:
    """A tqdm bar on a terminal, a plain line every ``every`` seconds otherwise, or nothing."""

    def __init__(self, total: int, summary: ScanSummary, *, quiet: bool, every: float, stream: IO[str]) -> None:
        self._summary = summary
        self._total = total
        self._every = every
        self._stream = stream
        self._last = time.monotonic()
        self._bar: Any = None
        self._quiet = quiet
        if not quiet and stream.isatty():
            # Imported here: 25-40 ms of CPU on the scan's serial start-up, wasted on the
            # runs (scripts, CI, redirected output) that never draw a bar.
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", file=stream, dynamic_ncols=True, mininterval=0.5, smoothing=0.1)

    def update(self) -> None:
        if self._quiet:
            return
        s = self._summary
        if self._bar is not None:
            self._bar.update(1)
            now = time.monotonic()
            if now - self._last >= 0.5:
                self._last = now
                self._bar.set_postfix(matched=s.matched_files, errors=s.error_count, refresh=False)
            return
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._stream.write(self._line() + "\n")
            self._stream.flush()

    def _line(self) -> str:
        s = self._summary
        rate = s.files_per_second
        left = (self._total - s.processed) / rate if rate > 0 else float("nan")
        pct = 100.0 * s.processed / self._total if self._total else 100.0
        return (
            f"scan: {s.processed}/{self._total} files ({pct:.0f}%), {rate:.1f} files/s, "
            f"{s.matched_files} matched, {s.error_count} errors, ~{left:.0f} s left"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix(matched=self._summary.matched_files, errors=self._summary.error_count)
            self._bar.close()


def _summary_text(s: ScanSummary, run: ScanRun) -> str:
    lines = [
        f"files seen: {s.listed}" + (f" ({s.already_done} already in the report, {s.previously_matched} of them matched)" if s.already_done else ""),
        f"processed: {s.processed} in {s.elapsed:.1f} s ({s.files_per_second:.1f} files/s)",
        f"images hashed: {s.hashed}",
        f"matched: {s.matched_files} files ({s.matches} matches)",
        f"errors: {s.error_count}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) + ")" if s.errors else ""),
    ]
    if s.skipped:
        lines.append("skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items())))
    state = run.report_state
    if state is not None and state.dropped_partial_row:
        lines.append("resume: dropped a partial last row left by the interrupted run")
    return "\n".join("scan: " + line for line in lines)


@click.command("scan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@store_option(must_exist=True)
@algorithms_option(default=None, help="Comma-separated algorithms (default: those the store has).")
@workers_option(minimum=0, default=None, help="Worker processes (0: hash in this process).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Report file (.jsonl or .csv); default: JSON Lines on stdout.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None, help="Report format (default: by --out's extension).")
@click.option("--resume", is_flag=True, help="Skip files already in --out (same path, size, mtime) and append the rest.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only files whose name (or path below the root, if it has a /) matches. Repeatable.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip matching files and folders. Repeatable.")
@follow_symlinks_option()
@click.option("--no-hashes", is_flag=True, help="Leave each file's own hashes out of the report.")
@dihedral_option(default=True)
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_LIMITS.max_pixels, show_default=True)
@click.option("--max-file-size", type=click.IntRange(min=1), default=DEFAULT_LIMITS.max_file_bytes, show_default=True, help="Bytes.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds one file may take before its worker is stopped and the file reported as a timeout.")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS|local", help="Hash on a Dask cluster (needs hashmatch[dask]).")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary.")
@click.option("--progress-every", type=click.FloatRange(min=0.1), default=10.0, show_default=True, help="Seconds between progress lines when not on a terminal.")
def scan_command(
    paths: tuple[str, ...],
    store_path: str,
    algorithms: tuple[str, ...] | None,
    workers: int | None,
    out: str | None,
    fmt: str | None,
    resume: bool,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    follow_symlinks: bool,
    no_hashes: bool,
    dihedral: bool,
    max_pixels: int,
    max_file_size: int,
    timeout: float,
    dask_address: str | None,
    quiet: bool,
    progress_every: float,
) -> int:
    """Scan files and folders against a reference store; one report row per file.

    Exit code 1 when anything matched (including rows of a resumed run), 0 when nothing
    did, 2 on error. Unreadable files are reported and counted, not fatal.
    """
    if resume and out is None:
        raise click.UsageError("--resume needs --out (the report to resume)")
    limits = ImageLimits(max_pixels=max_pixels, max_file_bytes=max_file_size)
    report: Any = out if out is not None else sys.stdout
    with contextlib.ExitStack() as stack:
        with paused_gc():  # numba's import and the indexes: serial start-up (ScanRun.start pauses the rest)
            matcher = stack.enter_context(open_matcher(store_path, algorithms, dihedral=dihedral, limits=limits))
        return _run(
            scan(
                list(paths),
                matcher,
                workers=workers,
                report=report,
                report_format=fmt,
                resume=resume,
                include=include,
                exclude=exclude,
                follow_symlinks=follow_symlinks,
                include_hashes=not no_hashes,
                reference=os.path.abspath(store_path),
                dask=dask_address,
                timeout=timeout,
            ),
            quiet,
            progress_every,
        )


def _run(run: ScanRun, quiet: bool, progress_every: float) -> int:
    err = sys.stderr
    with run:
        total = run.start()  # before the progress bar's thread exists
        progress = _Progress(total, run.summary, quiet=quiet, every=progress_every, stream=err)
        try:
            for _ in run:
                progress.update()
        finally:
            progress.close()
    if not quiet:
        err.write(_summary_text(run.summary, run) + "\n")
    return EXIT_FOUND if run.summary.any_matched else EXIT_OK

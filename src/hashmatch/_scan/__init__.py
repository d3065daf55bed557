"""Scan folders: hash every file in worker processes, match in this process, report as it goes.

:func:`scan` lists the files first (so progress knows the total and resume can skip
what a report already holds), then hands them out in small chunks to a pool of worker
processes, or to a Dask cluster. Workers only read and hash: they never see the
reference hashes, which stay in this process with the matcher (matching one image takes
microseconds, hashing it milliseconds). Each result is matched, yielded and, with a
report, written and flushed at once, so a killed run loses at most the chunks in flight.

One bad file never stops a scan: it becomes a result with ``error_kind`` set (see
:data:`ERROR_KINDS`).
"""

from __future__ import annotations

import ctypes
import fnmatch
import hashlib
import multiprocessing
import os
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import numpy as np
from PIL import UnidentifiedImageError

from .._report import ReportState, ReportWriter, detect_format, read_report
from ..errors import HashmatchError, ImageTooLargeError, MissingDependencyError, ReportFormatError
from ..hashers import HashResult, compute_hashes, compute_query_hashes, get_algorithm
from ..hashes import Hash
from .._loading import DEFAULT_LIMITS, ImageLimits

__all__ = ["ERROR_KINDS", "DEFAULT_MMAP_THRESHOLD", "ScanResult", "ScanRun", "ScanSummary", "scan"]

ERROR_KINDS: Mapping[str, str] = {
    "not_image": "not a recognised image format",
    "unreadable": "empty, truncated or undecodable image",
    "too_large": "over the file-size or pixel limit",
    "permission": "permission denied (file or folder)",
    "vanished": "listed, then gone before it was read",
    "not_regular": "not a regular file (FIFO, device, socket)",
    "symlink_loop": "a folder symlink leading back into its own path",
    "missing": "a path given to scan does not exist",
    "os_error": "any other operating-system error while reading",
    "worker_crashed": "the process hashing this file died (a decoder crash)",
    "internal_error": "an unexpected exception while hashing (a bug: please report)",
}
"""Every ``error_kind`` a :class:`ScanResult` can carry, with what it means."""

DEFAULT_MMAP_THRESHOLD = 128 * 1024 * 1024
"""glibc's mmap threshold for workers: large pixel buffers then come from the heap and are
reused, instead of being freshly mapped (and page-faulted) for every image."""

_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1  # from glibc's <malloc.h>
_PR_SET_PDEATHSIG = 1  # from Linux's <sys/prctl.h>
_STARTUP_CRASHES = 3  # this many files crashing workers before any success: workers cannot start


# Key suffix, in a worker's reply, of the hashes of the border-trimmed view.
_TRIMMED = "#trimmed"


class MatcherLike(Protocol):
    """What :func:`scan` needs from a matcher (:class:`hashmatch.Matcher` has it)."""

    @property
    def algorithms(self) -> tuple[str, ...]: ...

    @property
    def dihedral(self) -> bool: ...

    def match_hashes(self, results: Mapping[str, tuple[HashResult, ...]]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One file's outcome: its identity, its own hashes, its matches, or why it failed.

    ``hashes`` maps each algorithm to the hex of the file as stored (the dihedral
    variants used for matching are not kept). ``matches`` are the matcher's records,
    nearest first. ``error_kind`` is a key of :data:`ERROR_KINDS` or None.
    """

    path: str
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    hashes: Mapping[str, str] = field(default_factory=dict)
    quality: Mapping[str, int] = field(default_factory=dict)
    matches: tuple[Any, ...] = ()
    error_kind: str | None = None
    error: str | None = None

    @property
    def matched(self) -> bool:
        return bool(self.matches)

    @property
    def status(self) -> str:
        """``"error"``, ``"matched"`` or ``"clean"``."""
        if self.error_kind is not None:
            return "error"
        return "matched" if self.matches else "clean"

    def to_row(self, *, include_hashes: bool = True) -> dict[str, Any]:
        """The report row: plain JSON-ready values, reference hashes never included."""
        mtime = None
        if self.mtime_ns is not None:
            mtime = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.mtime_ns / 1e9))
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "mtime": mtime,
            "sha256": self.sha256,
            "status": self.status,
            "hashes": dict(self.hashes) if include_hashes and self.hashes else None,
            "quality": dict(self.quality) if include_hashes and self.quality else None,
            "matches": [_match_dict(m) for m in self.matches],
            "error_kind": self.error_kind,
            "error": self.error,
        }


def _match_dict(match: Any) -> dict[str, Any]:
    to_dict = getattr(match, "to_dict", None)
    return dict(to_dict()) if callable(to_dict) else dict(match)


@dataclass
class ScanSummary:
    """Counts kept up to date while a scan runs; final once iteration ends."""

    listed: int = 0
    """Files found by walking (including those a resumed report already holds)."""
    already_done: int = 0
    """Files skipped because the report already holds them (same path, size, mtime)."""
    previously_matched: int = 0
    """Files among ``already_done`` that matched in the earlier run."""
    to_do: int = 0
    """Files this run will process: ``listed - already_done`` plus walk errors."""
    processed: int = 0
    hashed: int = 0
    matched_files: int = 0
    matches: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    """Not scanned and not in the report: ``symlink`` (not followed), ``special`` files."""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def elapsed(self) -> float:
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    @property
    def files_per_second(self) -> float:
        elapsed = self.elapsed
        return self.processed / elapsed if elapsed > 0 else 0.0

    @property
    def any_matched(self) -> bool:
        """Whether this run or the run it resumed found a match (the CLI's exit code 1)."""
        return self.matched_files + self.previously_matched > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "already_done": self.already_done,
            "previously_matched": self.previously_matched,
            "processed": self.processed,
            "hashed": self.hashed,
            "matched_files": self.matched_files,
            "matches": self.matches,
            "errors": dict(sorted(self.errors.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "elapsed_seconds": round(self.elapsed, 3),
            "files_per_second": round(self.files_per_second, 2),
        }


# -- walking ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    path: str
    size: int
    mtime_ns: int


def _kind_of_os_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    if isinstance(exc, PermissionError):
        return "permission"
    if exc.errno == 40:  # ELOOP on Linux: too many levels of symbolic links
        return "symlink_loop"
    return "os_error"


def _os_message(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _matches_any(name: str, relative: str, patterns: Sequence[str]) -> bool:
    # A pattern with a slash is matched against the path below the scan root, else the name.
    return any(fnmatch.fnmatchcase(relative if "/" in p else name, p) for p in patterns)


def _walk(
    roots: Sequence[str],
    include: Sequence[str],
    exclude: Sequence[str],
    follow_symlinks: bool,
    summary: ScanSummary,
) -> Iterator[_Entry | ScanResult]:
    """Files in a stable order (sorted names, depth first), or error results for folders."""
    for root in roots:
        try:
            st = os.stat(root)  # a root given by the user is followed even when it is a symlink
        except OSError as exc:
            kind = "missing" if isinstance(exc, FileNotFoundError) else _kind_of_os_error(exc)
            yield ScanResult(root, error_kind=kind, error=_os_message(exc))
            continue
        if stat.S_ISREG(st.st_mode):
            yield _Entry(root, st.st_size, st.st_mtime_ns)
            continue
        if not stat.S_ISDIR(st.st_mode):
            summary.skipped["special"] = summary.skipped.get("special", 0) + 1
            continue
        # Folders on the current path, by identity: a symlink back into one of them is a loop.
        yield from _walk_dir(root, "", (st.st_dev, st.st_ino), {(st.st_dev, st.st_ino)}, include, exclude, follow_symlinks, summary)


def _walk_dir(
    folder: str,
    relative: str,
    ident: tuple[int, int],
    ancestors: set[tuple[int, int]],
    include: Sequence[str],
    exclude: Sequence[str],
    follow_symlinks: bool,
    summary: ScanSummary,
) -> Iterator[_Entry | ScanResult]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield ScanResult(folder, error_kind=_kind_of_os_error(exc), error=f"cannot list folder: {_os_message(exc)}")
        return
    for entry in entries:
        rel = f"{relative}/{entry.name}" if relative else entry.name
        if exclude and _matches_any(entry.name, rel, exclude):
            continue
        try:
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                summary.skipped["symlink"] = summary.skipped.get("symlink", 0) + 1
                continue
            st = entry.stat(follow_symlinks=True)
        except OSError as exc:
            kind = _kind_of_os_error(exc)
            if kind == "vanished" and entry.is_symlink():
                summary.skipped["broken_symlink"] = summary.skipped.get("broken_symlink", 0) + 1
                continue
            yield ScanResult(entry.path, error_kind=kind, error=_os_message(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            child = (st.st_dev, st.st_ino)
            if child in ancestors:
                yield ScanResult(entry.path, error_kind="symlink_loop", error="folder symlink leads back into its own path")
                continue
            ancestors.add(child)
            yield from _walk_dir(entry.path, rel, child, ancestors, include, exclude, follow_symlinks, summary)
            ancestors.discard(child)
        elif stat.S_ISREG(st.st_mode):
            if include and not _matches_any(entry.name, rel, include):
                continue
            yield _Entry(entry.path, st.st_size, st.st_mtime_ns)
        else:
            summary.skipped["special"] = summary.skipped.get("special", 0) + 1


# -- workers ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    """What a worker needs to hash a file: no reference data, only settings."""

    algorithms: tuple[str, ...]
    dihedral: bool
    limits: ImageLimits
    fast: bool
    trim_borders: bool = False


# Plain tuples cross process boundaries: (path, size, mtime_ns, sha256, hashes, kind, message)
# where hashes maps an algorithm to [(value, bits, quality), ...] (original first).
_Raw = tuple[str, "int | None", "int | None", "str | None", "dict[str, list[tuple[int, int, int | None]]]", "str | None", "str | None"]


def _pin_malloc(threshold: int | None = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold (and trim threshold) in this process.

    Blocks under the mmap threshold come from the heap; the trim threshold, set to twice
    it as glibc's own dynamic rule does, keeps a freed pixel buffer at the top of the heap
    for the next image instead of handing it back to the kernel. With only the mmap
    threshold pinned (what ``MALLOC_MMAP_THRESHOLD_`` alone does) every full decode
    page-faults its buffer in again: measured 160 minor faults per 1024x768 image against
    1 with both. Returns whether it took effect (False off glibc). Also exported to the
    environment, so processes this one starts get it from their first allocation.
    """
    if threshold is None:
        return False
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(threshold)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(2 * threshold)
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mmap_ok = mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(threshold))
    trim_ok = mallopt(ctypes.c_int(_M_TRIM_THRESHOLD), ctypes.c_int(2 * threshold))
    return bool(mmap_ok and trim_ok)


def _strip_source(message: str) -> str:
    return message.removeprefix("<bytes>: ")


def _hash_one(path: str, size: int | None, mtime_ns: int | None, job: _Job) -> _Raw:
    try:
        # O_NONBLOCK: a file swapped for a FIFO after listing must not hang the worker.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return (path, size, mtime_ns, None, {}, _kind_of_os_error(exc), _os_message(exc))
    try:
        st = os.fstat(fd)
        size, mtime_ns = st.st_size, st.st_mtime_ns
        if not stat.S_ISREG(st.st_mode):
            return (path, size, mtime_ns, None, {}, "not_regular", "not a regular file")
        if st.st_size > job.limits.max_file_bytes:
            message = f"file is {st.st_size} bytes, over the limit of {job.limits.max_file_bytes}"
            return (path, size, mtime_ns, None, {}, "too_large", message)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(job.limits.max_file_bytes + 1)
    except OSError as exc:
        return (path, size, mtime_ns, None, {}, _kind_of_os_error(exc), _os_message(exc))
    finally:
        os.close(fd)
    digest = hashlib.sha256(data).hexdigest()
    try:
        views = compute_query_hashes(
            data, job.algorithms, fast=job.fast, limits=job.limits, dihedral=job.dihedral,
            trim_borders=job.trim_borders,
        )
    except ImageTooLargeError as exc:
        return (path, size, mtime_ns, digest, {}, "too_large", _strip_source(str(exc)))
    except HashmatchError as exc:
        kind = "not_image" if isinstance(exc.__cause__, UnidentifiedImageError) else "unreadable"
        return (path, size, mtime_ns, digest, {}, kind, _strip_source(str(exc)))
    except Exception as exc:  # one odd file must not stop a scan; recorded as a bug to report
        return (path, size, mtime_ns, digest, {}, "internal_error", f"{type(exc).__name__}: {exc}")
    hashes = {
        name + suffix: [(r.hash.value, r.hash.bits, r.quality) for r in variants]
        for view, suffix in zip(views, ("", _TRIMMED))
        for name, variants in view.items()
    }
    return (path, size, mtime_ns, digest, hashes, None, None)


def _hash_chunk(files: list[tuple[str, int, int]], job: _Job) -> list[_Raw]:
    return [_hash_one(path, size, mtime_ns, job) for path, size, mtime_ns in files]


def _worker_init(threshold: int | None, parent_pid: int | None) -> None:
    # Ctrl-C reaches the whole process group: the scan stops the pool itself, and a worker
    # interrupted mid-chunk must not turn its files into error rows that resume would skip.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _pin_malloc(threshold)
    if parent_pid is not None:
        _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """Make a forked worker exit when the scanning process dies, even by ``kill -9``.

    A forked worker holds copies of the pool's pipe ends, so it never reads EOF when the
    parent is gone and would wait forever. Linux kills it with its parent (PR_SET_PDEATHSIG);
    elsewhere a thread watches for the worker being re-parented.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        armed = prctl(ctypes.c_int(_PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL)) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _dask_worker_init(threshold: int | None, job: _Job) -> bool:
    pinned = _pin_malloc(threshold)
    _warm_up(job)  # while the client lists files, not on the first chunk
    return pinned


# -- backends ---------------------------------------------------------------------------

_Chunk = list[tuple[str, int, int]]


class _CrashedChunk(Exception):
    """A chunk's worker died; its files need isolating."""


class _InProcess:
    """workers=0: hash in this process (debugging, tiny scans, tests)."""

    capacity = 1

    def __init__(self, job: _Job) -> None:
        self._job = job
        self._done: deque[tuple[_Chunk, list[_Raw]]] = deque()

    def submit(self, chunk: _Chunk) -> None:
        self._done.append((chunk, _hash_chunk(chunk, self._job)))

    def next_done(self) -> tuple[_Chunk, list[_Raw] | BaseException]:
        return self._done.popleft()

    def restart(self) -> None:
        pass

    def close(self) -> None:
        pass


def _warm_up(job: _Job) -> None:
    """Load the hashing kernels (numba caches, lazy imports) here, once, before forking."""
    key = (job.algorithms, job.dihedral)
    if key in _WARMED:
        return
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[16:48, 8:40] = 200  # not flat, so every code path runs
    compute_hashes(pixels, job.algorithms, fast=job.fast, dihedral=job.dihedral)
    _WARMED.add(key)


_WARMED: set[tuple[tuple[str, ...], bool]] = set()


def _start_method() -> str:
    # fork when this process runs a single thread: workers inherit its imported and warmed-up
    # modules, saving a fresh interpreter and a numba cache load per worker (~2 s per scan
    # here). With other threads alive fork can deadlock on their locks: use a forkserver.
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "forkserver"


class _ProcessPool:
    """A pool of worker processes (forked when safe, else from a forkserver), malloc pinned."""

    def __init__(self, job: _Job, workers: int, mmap_threshold: int | None) -> None:
        self._job = job
        self._workers = workers
        self._threshold = mmap_threshold
        self.capacity = workers * 3
        self._futures: dict[Future[list[_Raw]], _Chunk] = {}
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        method = _start_method()
        ctx = multiprocessing.get_context(method)
        parent_pid = None
        if method == "fork":
            _warm_up(self._job)
            parent_pid = os.getpid()
        else:  # the server imports hashmatch once; each worker it forks starts from there
            ctx.set_forkserver_preload(["hashmatch._scan"])
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(self._threshold, parent_pid),
        )

    def submit(self, chunk: _Chunk) -> None:
        try:
            future = self._pool.submit(_hash_chunk, chunk, self._job)
        except BrokenProcessPool:
            self.restart()
            future = self._pool.submit(_hash_chunk, chunk, self._job)
        self._futures[future] = chunk

    def next_done(self) -> tuple[_Chunk, list[_Raw] | BaseException]:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = next(iter(done))
        chunk = self._futures.pop(future)
        exc = future.exception()
        if isinstance(exc, BrokenProcessPool):
            return chunk, _CrashedChunk(str(exc))
        return chunk, exc if exc is not None else future.result()

    def restart(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._start()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _DaskBackend:
    """Chunks go to a Dask cluster; only settings and paths travel, never reference hashes."""

    def __init__(self, job: _Job, address: str, workers: int, mmap_threshold: int | None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster, as_completed
        except ImportError as exc:
            raise MissingDependencyError(
                "scanning on Dask needs the dask extra: pip install 'hashmatch[dask]'"
            ) from exc
        self._job = job
        self._cluster = None
        if address == "local":
            # One single-threaded process per worker, like the pool. The statistical profiler
            # (a stack sample every 10 ms) costs CPU that the hashing needs on small machines.
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                self._cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(address, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise HashmatchError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc
        self._client.run(_dask_worker_init, mmap_threshold, job)
        n_workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        self.capacity = n_workers * 3
        self._as_completed = as_completed()
        self._futures: dict[str, _Chunk] = {}

    def submit(self, chunk: _Chunk) -> None:
        future = self._client.submit(_hash_chunk, chunk, self._job, pure=False)
        self._futures[future.key] = chunk
        self._as_completed.add(future)

    def next_done(self) -> tuple[_Chunk, list[_Raw] | BaseException]:
        future = next(self._as_completed)
        chunk = self._futures.pop(future.key)
        try:
            return chunk, future.result()
        except Exception as exc:  # the task's own error, or the cluster's
            if type(exc).__name__ == "KilledWorker":  # its worker died more than Dask retries
                return chunk, _CrashedChunk(str(exc))
            return chunk, exc

    def restart(self) -> None:
        pass  # Dask replaces dead workers itself

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


# -- the run ----------------------------------------------------------------------------


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
        job: _Job,
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
    ) -> None:
        self.summary = ScanSummary()
        self._roots = roots
        self._matcher = matcher
        self._job = job
        self._workers = workers
        self._include, self._exclude = include, exclude
        self._follow = follow_symlinks
        self._include_hashes = include_hashes
        self._dask = dask
        self._chunk_size = chunk_size
        self._threshold = mmap_threshold
        self._todo: list[_Entry | ScanResult] | None = None
        self._writer: ReportWriter | None = None
        self._state: ReportState | None = None
        self._iter: Iterator[ScanResult] | None = None
        self._any_hashed = False
        self._backend_obj: _InProcess | _ProcessPool | _DaskBackend | None = None
        self._settings = {
            "algorithms": list(job.algorithms),
            "dihedral": job.dihedral,
            "trim_borders": job.trim_borders,
            "fast": job.fast,
            "hashes": include_hashes,
            "max_pixels": job.limits.max_pixels,
            "max_file_bytes": job.limits.max_file_bytes,
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
            todo: list[_Entry | ScanResult] = []
            for item in _walk(self._roots, self._include, self._exclude, self._follow, self.summary):
                key = (item.path, item.size, item.mtime_ns)
                if isinstance(item, _Entry):
                    self.summary.listed += 1
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
        total = self.list_files()
        if self._backend_obj is None and any(isinstance(item, _Entry) for item in self._todo or ()):
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

    def _finish(self, chunk_file: tuple[str, int, int], raw: _Raw) -> ScanResult:
        path, size, mtime_ns, digest, hashes, kind, message = raw
        if kind is not None:
            return ScanResult(path, size, mtime_ns, digest, error_kind=kind, error=message)
        views: list[dict[str, tuple[HashResult, ...]]] = [{}, {}]
        for key, variants in hashes.items():
            trimmed = key.endswith(_TRIMMED)
            name = key[: -len(_TRIMMED)] if trimmed else key
            views[trimmed][name] = tuple(HashResult(Hash(value, name, bits), quality) for value, bits, quality in variants)
        results = views[0]
        if views[1]:
            matches = tuple(self._matcher.match_views(views))  # type: ignore[attr-defined]
        else:
            matches = tuple(self._matcher.match_hashes(results))
        own = {name: variants[0].hash.hex() for name, variants in results.items()}
        quality = {name: variants[0].quality for name, variants in results.items() if variants[0].quality is not None}
        return ScanResult(path, size, mtime_ns, digest, own, quality, matches)

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

    def _backend(self) -> _InProcess | _ProcessPool | _DaskBackend:
        if self._dask is not None:
            return _DaskBackend(self._job, self._dask, max(1, self._workers), self._threshold)
        if self._workers == 0:
            return _InProcess(self._job)
        return _ProcessPool(self._job, self._workers, self._threshold)

    def _hash_all(self, files: list[tuple[str, int, int]]) -> Iterator[ScanResult]:
        backend = self._backend_obj or self._backend()
        self._backend_obj = None  # closed below
        try:
            # Small chunks stream results and bound what a kill loses; on Dask, where each task
            # costs the scheduler a round trip, larger ones keep that overhead small.
            largest = 64 if isinstance(backend, _DaskBackend) else 16
            size = self._chunk_size or max(1, min(largest, len(files) // (max(1, backend.capacity) * 4)))
            chunks = deque(files[i : i + size] for i in range(0, len(files), size))
            suspects: deque[_Chunk] = deque()  # files of crashed chunks, retried one at a time
            isolated = False  # the single chunk in flight is a suspect running alone
            crashed: list[ScanResult] = []  # culprits, recorded once some worker has succeeded
            in_flight = 0
            while chunks or suspects or in_flight:
                if suspects:
                    if in_flight == 0:
                        backend.submit(suspects.popleft())
                        in_flight, isolated = 1, True
                else:
                    isolated = False
                    while chunks and in_flight < backend.capacity:
                        backend.submit(chunks.popleft())
                        in_flight += 1
                chunk, outcome = backend.next_done()
                in_flight -= 1
                if isinstance(outcome, _CrashedChunk):
                    if isolated:  # it crashed its worker alone: this file is the culprit
                        path, fsize, mtime_ns = chunk[0]
                        message = "the worker process died while hashing this file"
                        crashed.append(ScanResult(path, fsize, mtime_ns, error_kind="worker_crashed", error=message))
                        if not self._any_hashed and len(crashed) >= _STARTUP_CRASHES:
                            # Workers die before hashing anything: a start-up failure, not bad files.
                            raise HashmatchError(
                                "scan worker processes die at start-up; when calling hashmatch.scan "
                                "from a script, run it under `if __name__ == '__main__':` "
                                f"(first error: {outcome})"
                            )
                        if self._any_hashed:
                            for result in crashed:
                                yield self._record(result)
                            crashed.clear()
                    else:  # every chunk in flight failed with it; find the culprit one by one
                        suspects.extend([item] for item in chunk)
                    if in_flight == 0:
                        backend.restart()
                    continue
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, Exception):  # an interrupt, not a fault of these files
                        raise outcome
                    message = f"{type(outcome).__name__}: {outcome}"
                    for path, fsize, mtime_ns in chunk:
                        yield self._record(ScanResult(path, fsize, mtime_ns, error_kind="internal_error", error=message))
                    continue
                self._any_hashed = True
                for result in crashed:  # confirmed: workers do run, these files killed theirs
                    yield self._record(result)
                crashed.clear()
                for item, raw in zip(chunk, outcome):
                    yield self._record(self._finish(item, raw))
            for result in crashed:  # too few to call it a start-up failure
                yield self._record(result)
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
    limits: ImageLimits = DEFAULT_LIMITS,
    fast: bool = True,
    reference: str | None = None,
    dask: str | None = None,
    chunk_size: int | None = None,
    mmap_threshold: int | None = DEFAULT_MMAP_THRESHOLD,
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
    glibc's mmap threshold to ``mmap_threshold`` (None leaves it alone).

    Paths are made absolute (not resolved), so reports name files the same way from any
    working directory. Results come in completion order, not listing order.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    # Absolute paths: rows name files unambiguously and resume works from any directory.
    roots = [os.path.abspath(os.fspath(p)) for p in paths]
    if not roots:
        raise ValueError("scan needs at least one path")
    algorithms = tuple(matcher.algorithms)
    for name in algorithms:
        get_algorithm(name)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    # A matcher that takes a border-trimmed view (hashmatch.Matcher does) gets it here too.
    trim = bool(getattr(matcher, "trim_borders", False)) and hasattr(matcher, "match_views")
    job = _Job(algorithms, bool(matcher.dihedral), limits, bool(fast), trim)
    return ScanRun(
        roots,
        matcher,
        job=job,
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
    )

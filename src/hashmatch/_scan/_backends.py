"""Where a scan's chunks are hashed: in this process, a process pool, or a Dask cluster.

Every backend has the shape of :class:`Backend`: ``submit`` a chunk, take the next
finished one with ``next_done`` (its raw replies, an exception, or
:class:`CrashedChunk` when its worker died), ``restart`` after a crash, ``close``.
The scheduler (:mod:`._schedule`) takes any object of this shape.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from .._query import QuerySpec
from ..errors import HashmatchError, MissingDependencyError
from ._worker import Chunk, Raw, dask_worker_init, hash_chunk, warm_up, worker_init

__all__ = ["Backend", "CrashedChunk", "DaskBackend", "InProcess", "ProcessPool", "TimedOut"]


class CrashedChunk(Exception):
    """A chunk's worker died; its files need isolating."""


class TimedOut(CrashedChunk):
    """A chunk's worker was stopped because one file took longer than the per-file limit."""


class Backend(Protocol):
    """What the scheduler needs from a place that hashes chunks."""

    @property
    def capacity(self) -> int:
        """How many chunks may be in flight at once."""

    def submit(self, chunk: Chunk) -> None: ...

    def next_done(self) -> tuple[Chunk, list[Raw] | BaseException]: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class InProcess:
    """workers=0: hash in this process (debugging, tiny scans, tests)."""

    capacity = 1

    def __init__(self, spec: QuerySpec) -> None:
        self._spec = spec
        self._done: deque[tuple[Chunk, list[Raw]]] = deque()

    def submit(self, chunk: Chunk) -> None:
        self._done.append((chunk, hash_chunk(chunk, self._spec)))

    def next_done(self) -> tuple[Chunk, list[Raw] | BaseException]:
        return self._done.popleft()

    def restart(self) -> None:
        pass

    def close(self) -> None:
        pass


def _start_method() -> str:
    # fork when this process runs a single thread: workers inherit its imported and warmed-up
    # modules, saving a fresh interpreter and a numba cache load per worker (~2 s per scan
    # here). With other threads alive fork can deadlock on their locks: use a forkserver.
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "forkserver"


class ProcessPool:
    """A pool of worker processes (forked when safe, else from a forkserver), malloc pinned."""

    def __init__(self, spec: QuerySpec, workers: int, mmap_threshold: int | None, timeout: float | None = None) -> None:
        self._spec = spec
        self._workers = workers
        self._threshold = mmap_threshold
        self._timeout = timeout
        self.capacity = workers * 3
        self._futures: dict[Future[list[Raw]], Chunk] = {}
        self._timeouts: Any = None  # a shared counter the workers' watchdogs add to
        self._seen_timeouts = 0
        self._frozen = False
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        method = _start_method()
        ctx = multiprocessing.get_context(method)
        parent_pid = None
        if method == "fork":
            warm_up(self._spec)
            parent_pid = os.getpid()
            # numba's ~100k objects are there for good: a full collection walks them all
            # (30 ms, on the serial start-up when it falls before the fork), and in a
            # forked worker it would write to their pages (copy-on-write). Frozen while
            # the pool runs, as Python's gc docs advise before fork; unfrozen by close().
            # Not when the caller froze objects itself: unfreezing would undo that.
            if self._frozen or gc.get_freeze_count() == 0:
                gc.freeze()
                self._frozen = True
        else:  # the server imports hashmatch once; each worker it forks starts from there
            ctx.set_forkserver_preload(["hashmatch._scan"])
        if self._timeout is not None and self._timeouts is None:
            self._timeouts = ctx.Value("i", 0)
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=ctx,
            initializer=worker_init,
            initargs=(self._threshold, parent_pid, self._timeout, self._timeouts),
        )

    def submit(self, chunk: Chunk) -> None:
        try:
            future = self._pool.submit(hash_chunk, chunk, self._spec)
        except BrokenProcessPool:
            self.restart()
            future = self._pool.submit(hash_chunk, chunk, self._spec)
        self._futures[future] = chunk

    def next_done(self) -> tuple[Chunk, list[Raw] | BaseException]:
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = next(iter(done))
        chunk = self._futures.pop(future)
        exc = future.exception()
        if isinstance(exc, BrokenProcessPool):
            if self._timeouts is not None and self._timeouts.value > self._seen_timeouts:
                self._seen_timeouts = self._timeouts.value
                return chunk, TimedOut(f"a file took longer than {self._timeout:g} s")
            return chunk, CrashedChunk(str(exc))
        return chunk, exc if exc is not None else future.result()

    def restart(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._start()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._frozen:
            gc.unfreeze()  # back to the oldest generation: collectable again
            self._frozen = False


class DaskBackend:
    """Chunks go to a Dask cluster; only settings and paths travel, never reference hashes."""

    def __init__(self, spec: QuerySpec, address: str, workers: int, mmap_threshold: int | None) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster, as_completed
        except ImportError as exc:
            raise MissingDependencyError(
                "scanning on Dask needs the dask extra: pip install 'hashmatch[dask]'"
            ) from exc
        self._spec = spec
        self._cluster = None
        if address == "local":
            # One single-threaded process per worker, like the pool. The statistical profiler
            # (a stack sample every 10 ms) costs CPU that the hashing needs on small machines.
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                self._cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
                )
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(address, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise HashmatchError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc
        self._client.run(dask_worker_init, mmap_threshold, spec)
        n_workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        self.capacity = n_workers * 3
        self._as_completed = as_completed()
        self._futures: dict[str, Chunk] = {}

    def submit(self, chunk: Chunk) -> None:
        future = self._client.submit(hash_chunk, chunk, self._spec, pure=False)
        self._futures[future.key] = chunk
        self._as_completed.add(future)

    def next_done(self) -> tuple[Chunk, list[Raw] | BaseException]:
        future = next(self._as_completed)
        chunk = self._futures.pop(future.key)
        try:
            return chunk, future.result()
        except Exception as exc:  # the task's own error, or the cluster's
            if type(exc).__name__ == "KilledWorker":  # its worker died more than Dask retries
                return chunk, CrashedChunk(str(exc))
            return chunk, exc

    def restart(self) -> None:
        pass  # Dask replaces dead workers itself

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()

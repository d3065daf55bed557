"""What runs in a scan's worker processes: read a file, hash it with the spec, reply.

Workers never see reference hashes, only the :class:`~hashmatch.QuerySpec`; replies are
plain tuples (see :data:`Raw`) so they cross process and Dask boundaries cheaply. This
module also keeps workers well behaved: glibc's allocator pinned, Ctrl-C left to the
parent, and death with the parent even when it is killed with ``kill -9``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Union

import numpy as np
from PIL import UnidentifiedImageError

from .._jit import load_numba_runtime
from .._query import QuerySpec
from .._loading import printable_path, read_regular_file_stat
from ..errors import HashmatchError, ImageTooLargeError, UnreadableImageError
from ..hashers import HashResult
from ..hashers._api import View
from ..hashes import Hash
from ..local import LocalFeatures, extract_views
from ._walk import kind_of_os_error, os_message

__all__ = [
    "DEFAULT_MMAP_THRESHOLD",
    "available_cores",
    "Chunk",
    "Raw",
    "dask_worker_init",
    "decode_local",
    "decode_views",
    "die_with_parent",
    "encode_local",
    "hash_chunk",
    "own_hashes",
    "pack_views",
    "paused_gc",
    "pin_malloc",
    "warm_up",
    "worker_init",
]

DEFAULT_MMAP_THRESHOLD = 128 * 1024 * 1024
"""glibc's mmap threshold for workers: large pixel buffers then come from the heap and are
reused, instead of being freshly mapped (and page-faulted) for every image."""

_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD = -3, -1  # from glibc's <malloc.h>
_PR_SET_PDEATHSIG = 1  # from Linux's <sys/prctl.h>

Chunk = list[tuple[str, int, int]]
"""Files handed to a worker together: (path, size, mtime_ns) as listed."""

# One view's hashes as plain data: algorithm -> [(value, bits, quality), ...], original first.
_PlainView = dict[str, list[tuple[int, int, Union[int, None]]]]
Raw = tuple[Any, ...]
"""A worker's reply for one file: (path, size, mtime_ns, sha256, views, error kind, message),
and, when the spec asks for ``local_features``, the upload's local views as plain data
(:func:`encode_local`) as an eighth item."""
_PlainLocal = list[tuple[bytes, bytes, bytes, int, int, float]]


def available_cores() -> int:
    """The cores this process may run on (the default number of workers)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def pin_malloc(threshold: int | None = DEFAULT_MMAP_THRESHOLD) -> bool:
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


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No garbage collection inside the block; afterwards as before.

    For start-up: importing numba and loading kernels and indexes allocates ~100k objects
    that live as long as the process, and every full collection walks them all (30-45 ms
    each on the machine of notes/issue-14-scan.md). Two such collections fell on the
    serial start-up of a ``hashmatch scan``, before any worker ran. A forked pool then
    freezes them (:class:`~._backends.ProcessPool`), so later collections skip them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _strip_source(message: str, path: str = "") -> str:
    """A loader's message without the source it names (a report row carries the path)."""
    for prefix in ("<bytes>: ", f"{printable_path(path)}: cannot read file: ", f"{printable_path(path)}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _encode(views: list[View]) -> list[_PlainView]:
    return [{name: [(r.hash.value, r.hash.bits, r.quality) for r in results] for name, results in view.items()} for view in views]


def encode_local(views: list[Any]) -> _PlainLocal:
    """Local views (:class:`hashmatch.local.LocalFeatures`) as bytes and numbers."""
    return [(v.xy.tobytes(), v.level.tobytes(), v.descriptors.tobytes(), v.width, v.height, v.scale) for v in views]


def decode_local(plain: _PlainLocal) -> list[Any]:
    """The local views of a worker's reply, as :func:`encode_local` got them."""
    return [
        LocalFeatures(np.frombuffer(xy, np.float32).reshape(-1, 2), np.frombuffer(level, np.uint8),
                      np.frombuffer(desc, np.uint8).reshape(-1, 32), width, height, scale)
        for xy, level, desc, width, height, scale in plain
    ]


def decode_views(plain: list[_PlainView]) -> list[View]:
    """The views of a worker's reply as :meth:`QuerySpec.hash` gave them."""
    return [
        {name: tuple(HashResult(Hash(value, name, bits), quality) for value, bits, quality in results) for name, results in view.items()}
        for view in plain
    ]


def pack_views(uploads: list[list[_PlainView]]) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Every hash of the uploads' views (each as a worker's reply holds them) packed per
    algorithm and length for :meth:`hashmatch.Matcher.match_batch`: ``(algorithm, bits,
    words, owner)``, ``owner`` the upload's position in ``uploads``. No Hash objects:
    building and validating one per variant cost the scanning process more than
    matching a file did."""
    values: dict[tuple[str, int], list[int]] = {}
    owners: dict[tuple[str, int], list[int]] = {}
    for i, plain in enumerate(uploads):
        for view in plain:
            for name, results in view.items():
                if not results:
                    continue
                vals, lengths, _ = zip(*results)  # a view's variants, one list per field
                if lengths.count(lengths[0]) == len(lengths):  # always, for a spec's own hashes
                    key = (name, lengths[0])
                    values.setdefault(key, []).extend(vals)
                    owners.setdefault(key, []).extend([i] * len(vals))
                    continue
                for value, bits in zip(vals, lengths):
                    values.setdefault((name, bits), []).append(value)
                    owners.setdefault((name, bits), []).append(i)
    packed = []
    for (name, bits), vals in values.items():
        nwords = (bits + 63) // 64
        if nwords == 1:
            words = np.array(vals, dtype=np.uint64).reshape(-1, 1)
        else:  # HashBatch's layout: word 0 holds the most significant bits
            raw = b"".join(v.to_bytes(nwords * 8, "big") for v in vals)
            words = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, nwords)
        packed.append((name, bits, words, np.array(owners[(name, bits)], dtype=np.intp)))
    return packed


def own_hashes(plain: list[_PlainView]) -> tuple[dict[str, str], dict[str, int]]:
    """The hex and quality of the upload as it is (first view, first variant) per algorithm:
    what a report row shows."""
    first = plain[0]
    own = {name: Hash(results[0][0], name, results[0][1]).hex() for name, results in first.items()}
    quality = {name: results[0][2] for name, results in first.items() if results[0][2] is not None}
    return own, quality


def _hash_one(path: str, size: int | None, mtime_ns: int | None, spec: QuerySpec) -> Raw:
    try:
        data, st = read_regular_file_stat(path, spec.limits.max_file_bytes)
    except ImageTooLargeError as exc:
        return (path, size, mtime_ns, None, [], "too_large", _strip_source(str(exc), path))
    except UnreadableImageError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError):
            return (path, size, mtime_ns, None, [], kind_of_os_error(cause), os_message(cause))
        kind = "not_regular" if cause is None else "unreadable"
        return (path, size, mtime_ns, None, [], kind, _strip_source(str(exc), path))
    size, mtime_ns = st.st_size, st.st_mtime_ns
    digest = hashlib.sha256(data).hexdigest()
    try:
        views = spec.hash(data)
        if spec.local_features:
            local = encode_local(extract_views(data, limits=spec.limits))
    except ImageTooLargeError as exc:
        return (path, size, mtime_ns, digest, [], "too_large", _strip_source(str(exc)))
    except HashmatchError as exc:
        kind = "not_image" if isinstance(exc.__cause__, UnidentifiedImageError) else "unreadable"
        return (path, size, mtime_ns, digest, [], kind, _strip_source(str(exc)))
    except Exception as exc:  # one odd file must not stop a scan; recorded as a bug to report
        return (path, size, mtime_ns, digest, [], "internal_error", f"{type(exc).__name__}: {exc}")
    if spec.local_features:
        return (path, size, mtime_ns, digest, _encode(views), None, None, local)
    return (path, size, mtime_ns, digest, _encode(views), None, None)


_started: list[float] = []  # when this worker began its current file (empty between files)


def hash_chunk(files: Chunk, spec: QuerySpec) -> list[Raw]:
    """Hash each file of a chunk (what a worker runs)."""
    out = []
    for path, size, mtime_ns in files:
        _started.append(time.monotonic())
        try:
            out.append(_hash_one(path, size, mtime_ns, spec))
        finally:
            _started.clear()
    return out


def worker_init(threshold: int | None, parent_pid: int | None, timeout: float | None = None,
                timeouts: Any = None) -> None:
    """Set up a pool worker: Ctrl-C left to the parent, malloc pinned, death with the
    parent, and, with ``timeout``, a watchdog that ends this worker when one file takes
    longer than ``timeout`` seconds, after adding 1 to the shared counter ``timeouts``."""
    # Ctrl-C reaches the whole process group: the scan stops the pool itself, and a worker
    # interrupted mid-chunk must not turn its files into error rows that resume would skip.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.enable()  # on, whatever the start-up it was forked from (paused_gc) had
    pin_malloc(threshold)
    if parent_pid is not None:
        die_with_parent(parent_pid)
    # A worker from a forkserver starts without numba: load it while this is the only
    # thread, so numba's BLAS probe (SciPy, ~0.1 s) is skipped. Forked warm: nothing to do.
    load_numba_runtime()
    if timeout is not None:
        threading.Thread(target=_watchdog, args=(timeout, timeouts), daemon=True).start()


def _watchdog(timeout: float, timeouts: Any) -> None:
    # A thread, not an alarm signal: a signal handler runs only between bytecodes of the
    # main thread, and a hung decoder is usually inside C code (which, in Pillow, lets
    # other threads run). Exiting is the only way to stop it; the parent sees a dead
    # worker, isolates the file, and the counter tells it why the worker died.
    tick = min(1.0, timeout / 10)
    while True:
        time.sleep(tick)
        started = _started[0] if _started else None
        if started is not None and time.monotonic() - started > timeout:
            with timeouts.get_lock():
                timeouts.value += 1
            os._exit(3)


def die_with_parent(parent_pid: int) -> None:
    """Make a forked worker (or helper) exit when the scanning process dies, even by ``kill -9``.

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


def dask_worker_init(threshold: int | None, spec: QuerySpec) -> bool:
    pinned = pin_malloc(threshold)
    warm_up(spec)  # while the client lists files, not on the first chunk
    return pinned


_WARMED: set[QuerySpec] = set()


def warm_up(spec: QuerySpec) -> None:
    """Load the spec's hashing kernels once per process, before forking workers."""
    if spec not in _WARMED:
        spec.warmup()
        _WARMED.add(spec)

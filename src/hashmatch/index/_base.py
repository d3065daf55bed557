"""What every exact index shares: input checks, ids, tombstones, result shaping, files.

A subclass keeps its rows in whatever order suits its kernel (``_words`` and ``_ids``
side by side, plus an ``_alive`` byte per row) and implements ``_rebuild`` (derive the
search structure from ``_words``) and ``_search`` (kernel call returning row positions).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np
import numpy.typing as npt

from ..errors import IncompatibleHashError, IndexArgumentError, InvalidHashError
from ..hashes import HashBatch
from .._jit import lazy_import
from . import _format

numba = lazy_import("numba")  # thread counts only; numba loads with the first kernel

__all__ = ["Index", "QueryResult"]

_IndexT = TypeVar("_IndexT", bound="Index")

# Removing more than this share of rows triggers compaction (a rebuild without them).
_COMPACT_FRACTION = 0.25
# Row numbers inside the tables are 32-bit.
_MAX_ROWS = 2**31
# Parallel kernels only pay off past this many queries; below, one thread is faster.
_PARALLEL_MIN_QUERIES = 64
# ... and past this many (query, row) pairs: waking the thread pool for a small index cost
# 7.9 ms of CPU against 0.03 ms on one thread (512 queries, 1,020 rows; notes/issue-14-scan.md).
_PARALLEL_MIN_PAIRS = 1 << 22


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Every (query, reference) pair within the distance, sorted by query, distance, id.

    The three arrays have one element per match; they are empty when nothing matched.
    """

    query_index: npt.NDArray[np.int64]
    ids: npt.NDArray[np.int64]
    distances: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def check_batch(batch: object, what: str) -> HashBatch:
    if not isinstance(batch, HashBatch):
        raise InvalidHashError(f"{what} must be a HashBatch, got {type(batch).__name__}")
    if batch.bits % 64:
        raise InvalidHashError(f"indexes take bit lengths that are a multiple of 64, got {batch.bits}")
    return batch


def _check_ids(ids: object, n: int) -> npt.NDArray[np.int64]:
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise IndexArgumentError(f"ids must be a 1-D array of {n} integers, got shape {arr.shape}")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise IndexArgumentError(f"ids must be integers, got {arr.dtype}")
    if arr.dtype == np.uint64 and n and arr.max() > np.iinfo(np.int64).max:
        raise IndexArgumentError("ids must fit in int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_distance(max_distance: object, bits: int) -> int:
    if isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)):
        raise IndexArgumentError(f"max_distance must be an integer, got {type(max_distance).__name__}")
    if max_distance < 0:
        raise IndexArgumentError(f"max_distance must be at least 0, got {max_distance}")
    return int(min(int(max_distance), bits))


def chunk_bounds(nq: int, parallel: bool) -> npt.NDArray[np.int64]:
    """Query chunks: a few per thread so uneven queries still balance."""
    if not parallel:
        return np.array([0, nq], dtype=np.int64)
    nchunks = max(1, min(nq, 4 * numba.get_num_threads()))
    return np.linspace(0, nq, nchunks + 1).astype(np.int64)


def use_parallel(nq: int) -> bool:
    # numba's default threading layer must not be entered from two threads at once, so
    # parallel kernels run only from the main thread; other threads get the serial
    # kernels, which release the GIL and so run side by side.
    return (
        nq >= _PARALLEL_MIN_QUERIES
        and numba.get_num_threads() > 1
        and threading.current_thread() is threading.main_thread()
    )


def query_in_parallel(nq: int, rows: int) -> bool:
    """Whether a query of ``nq`` hashes against ``rows`` rows takes the parallel kernels."""
    return nq * rows >= _PARALLEL_MIN_PAIRS and use_parallel(nq)


class Index:
    """The one protocol of every exact index (see :mod:`hashmatch.index`)."""

    kind: ClassVar[str] = ""

    _words: npt.NDArray[np.uint64]
    _ids: npt.NDArray[np.int64]
    _alive: npt.NDArray[np.uint8]

    def __init__(self, *, algorithm: str, bits: int) -> None:
        self.algorithm = algorithm
        self.bits = bits
        self._n_dead = 0
        self._set_rows(np.zeros((0, bits // 64), np.uint64), np.zeros(0, np.int64))

    # -- construction ---------------------------------------------------------
    @classmethod
    def build(cls: type[_IndexT], batch: HashBatch, ids: npt.ArrayLike | None = None) -> _IndexT:
        """An index of ``batch``; ``ids`` (int64) default to ``0 .. len(batch) - 1``."""
        batch = check_batch(batch, "batch")
        index = cls(algorithm=batch.algorithm, bits=batch.bits)
        index._fill(batch, ids)
        return index

    def _fill(self, batch: HashBatch, ids: npt.ArrayLike | None) -> None:
        n = len(batch)
        id_arr = np.arange(n, dtype=np.int64) if ids is None else _check_ids(ids, n)
        self._set_rows(np.ascontiguousarray(batch.words), id_arr)

    def _set_rows(self, words: npt.NDArray[np.uint64], ids: npt.NDArray[np.int64]) -> None:
        if words.shape[0] >= _MAX_ROWS:
            raise IndexArgumentError(f"an index holds fewer than {_MAX_ROWS} rows, got {words.shape[0]}")
        self._words = words
        self._ids = ids
        self._alive = np.ones(words.shape[0], dtype=np.uint8)
        self._n_dead = 0
        self._rebuild()

    def _rebuild(self) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _search(
        self, queries: npt.NDArray[np.uint64], r: int, bounds: npt.NDArray[np.int64], parallel: bool,
        out: tuple[np.ndarray, np.ndarray, np.ndarray], cap: int, counts: np.ndarray,
    ) -> None:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _check_compatible(self, batch: HashBatch) -> None:
        if batch.algorithm != self.algorithm or batch.bits != self.bits:
            raise IncompatibleHashError(
                f"this index holds {self.bits}-bit {self.algorithm} hashes, "
                f"got {batch.bits}-bit {batch.algorithm}"
            )

    # -- updates ----------------------------------------------------------------
    def add(self, batch: HashBatch, ids: npt.ArrayLike) -> None:
        """Add hashes with their ids. Rebuilds the search structure: add in batches."""
        batch = check_batch(batch, "batch")
        self._check_compatible(batch)
        id_arr = _check_ids(ids, len(batch))
        if not len(batch):
            return
        keep = self._alive.astype(bool)
        words = np.concatenate([self._words[keep], batch.words])
        self._set_rows(words, np.concatenate([self._ids[keep], id_arr]))

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove every row with one of ``ids``; returns how many rows went.

        Removed rows are never returned again; once more than a quarter of the rows
        are removed the index compacts itself, and :meth:`save` writes live rows only.
        """
        id_arr = np.asarray(ids)
        if id_arr.ndim == 0:
            id_arr = id_arr.reshape(1)
        id_arr = _check_ids(id_arr, id_arr.shape[0])
        hit = np.isin(self._ids, id_arr) & self._alive.astype(bool)
        removed = int(hit.sum())
        if removed:
            self._alive[hit] = 0
            self._n_dead += removed
            if self._n_dead > _COMPACT_FRACTION * self._words.shape[0]:
                self.compact()
        return removed

    def compact(self) -> None:
        """Drop removed rows now and rebuild, reclaiming their space."""
        if self._n_dead:
            keep = self._alive.astype(bool)
            self._set_rows(np.ascontiguousarray(self._words[keep]), self._ids[keep])

    # -- queries ------------------------------------------------------------------
    def query(self, queries: HashBatch, max_distance: int) -> QueryResult:
        """Every (query, reference) pair at Hamming distance ``<= max_distance``.

        Safe to call from several threads at once (the kernels release the GIL);
        not at the same time as :meth:`add` or :meth:`remove`.
        """
        queries = check_batch(queries, "queries")
        self._check_compatible(queries)
        r = _check_distance(max_distance, self.bits)
        qwords = np.ascontiguousarray(queries.words)
        nq = qwords.shape[0]
        if nq == 0 or self._words.shape[0] == 0:
            return _empty_result()
        parallel = query_in_parallel(nq, self._words.shape[0])
        bounds = chunk_bounds(nq, parallel)
        nchunks = bounds.shape[0] - 1
        # A first guess that fits typical queries; overflowing chunks rerun exactly.
        cap = max(1024, 8 * int(np.max(np.diff(bounds))))
        out = _alloc(nchunks * cap)
        counts = np.zeros(nchunks, dtype=np.int64)
        self._search(qwords, r, bounds, parallel, out, cap, counts)
        parts_q, parts_pos, parts_dist = [], [], []
        for c in range(nchunks):
            k = int(counts[c])
            if k <= cap:
                s = c * cap
                parts_q.append(out[0][s : s + k])
                parts_pos.append(out[1][s : s + k])
                parts_dist.append(out[2][s : s + k])
                continue
            sub = np.array([bounds[c], bounds[c + 1]], dtype=np.int64)
            redo = _alloc(k)
            redo_counts = np.zeros(1, dtype=np.int64)
            self._search(qwords, r, sub, False, redo, k, redo_counts)
            parts_q.append(redo[0])
            parts_pos.append(redo[1])
            parts_dist.append(redo[2])
        qidx = np.concatenate(parts_q)
        pos = np.concatenate(parts_pos)
        dist = np.concatenate(parts_dist)
        ids = self._ids[pos]
        order = np.lexsort((ids, dist, qidx))
        return QueryResult(qidx[order], ids[order], dist[order])

    def __len__(self) -> int:
        return int(self._words.shape[0] - self._n_dead)

    def entries(self) -> tuple[HashBatch, npt.NDArray[np.int64]]:
        """The hashes this index answers with and their ids (copies; removed rows left out),
        e.g. to build another kind of index over the same rows."""
        live = self._alive.astype(bool)
        words = np.ascontiguousarray(self._words[live])
        return HashBatch(words, algorithm=self.algorithm, bits=self.bits), self._ids[live].copy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, algorithm={self.algorithm!r}, bits={self.bits})"

    # -- files ----------------------------------------------------------------------
    def _file_parameter(self) -> int:
        return 0

    def _file_tables(self) -> tuple[np.ndarray, ...]:
        """Built arrays the file keeps so a load need not rebuild them (none by default)."""
        return ()

    def _file_row_numbers(self) -> bool:
        """Whether the file's wide multi-index tables hold row numbers (``_format`` flag 2)."""
        return False

    @classmethod
    def _from_file(
        cls: type[_IndexT], algorithm: str, bits: int, parameter: int,
        words: npt.NDArray[np.uint64], ids: npt.NDArray[np.int64], tables: tuple[np.ndarray, ...] = (),
    ) -> _IndexT:
        index = cls(algorithm=algorithm, bits=bits)
        index._set_rows(words, ids)
        return index

    def save(self, path: str | os.PathLike[str], *, origin: _format.Origin | None = None) -> None:
        """Write live rows to ``path`` atomically (see :mod:`hashmatch.index._format`).

        ``origin`` (for Matcher snapshots) binds the file to a store and generation.
        """
        self.compact()
        _format.write_index(
            path, kind=self.kind, algorithm=self.algorithm, bits=self.bits,
            parameter=self._file_parameter(), words=self._words, ids=self._ids, origin=origin,
            tables=self._file_tables(), row_numbers=self._file_row_numbers(),
        )

    @classmethod
    def load(cls: type[_IndexT], path: str | os.PathLike[str], *, origin: _format.Origin | None = None) -> _IndexT:
        """Read an index that :meth:`save` wrote; raises :class:`CorruptIndexError` on any
        mismatch, also when ``origin`` is given and the file was not saved with it."""
        f = _format.read_index(path, expected_kind=cls.kind, expected_origin=origin)
        return cls._from_file(f.algorithm, f.bits, f.parameter, f.words, f.ids, f.tables)


def _alloc(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int32))


def _empty_result() -> QueryResult:
    return QueryResult(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32))

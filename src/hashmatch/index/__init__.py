"""Exact Hamming-distance indexes of packed hashes.

Three kinds share one protocol (:class:`Index`): ``build(batch, ids=None)``,
``add(batch, ids)``, ``remove(ids) -> int``, ``query(queries, max_distance) ->
QueryResult``, ``len()``, ``save(path)`` and ``load(path)``. All are exact: they return
every reference within the distance, nothing else, sorted by query, distance, id.

* :class:`Flat`: a blocked popcount scan; the oracle, and best for small sets.
* :class:`BKTree`: a BK-tree in flat arrays.
* :class:`MultiIndexHash`: multi-index hashing; the fastest at scale for small radii.

:func:`build_index` picks one for the set's size, bit length and radius;
:func:`load_index` reads any saved index. Kernels compile on first use and are cached
on disk (set ``NUMBA_CACHE_DIR`` to a writable directory on read-only installs);
:func:`warmup` compiles them ahead of time for servers.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import numpy.typing as npt

from ..errors import IndexArgumentError
from ..hashes import HashBatch
from . import _format
from ._format import Origin
from ._base import Index, QueryResult, check_batch
from .bktree import BKTree
from .flat import Flat
from .mih import MultiIndexHash

__all__ = ["BKTree", "Flat", "Index", "MultiIndexHash", "Origin", "QueryResult", "build_index", "load_index", "warmup"]

_KINDS: dict[str, type[Index]] = {"flat": Flat, "bktree": BKTree, "mih": MultiIndexHash}

# Below this many rows a scan costs under a microsecond: no structure is worth building.
FLAT_MAX_ROWS = 1024


def build_index(
    batch: HashBatch, ids: npt.ArrayLike | None = None, *, max_distance: int | None = None,
    kind: str = "auto",
) -> Index:
    """Build the fastest exact index for ``batch`` queried at ``max_distance``.

    ``kind="auto"`` takes :class:`Flat` for fewer than ``FLAT_MAX_ROWS`` rows, or when
    the cost model of :mod:`hashmatch.index.mih` (fitted to ``benchmarks/bench_index.py``,
    see ``notes/index.md``) says a scan beats probing at this size, bit length and
    radius, and :class:`MultiIndexHash` otherwise. :class:`BKTree` is never the
    fastest in those measurements; it is there on request. ``max_distance=None`` means
    "not known yet": multi-index hashing, which itself scans when a query's radius
    turns out too large. ``kind`` may also name one kind: ``"flat"``, ``"bktree"``, ``"mih"``.
    """
    batch = check_batch(batch, "batch")
    if kind != "auto":
        if kind not in _KINDS:
            raise IndexArgumentError(f"unknown index kind {kind!r}; choose auto, {', '.join(_KINDS)}")
        return _KINDS[kind].build(batch, ids)
    if max_distance is not None and (
        isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)) or max_distance < 0
    ):
        raise IndexArgumentError(f"max_distance must be a non-negative integer, got {max_distance!r}")
    if len(batch) < FLAT_MAX_ROWS:
        return Flat.build(batch, ids)
    index = MultiIndexHash.build(batch, ids)
    if max_distance is not None and index.scans_at(int(max_distance)):
        return Flat.build(batch, ids)
    return index


def load_index(path: str | os.PathLike[str], *, origin: _format.Origin | None = None) -> Index:
    """Load whichever kind of index ``path`` holds (raises :class:`CorruptIndexError`).

    The file is opened and read once, so what is checked is what is loaded.
    """
    f = _format.read_index(path, expected_origin=origin)
    return _KINDS[f.kind]._from_file(f.algorithm, f.bits, f.parameter, f.words, f.ids, f.tables)


def warmup(bits: tuple[int, ...] = (64, 256)) -> None:
    """Compile (or load from the disk cache) every kernel for the given bit lengths.

    Queries run from the main thread (numba-parallel kernels) and from a second thread
    (the serial ones servers use), at radii that probe and that scan.
    """
    rng = np.random.default_rng(0)
    for b in bits:
        words = rng.integers(0, 2**63, size=(4096, b // 64), dtype=np.uint64)
        batch = HashBatch(words, algorithm="warmup", bits=b)
        queries = HashBatch(words[:64], algorithm="warmup", bits=b)
        for cls in _KINDS.values():
            index = cls.build(batch)

            def run(index: Index = index) -> None:
                for r in (0, b // 8, b):
                    index.query(queries, r)

            run()
            worker = threading.Thread(target=run)
            worker.start()
            worker.join()
            index.remove([0])

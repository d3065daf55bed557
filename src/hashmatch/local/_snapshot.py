"""Local-stage snapshots: a :class:`LocalIndex`'s memory as a file, and its refresh.

What a ``LocalIndex`` holds in memory is one exact index over its *retrieval rows*:
the first :data:`~._features.RETRIEVAL_FEATURES` stored descriptors of every active
reference with local features, each row's id being its reference's entry id. Its
snapshot is that index saved in the project's one index file format
(:mod:`hashmatch.index._format`; no second format) as its rows: a
:class:`~._tables.DescriptorIndex` is saved as the :class:`~hashmatch.index.Flat` it
extends, and its tables are derived again on load (0.15 s at 100k references, one
thread; notes/issue-12-latency.md):

* header: kind ``"flat"``, algorithm ``"orb"``
  (:data:`~._index.DESCRIPTOR_ALGORITHM`), 256 bits, the row count;
* the origin block: the store id, the generation the rows were read at and the
  snapshot's token (the match room's snapshot cache binds the file to the store with
  it, exactly as for global snapshots);
* rows (descriptor bytes as four big-endian uint64 words), ids (int64 entry ids);
  one SHA-256 over everything. Every field is checked on read,
  sizes before anything is allocated, tables bounds-checked; the file is mapped
  copy-on-write, so service workers share its pages.

What the rows *mean* (which descriptors of a reference, how many) is versioned by the
snapshot's name in the cache, :data:`SNAPSHOT_NAME`: a change of :data:`LAYOUT_VERSION`
or of ``RETRIEVAL_FEATURES`` gives another name, so a snapshot of another layout is
never read as this one (it is rebuilt). :func:`base_from_index` checks what the file
format cannot know (algorithm, bit length, ids that can be entry ids). Whatever a
snapshot holds, it can never make a wrong match: it only proposes candidates, and
verification reads each candidate's features from the store at query time (retracted
entries are not read), so a damaged or forged file can cost recall, never precision.

**Refresh.** A snapshot of generation ``G`` whose newest entry id is ``W`` is brought
up to date without a full read (:func:`layered`): the store returns the retrieval rows
of active entries with ids above ``W`` (new entries always get higher ids) and the
entries the snapshot holds that were retracted since ``G``
(:meth:`~hashmatch._store.ReferenceStore.read_local_changes`); those rows go into a
small delta index, the retracted ids are filtered out of the base's answers. A
feature row written at or below ``W`` after ``G`` (features replaced, or attached late
to an older entry) is recorded by the store, and such a snapshot is rebuilt instead,
so the layers always answer exactly what an index rebuilt from the store would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import CorruptIndexError
from ..hashes import HashBatch
from ..index import Index, QueryResult
from ._features import RETRIEVAL_FEATURES
from ._index import DESCRIPTOR_ALGORITHM, TABLES_MIN_ROWS, FeatureSource, LocalIndex
from ._tables import DescriptorIndex

__all__ = [
    "LAYOUT_VERSION", "SNAPSHOT_NAME", "Layers", "LocalBase", "base_from_index", "base_from_rows", "count_owners",
    "layered", "needs_rebuild",
]

LAYOUT_VERSION = 3  # 2: multi-index tables of row numbers; 3: flat rows (the descriptor tables are derived)
SNAPSHOT_NAME = f"local-{DESCRIPTOR_ALGORITHM}.v{LAYOUT_VERSION}.r{RETRIEVAL_FEATURES}"
"""The snapshot cache's name for local snapshots (also the store's snapshot record)."""

# Fold the delta into a new base (a full read and a new snapshot) past this many
# references added or retracted, or this share of the base: the delta index is rebuilt
# on every refresh.
DELTA_MIN = 2_000
DELTA_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class LocalBase:
    """A base index of retrieval rows and what its refresh needs to know."""

    index: Index
    generation: int  # the store generation its rows were read at
    references: int  # entries it holds
    newest: int  # the highest entry id it holds


def count_owners(ids: npt.NDArray[np.int64]) -> int:
    """How many distinct entry ids ``ids`` holds (ids are positive; a bitmap when they
    are dense, as entry ids are, instead of a sort of every row)."""
    if not ids.size:
        return 0
    top = int(ids.max())
    if 0 <= int(ids.min()) and top <= 8 * ids.size + 1024:
        seen = np.zeros(top + 1, np.bool_)
        seen[ids] = True
        return int(np.count_nonzero(seen))
    return int(np.unique(ids).size)


def base_from_index(index: Index, generation: int) -> LocalBase:
    """A loaded snapshot as a base; :class:`CorruptIndexError` when it cannot be one."""
    if index.algorithm != DESCRIPTOR_ALGORITHM or index.bits != 256:
        raise CorruptIndexError(f"a local snapshot holds 256-bit {DESCRIPTOR_ALGORITHM} rows, "
                                f"this one {index.bits}-bit {index.algorithm}")
    ids = index._ids  # a fresh load has no removed rows; entries() would copy every row
    if not ids.size or int(ids.min()) < 1:
        raise CorruptIndexError("a local snapshot's row ids must be entry ids (positive), and it holds at least one row")
    if ids.size >= TABLES_MIN_ROWS:  # as LocalIndex builds it: the descriptor tables over the rows
        index = DescriptorIndex.from_index(index)
    return LocalBase(index, int(generation), count_owners(ids), int(ids.max()))


def base_from_rows(
    rows: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64], generation: int, source: FeatureSource, **options: Any
) -> tuple[LocalIndex, LocalBase | None]:
    """A LocalIndex built from retrieval rows read from the store, and its base (None
    when there are no rows)."""
    local = LocalIndex(rows, owners, source, **options)
    if local._index is None:
        return local, None
    return local, LocalBase(local._index, int(generation), len(local), int(owners.max()))


def needs_rebuild(base: LocalBase, added: int, removed: int, rewritten: int) -> bool:
    """Whether the changes since ``base`` call for a full read instead of layers."""
    return rewritten > base.generation or added + removed > max(DELTA_MIN, DELTA_FRACTION * base.references)


def layered(
    base: LocalBase, rows: npt.NDArray[np.uint8], owners: npt.NDArray[np.int64], removed: npt.NDArray[np.int64],
    source: FeatureSource, **options: Any,
) -> LocalIndex:
    """``base`` plus new retrieval rows, minus the references retracted since it."""
    added = count_owners(owners)
    delta = LocalIndex(rows, owners, source)._index if owners.size else None
    removed = np.unique(removed)
    layers = Layers(base.index, delta, removed)
    return LocalIndex.from_parts(layers, base.references - int(removed.size) + added, source, **options)


class Layers:
    """A base index and a delta index answering as one, minus retracted ids: what
    :meth:`LocalIndex.from_parts` needs (``query``, ``nbytes``, ``len``)."""

    def __init__(self, base: Index, delta: Index | None, removed: npt.NDArray[np.int64]) -> None:
        self.base = base
        self.delta = delta
        self.removed = removed

    def query(self, queries: HashBatch, max_distance: int) -> QueryResult:
        parts = []
        for index, drop in ((self.base, self.removed), (self.delta, None)):
            if index is None:
                continue
            res = index.query(queries, max_distance)
            if drop is not None and drop.size and len(res):
                keep = ~np.isin(res.ids, drop)
                res = QueryResult(res.query_index[keep], res.ids[keep], res.distances[keep])
            parts.append(res)
        if len(parts) == 1:
            return parts[0]
        qidx, ids, dist = (np.concatenate(arrays) for arrays in zip(*((r.query_index, r.ids, r.distances) for r in parts)))
        order = np.lexsort((ids, dist, qidx))  # the order one index gives
        return QueryResult(qidx[order], ids[order], dist[order])

    def __len__(self) -> int:
        return len(self.base) + (len(self.delta) if self.delta is not None else 0)

    @property
    def nbytes(self) -> int:
        return int(getattr(self.base, "nbytes", 0)) + int(getattr(self.delta, "nbytes", 0))


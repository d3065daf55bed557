"""One algorithm's reference indexes as a Matcher publishes them.

To keep refreshes cheap, each algorithm's references are a *base* index (loaded from
a snapshot, see :mod:`hashmatch._snapshots`, or built from a full read of the store)
plus a small *delta* index of entries added since, minus the ids retracted since.
When the delta grows past a fraction of the base, the base is rebuilt and a new
snapshot written. A :class:`References` value is never changed once built: the
Matcher publishes a new one, so a query in flight finishes on the state it started on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import IncompatibleHashError, InvalidHashError
from .hashes import Hash, HashBatch
from .index import Index, build_index
from ._snapshots import SnapshotCache
from ._store import ReferenceStore

__all__ = ["Band", "Found", "References", "group_by_algorithm"]

# The delta index is rebuilt on every refresh, so fold it into a new base (and a new
# snapshot) once it is this large relative to the base, or this many entries.
DELTA_FRACTION = 0.05
DELTA_MIN = 20_000

# (algorithm, entry id) -> (distance, view, variant), the nearest kept.
Found = dict[tuple[str, int], tuple[int, int, int]]
# algorithm -> arrays of rows (entry id, distance, view, variant), every hit past the
# threshold: the hits of a confirmed band (hashmatch._query.Confirmation), which the
# policy judges together. Arrays, not tuples: most are unrelated references, dropped in
# bulk (hashmatch._match._could_confirm).
Band = dict[str, list[npt.NDArray[np.int64]]]

_NO_IDS = np.zeros(0, np.int64)


@dataclass(frozen=True, slots=True)
class References:
    """What answers one algorithm's queries; ``threshold`` is how far its indexes are
    searched (a policy's band may reach past the algorithm's own threshold)."""

    bits: int
    threshold: int
    base: Index | None
    base_generation: int
    delta: Index | None
    removed: npt.NDArray[np.int64]  # sorted ids retracted since the base

    @property
    def size(self) -> int:
        n = (len(self.base) if self.base is not None else 0) + (len(self.delta) if self.delta is not None else 0)
        return n - int(self.removed.size)

    @classmethod
    def in_memory(cls, batch: HashBatch, ids: npt.NDArray[np.int64], threshold: int) -> References:
        return cls(batch.bits, threshold, _build(batch, ids, threshold), 0, None, _NO_IDS)

    @classmethod
    def from_store(
        cls,
        name: str,
        bits: int,
        threshold: int,
        store: ReferenceStore,
        current: References | None,
        snapshots: SnapshotCache | None,
    ) -> References:
        """``current`` (or the newest snapshot) plus the store's changes since, or a rebuild."""
        base, base_gen = (current.base, current.base_generation) if current is not None else (None, -1)
        if current is None and snapshots is not None:
            base, base_gen = snapshots.load(name, bits) or (None, -1)
        if base_gen >= 0:
            added, added_ids, removed, _ = store.read_changes(name, base_gen)
            base_size = len(base) if base is not None else 0
            if len(added) + removed.size <= max(DELTA_MIN, DELTA_FRACTION * base_size):
                delta = _build(added, added_ids, threshold) if len(added) else None
                return cls(bits, threshold, base, base_gen, delta, np.sort(removed))
        batch, ids, generation = store.read_active(name)
        base = _build(batch, ids, threshold) if len(batch) else None
        if snapshots is not None and base is not None:  # an empty set costs nothing to rebuild
            snapshots.save(name, base, generation)
        return cls(bits, threshold, base, generation, None, _NO_IDS)

    def search(
        self,
        name: str,
        rows: Sequence[tuple[Hash, int, int]],
        found: Found,
        *,
        limit: int | None = None,
        band: Band | None = None,
    ) -> None:
        """Add the matches of ``rows`` (hash, view, dihedral variant: every variant of
        every view of an upload, looked up in one batch) to ``found``: those within
        ``limit`` (default: the search threshold); hits past it go to ``band`` when
        given (every one of them), else nowhere."""
        limit = self.threshold if limit is None else limit
        for h, _, _ in rows:
            if h.bits != self.bits:
                raise IncompatibleHashError(f"a {h.bits}-bit {name} hash cannot match {self.bits}-bit references")
        batch = HashBatch.from_hashes([h for h, _, _ in rows], algorithm=name, bits=self.bits)
        where = np.array([(view, variant) for _, view, variant in rows], dtype=np.int64).reshape(-1, 2)
        for ids, distances, qidx in self._live(batch):
            past = distances > limit
            if band is not None and past.any():
                hits = np.empty((int(past.sum()), 4), dtype=np.int64)
                hits[:, 0], hits[:, 1], hits[:, 2:] = ids[past], distances[past], where[qidx[past]]
                band.setdefault(name, []).append(hits)
            within = np.flatnonzero(~past)
            for entry_id, distance, (view, variant) in zip(
                ids[within].tolist(), distances[within].tolist(), where[qidx[within]].tolist()
            ):
                key = (name, entry_id)
                candidate = (distance, view, variant)
                best = found.get(key)
                if best is None or candidate < best:
                    found[key] = candidate

    def _live(self, batch: HashBatch) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int64]]]:
        """Each index's (ids, distances, query rows) within the threshold, retracted ids dropped."""
        for index in (self.base, self.delta):
            if index is None:
                continue
            res = index.query(batch, self.threshold)
            ids, distances, qidx = res.ids, res.distances, res.query_index
            if self.removed.size and ids.size:
                keep = ~np.isin(ids, self.removed, assume_unique=False)
                ids, distances, qidx = ids[keep], distances[keep], qidx[keep]
            yield ids, distances, qidx

    def rows_with_hits(self, batch: HashBatch) -> npt.NDArray[np.int64]:
        """Rows of ``batch`` with at least one live reference within the threshold."""
        parts = [qidx for _, _, qidx in self._live(batch)]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def warmup(self, name: str) -> None:
        """Run one query through each index, so its kernels are loaded."""
        probe = HashBatch([[0] * ((self.bits + 63) // 64)], algorithm=name, bits=self.bits)
        for index in (self.base, self.delta):
            if index is not None:
                index.query(probe, self.threshold)


def group_by_algorithm(hashes: Iterable[Hash] | HashBatch) -> tuple[int, dict[str, tuple[HashBatch, npt.NDArray[np.intp]]]]:
    """The number of hashes, and a batch per algorithm with the row numbers it came from."""
    if isinstance(hashes, HashBatch):
        return len(hashes), {hashes.algorithm: (hashes, np.arange(len(hashes)))}
    items = list(hashes)
    rows_of: dict[str, list[int]] = {}
    for i, h in enumerate(items):
        if not isinstance(h, Hash):
            raise InvalidHashError(f"item {i} is a {type(h).__name__}, not a Hash")
        rows_of.setdefault(h.algorithm, []).append(i)
    batches = {
        name: (HashBatch.from_hashes([items[i] for i in rows]), np.asarray(rows))  # raises on mixed lengths
        for name, rows in rows_of.items()
    }
    return len(items), batches


def _build(batch: HashBatch, ids: npt.NDArray[np.int64], threshold: int) -> Index:
    return build_index(batch, ids, max_distance=threshold)

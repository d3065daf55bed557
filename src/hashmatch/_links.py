"""An image's second hash, in memory: what a confirmed band checks (:class:`Links`).

A pHash match in a confirmed band (:class:`~hashmatch.Confirmation`) counts only when
the PDQ of *the same reference image* agrees. Which entry is that PDQ is the store's
rule (:meth:`ReferenceStore.sibling_hashes`: same list, same write, same external id,
exactly one active such entry). Asked of SQLite per query, it cost more than the index
lookup itself: a pHash search to radius 14 finds references in the bands for most
uploads at 1M references (about one in 150,000 references per variant, computed for
pHashes with 32 bits set; nearly all unrelated), and one write of many images (a
partner import) made each lookup scan the whole write. So the Matcher resolves the
rule once per refresh into sorted arrays, and a query finds its band hits' siblings
with one ``searchsorted``: the same siblings, from the state the query runs on (see
``notes/issue-12-fastpath.md``).

A refresh reads only what changed: entries added since form new images (an image's
hashes are added in one write, so its siblings come with it), and a retraction of a
``by`` entry re-reads the writes it was in (one of two PDQ entries under one id
retracted leaves the other as the image's one PDQ).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .hashes import Hash, HashBatch
from ._store import ReferenceStore

__all__ = ["Links", "hash_words"]

_Row = tuple[int, int, int, "str | None"]


@dataclass(frozen=True, slots=True)
class Links:
    """For entries of one algorithm, the one ``by`` hash of the same image.

    ``ids`` are sorted entry ids that have one; ``words`` their siblings' packed words.
    ``generation`` is the store generation read (-1 for hashes in memory).
    """

    by: str
    bits: int
    ids: npt.NDArray[np.int64]
    words: npt.NDArray[np.uint64]
    generation: int = -1

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.words.nbytes)

    def lookup(self, entry_ids: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint64]]:
        """``(has, words)`` for each of ``entry_ids``: whether it has a sibling, and its
        words (rows without one hold zeros)."""
        entry_ids = np.asarray(entry_ids, dtype=np.int64)
        nwords = (self.bits + 63) // 64
        if not self.ids.size:
            return np.zeros(entry_ids.shape, dtype=bool), np.zeros((entry_ids.size, nwords), np.uint64)
        pos = np.minimum(np.searchsorted(self.ids, entry_ids), self.ids.size - 1)
        has = self.ids[pos] == entry_ids
        return has, np.where(has[:, None], self.words[pos], np.uint64(0))

    def hashes(self, entry_ids: Sequence[int]) -> dict[int, Hash]:
        """``{entry_id: Hash}`` for those of ``entry_ids`` with a sibling."""
        ids = np.asarray(list(entry_ids), dtype=np.int64)
        if not ids.size:
            return {}
        has, words = self.lookup(ids)
        return {
            int(i): Hash.from_bytes(w.astype(">u8").tobytes()[-((self.bits + 7) // 8):], algorithm=self.by, bits=self.bits)
            for i, w, ok in zip(ids.tolist(), words, has.tolist())
            if ok
        }

    @classmethod
    def in_memory(
        cls,
        algorithm: str,
        by: str,
        batches: Mapping[str, tuple[HashBatch, npt.NDArray[np.intp]]],
        ids: npt.NDArray[np.int64],
        external_ids: Sequence[str | None] | None,
    ) -> Links:
        """The links of hashes in memory (``Matcher.from_hashes``): the store's rule with
        the external id alone naming an image (entries without one have no sibling)."""
        by_batch, by_at = batches[by]
        if external_ids is None:
            return cls(by, by_batch.bits, np.zeros(0, np.int64), np.zeros((0, by_batch.words.shape[1]), np.uint64))

        def rows(at: npt.NDArray[np.intp]) -> list[_Row]:
            return [(int(ids[r]), 0, 0, external_ids[r]) for r in at.tolist() if external_ids[r] is not None]

        named = [k for k, r in enumerate(by_at.tolist()) if external_ids[r] is not None]
        linked, words = _resolve(rows(batches[algorithm][1]), rows(by_at), by_batch.words[named])
        return cls(by, by_batch.bits, linked, words)

    @classmethod
    def from_store(cls, store: ReferenceStore, algorithm: str, by: str, bits: int, current: Links | None) -> Links:
        """The links of ``store`` now: ``current`` updated with the changes since it was
        read, or a full read."""
        if current is None or current.generation < 0:
            rows, by_rows, by_words, gen = store.image_rows(algorithm, by)
            ids, words = _resolve(rows, by_rows, by_words)
            return cls(by, bits, ids, words, gen)
        if store.generation == current.generation:
            return current
        rows, by_rows, by_words, gen = store.image_rows(algorithm, by, since=current.generation)
        new_ids, new_words = _resolve(rows, by_rows, by_words)
        drop = [new_ids]
        # A retracted ``by`` entry may change which entry is its image's one ``by`` hash:
        # the writes it was added in are resolved again, and replace what was linked.
        touched = sorted({g for _, g in store.retracted_since(by, current.generation)})
        if touched:
            rows, by_rows, by_words, _ = store.image_rows(algorithm, by, generations=touched)
            again_ids, again_words = _resolve(rows, by_rows, by_words)
            drop.append(np.array([r[0] for r in rows], dtype=np.int64))
            new_ids = np.concatenate([new_ids, again_ids])
            new_words = np.concatenate([new_words, again_words])
        keep = ~np.isin(current.ids, np.concatenate(drop))
        ids = np.concatenate([current.ids[keep], new_ids])
        words = np.concatenate([current.words[keep], new_words])
        order = np.argsort(ids, kind="stable")
        return cls(by, bits, ids[order], np.ascontiguousarray(words[order]), gen)


def hash_words(hashes: Sequence[Hash], bits: int) -> npt.NDArray[np.uint64]:
    """``hashes`` (all ``bits`` long) as the packed words of :class:`~hashmatch.hashes.HashBatch` rows."""
    nwords = (bits + 63) // 64
    pad = bytes(8 * nwords - (bits + 7) // 8)
    raw = b"".join(pad + h.to_bytes() for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), nwords)


def _resolve(
    rows: Sequence[_Row], by_rows: Sequence[_Row], by_words: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
    """The store's sibling rule over rows read together: an entry's sibling is the one
    ``by`` row of the same list, write and external id (None matching None)."""
    first: dict[tuple[int, int, str | None], int] = {}
    many: set[tuple[int, int, str | None]] = set()
    for k, (_, list_id, gen, ext) in enumerate(by_rows):
        key = (list_id, gen, ext)
        if first.setdefault(key, k) != k:
            many.add(key)
    ids, at = [], []
    for entry_id, list_id, gen, ext in rows:
        key = (list_id, gen, ext)
        k = first.get(key)
        if k is not None and key not in many:
            ids.append(entry_id)
            at.append(k)
    id_array = np.array(ids, dtype=np.int64)
    order = np.argsort(id_array, kind="stable")
    words = by_words[np.array(at, dtype=np.int64)[order]] if at else np.zeros((0, by_words.shape[1]), np.uint64)
    return id_array[order], np.ascontiguousarray(words, dtype=np.uint64)

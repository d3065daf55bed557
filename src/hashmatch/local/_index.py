"""``LocalIndex``: retrieval of candidate references by their descriptors, then verification.

Memory holds only the :data:`~._features.RETRIEVAL_FEATURES` retrieval descriptors
of each reference, in one exact :class:`~._tables.DescriptorIndex` (multi-index tables; 256-bit
ORB descriptors fit it as they are; each row's id is its reference's entry id).
An upload's descriptors are looked up within ``radius`` bits; references are ranked
by how many upload descriptors found them, and the best ``candidates`` are verified
with all their stored features, which come from a feature source: the reference
store (read on demand, so a reference costs about 1.7 KB of memory and 9.7 KB of
disk) or a mapping in memory (tests, benchmarks).

Matching runs in two steps: the whole upload, then, unless that verified a reference
with ``early_exit`` inliers, its proposed regions and a smaller copy of it
(:func:`~._features.region_views`), where downscaled and enlarged copies are found.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import FileFormatError, UsageError
from ..hashes import HashBatch
from ..index import build_index
from .._loading import DEFAULT_LIMITS, ImageInput, ImageLimits
from ._features import QUERY_FEATURES, RETRIEVAL_FEATURES, LocalFeatures, _whole_view, region_views
from ._tables import DescriptorIndex
from ._verify import DEFAULT_RULE, Verification, VerificationRule, verify

__all__ = ["DESCRIPTOR_ALGORITHM", "LocalIndex", "LocalMatch"]

_log = logging.getLogger(__name__)

DESCRIPTOR_ALGORITHM = "orb"
DEFAULT_RADIUS = 16
DEFAULT_CANDIDATES = 8
DEFAULT_QUERY_LOOKUPS = 300  # more added < 2 % retrieval recall in bench_local, at linear cost
DEFAULT_REGION_LOOKUPS = 100  # per region view; 150: +0.5 % recall, 1.5x the p95 (notes/issue-12.md)
DEFAULT_RESCAN_LOOKUPS = 0  # the second step looks up this many more rows of the whole upload
TABLES_MIN_ROWS = 1024  # fewer retrieval rows: the chooser's index (a flat scan)
DEFAULT_EARLY_EXIT = 40  # inliers after which regions are not searched (round 2: twice its minimum of 20; kept)

FeatureSource = Callable[[Sequence[int]], Mapping[int, LocalFeatures]]


class FeatureStore(Protocol):
    """Where :meth:`LocalIndex.from_store` reads features: the reference store's two
    reads (typed here, so this room does not import the store above it)."""

    def read_local_retrieval(self, per_entry: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...

    def read_local_rows(self, entry_ids: Iterable[int]) -> Mapping[int, tuple[int, int, int, bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class LocalMatch:
    """A reference found by the local stage, with the evidence for it."""

    entry_id: int
    score: float  # retrieval evidence (see LocalIndex.shortlist)
    verification: Verification

    @property
    def inliers(self) -> int:
        return self.verification.inliers


def descriptor_words(descriptors: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """``(n, 32)`` descriptor bytes as ``(n, 4)`` uint64 words, first byte most significant."""
    d = np.ascontiguousarray(descriptors, dtype=np.uint8)
    return np.frombuffer(d.tobytes(), dtype=">u8").astype(np.uint64).reshape(-1, 4)


class LocalIndex:
    """Finds references inside an upload by their keypoints; safe to share between threads
    (nothing changes after construction)."""

    def __init__(
        self,
        retrieval: npt.NDArray[np.uint8],
        owners: npt.NDArray[np.int64],
        source: FeatureSource,
        *,
        rule: VerificationRule = DEFAULT_RULE,
        radius: int = DEFAULT_RADIUS,
        candidates: int = DEFAULT_CANDIDATES,
        query_lookups: int = DEFAULT_QUERY_LOOKUPS,
        region_lookups: int = DEFAULT_REGION_LOOKUPS,
        early_exit: int = DEFAULT_EARLY_EXIT,
        rescan_lookups: int = DEFAULT_RESCAN_LOOKUPS,
    ) -> None:
        if not isinstance(rule, VerificationRule):
            raise UsageError(f"rule must be a VerificationRule, got {type(rule).__name__}")
        for name, value, low, high in (("radius", radius, 0, 64), ("candidates", candidates, 1, 1000),
                                       ("query_lookups", query_lookups, 1, 100_000),
                                       ("region_lookups", region_lookups, 0, 100_000),
                                       ("early_exit", early_exit, 1, 100_000),
                                       ("rescan_lookups", rescan_lookups, 0, 100_000)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise UsageError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        self.rule = rule
        self.radius = int(radius)
        self.candidates = int(candidates)
        self.query_lookups = int(query_lookups)
        self.region_lookups = int(region_lookups)
        self.early_exit = int(early_exit)
        self.rescan_lookups = int(rescan_lookups)
        self._source = source
        self._references = int(np.unique(owners).size)
        batch = HashBatch(descriptor_words(retrieval), algorithm=DESCRIPTOR_ALGORITHM, bits=256)
        if len(batch):
            # Always the descriptor tables once past a handful: ORB descriptors are not
            # uniform, so the chooser's model (fitted to uniform hashes) does not apply,
            # and MultiIndexHash within 2 KB per reference (row-number tables of 16-bit
            # substrings) reads ~50x more candidate rows (._tables).
            self._index: Any = (
                DescriptorIndex.build(batch, owners) if len(batch) >= TABLES_MIN_ROWS else build_index(batch, owners)
            )
        else:
            self._index = None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_features(
        cls, features: Sequence[LocalFeatures], ids: Sequence[int] | npt.ArrayLike | None = None, **options: Any
    ) -> LocalIndex:
        """An index over features in memory; ``ids`` default to 0, 1, 2, …"""
        id_list = list(range(len(features))) if ids is None else [int(i) for i in np.asarray(ids).tolist()]
        if len(id_list) != len(features) or len(set(id_list)) != len(id_list):
            raise UsageError("ids must be unique, one per feature set")
        table = dict(zip(id_list, features))
        retrieval, owners = _retrieval_rows(table.items())

        def source(wanted: Sequence[int]) -> Mapping[int, LocalFeatures]:
            return {i: table[i] for i in wanted if i in table}

        return cls(retrieval, owners, source, **options)

    @classmethod
    def from_store(cls, store: FeatureStore, **options: Any) -> LocalIndex:
        """An index over the active references of ``store`` that have local features.

        Only the retrieval descriptors are read now; verification reads the rest of a
        candidate's features from the store when an upload needs them, so a reference
        retracted meanwhile is never matched (its row is no longer active).
        """
        retrieval, owners = store.read_local_retrieval(RETRIEVAL_FEATURES)
        return cls(retrieval, owners, store_source(store), **options)

    @classmethod
    def from_parts(cls, index: Any, references: int, source: FeatureSource, **options: Any) -> LocalIndex:
        """An index whose retrieval rows are already indexed (a snapshot: :mod:`._snapshot`).

        ``index`` answers ``query(batch, radius)`` over the retrieval rows as the built
        one would (row ids are entry ids); ``references`` is how many entries it holds.
        """
        local = cls(np.zeros((0, 32), np.uint8), np.zeros(0, np.int64), source, **options)
        local._index = index if references else None
        local._references = int(references)
        return local

    # -- properties -----------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of references that can match."""
        return self._references

    @property
    def nbytes(self) -> int:
        """Bytes of memory the index holds (the retrieval descriptors and their tables)."""
        return 0 if self._index is None else int(self._index.nbytes)

    def __repr__(self) -> str:
        return f"LocalIndex(references={len(self)}, radius={self.radius}, candidates={self.candidates})"

    # -- matching -------------------------------------------------------------------------
    def match(self, image: ImageInput, *, limits: ImageLimits = DEFAULT_LIMITS, keep_failed: bool = False) -> list[LocalMatch]:
        """Verified references found in ``image``, most inliers first; [] when none.

        In two stages: the whole upload first; its proposed regions (the picture of a
        screenshot, the tiles of a collage: :func:`~._features.region_views`) are
        extracted and searched only when the first stage verified nothing with at least
        ``early_exit`` inliers. ``keep_failed`` also returns the candidates that failed
        verification (for calibration).
        """
        if self._index is None:
            return []
        whole, grey, factor = _whole_view(image, limits, QUERY_FEATURES)
        return self._staged(whole, lambda: region_views(grey, factor, whole), keep_failed)

    def match_features(self, query: LocalFeatures | Sequence[LocalFeatures], *, keep_failed: bool = False) -> list[LocalMatch]:
        """As :meth:`match` for features already extracted: ``query`` is an upload's
        features or its views (:func:`~._features.extract_views`, the whole upload first)."""
        views = _views(query)
        return self._staged(views[0], lambda: views[1:], keep_failed)

    def _staged(self, whole: LocalFeatures, regions: Callable[[], list[LocalFeatures]], keep_failed: bool) -> list[LocalMatch]:
        first = self._verify_views([whole], [(0, self.query_lookups)])
        if any(m.verification.passed and m.inliers >= self.early_exit for m in first):
            return _kept(first, keep_failed)
        views = [whole, *regions()]
        # The whole upload's next ``rescan_lookups`` rows, then each other view's first
        # ``region_lookups``; a candidate is not verified against the whole twice.
        spans = [(self.query_lookups, self.query_lookups + self.rescan_lookups)] + [(0, self.region_lookups)] * (len(views) - 1)
        best = {m.entry_id: m for m in first}
        for m in self._verify_views(views, spans, done=set(best)):
            old = best.get(m.entry_id)
            if old is None or (m.verification.passed, m.inliers) > (old.verification.passed, old.inliers):
                best[m.entry_id] = m
        return _kept(list(best.values()), keep_failed)

    def shortlist(self, query: LocalFeatures | Sequence[LocalFeatures], lookups: Sequence[int] | None = None) -> list[tuple[int, float]]:
        """``(entry_id, score)`` of the best candidates, best first.

        ``query`` is an upload's features or several views of it; ``lookups[k]`` rows of
        view ``k`` are looked up (default: ``query_lookups`` of the first view,
        ``region_lookups`` of each other).

        Each upload descriptor that finds references within ``radius`` gives each of them
        ``1 / (number of references it found)``: a descriptor of a glyph or of a flat
        texture finds many references and says little about any (inverse document
        frequency); one that finds a single reference is strong evidence for it.
        """
        views = _views(query)
        if lookups is None:
            lookups = [self.query_lookups] + [self.region_lookups] * (len(views) - 1)
        return [(entry_id, score) for entry_id, score, _ in self._shortlist(views, [(0, int(k)) for k in lookups])]

    def _shortlist(self, views: list[LocalFeatures], spans: Sequence[tuple[int, int]]) -> list[tuple[int, float, list[int]]]:
        """As :meth:`shortlist` for rows ``spans[k]`` of view ``k``, with the views whose
        descriptors found each candidate."""
        tops = [v.descriptors[a:b] for v, (a, b) in zip(views, spans)]
        if self._index is None or not any(t.shape[0] for t in tops):
            return []
        top = np.concatenate(tops)
        view_of_row = np.repeat(np.arange(len(tops)), [t.shape[0] for t in tops])
        batch = HashBatch(descriptor_words(top), algorithm=DESCRIPTOR_ALGORITHM, bits=256)
        res = self._index.query(batch, self.radius)
        if not len(res):
            return []
        # One vote per (upload descriptor, reference): several retrieval descriptors of
        # one reference near one upload descriptor are one piece of evidence. Pairs are
        # deduplicated on one integer key (query row x reference slot).
        owners, slot = np.unique(res.ids, return_inverse=True)
        key = np.unique(res.query_index.astype(np.int64) * owners.size + slot.ravel())
        rows, slots = np.divmod(key, owners.size)
        per_query = np.bincount(rows, minlength=top.shape[0])
        score = np.bincount(slots, weights=1.0 / per_query[rows], minlength=owners.size)
        order = np.lexsort((owners, -score))[: self.candidates]
        found_in = np.unique(slots * len(views) + view_of_row[rows])  # (candidate slot, view) pairs
        return [(int(owners[i]), float(score[i]), (found_in[found_in // len(views) == i] % len(views)).tolist())
                for i in order]

    def _verify_views(self, views: list[LocalFeatures], spans: Sequence[tuple[int, int]], done: Collection[int] = ()) -> list[LocalMatch]:
        """The shortlist of ``views`` verified (failures too), each candidate against each
        view that found it, the best outcome counting; against view 0 only for candidates
        not in ``done`` (already verified against it)."""
        short = self._shortlist(views, spans)
        if not short:
            return []
        feats = self._source([i for i, _, _ in short])
        out = []
        for entry_id, score, found_in in short:
            ref = feats.get(entry_id)
            against = [k for k in found_in if k or entry_id not in done]
            if ref is None or not against:  # retracted since the index was built, or verified already
                continue
            # Only against the views whose descriptors found it: a collage's other tiles
            # cannot hold it, and each verification costs a descriptor match and a RANSAC.
            result = max((verify(ref, views[k], self.rule) for k in against), key=lambda r: (r.passed, r.inliers))
            out.append(LocalMatch(entry_id, score, result))
        return out


def store_source(store: FeatureStore) -> FeatureSource:
    """Candidates' features read from the store when an upload needs them (retracted
    entries are left out by the read, so they never verify)."""

    def source(wanted: Sequence[int]) -> Mapping[int, LocalFeatures]:
        out = {}
        for i, row in store.read_local_rows(wanted).items():
            try:
                out[i] = LocalFeatures.from_blobs(*row)
            except FileFormatError as exc:  # one bad row must not fail every upload
                _log.warning("entry %d: local features skipped: %s", i, exc)
        return out

    return source


def _kept(found: list[LocalMatch], keep_failed: bool) -> list[LocalMatch]:
    """Passed matches (and failed ones when ``keep_failed``), most inliers first."""
    out = [m for m in found if keep_failed or m.verification.passed]
    return sorted(out, key=lambda m: (-m.verification.passed, -m.inliers, m.entry_id))


def _views(query: LocalFeatures | Sequence[LocalFeatures]) -> list[LocalFeatures]:
    views = [query] if isinstance(query, LocalFeatures) else list(query)
    if not views or not all(isinstance(v, LocalFeatures) for v in views):
        raise UsageError("query must be LocalFeatures or a non-empty sequence of them")
    return views


def _retrieval_rows(items: Iterable[tuple[int, LocalFeatures]]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    blocks, owners = [], []
    for entry_id, feats in items:
        k = min(RETRIEVAL_FEATURES, len(feats))
        blocks.append(feats.descriptors[:k])
        owners.append(np.full(k, entry_id, np.int64))
    if not blocks:
        return np.zeros((0, 32), np.uint8), np.zeros(0, np.int64)
    return np.ascontiguousarray(np.concatenate(blocks)), np.concatenate(owners)

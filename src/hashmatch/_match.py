"""Matching uploads against reference lists: :class:`Matcher` and :class:`Match`.

A Matcher holds one exact Hamming index per algorithm and a threshold for each
(a reference matches when its distance is at most the threshold). It answers
``match(image)`` from many threads at once. How an upload is hashed and judged is
its :class:`~hashmatch.QuerySpec`: ``match(image)`` is ``match_views(spec.hash(image))``,
and :func:`hashmatch.scan` matches its workers' hashes the same way.

Changes to a store reach a running Matcher through :meth:`Matcher.refresh`: it
builds the new indexes aside and then replaces one reference, so a query in flight
finishes on the state it started with and no query ever fails or sees half an
update. To keep refreshes cheap, each algorithm's state is a *base* index (loaded
from a snapshot file cached beside the store) plus a small *delta* index of entries
added since, minus the ids retracted since; when the delta grows past a fraction of
the base, the base is rebuilt and a new snapshot written.

(Over 400 lines on purpose, for now: one class with one lock and one published state,
whose construction, refresh, snapshot cache and matching all read that state. The
snapshot cache is the seam to split out next, once the snapshot-binding work of
issue 10 has landed here, so the two changes do not collide.)
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import (
    FileFormatError,
    HashmatchError,
    IncompatibleHashError,
    InvalidHashError,
    StoreError,
    UsageError,
)
from .hashers import ALGORITHMS, HashResult
from .hashes import Hash, HashBatch, default_bits
from .index import Index, Origin, build_index, load_index
from .local import LocalIndex, rereadable
from .local import available as local_available
from .local._opencv import opencv as require_opencv
from ._loading import DEFAULT_LIMITS, ImageInput, ImageLimits
from ._query import DEFAULT_THRESHOLDS, HashesInput, QuerySpec, View, default_threshold, normalise_view, orientation_name
from ._store import ReferenceStore
from .hashers.pdq import PDQ_MIN_QUALITY

__all__ = ["DEFAULT_THRESHOLDS", "Match", "Matcher", "default_threshold"]

_log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".hmidx"
# The delta index is rebuilt on every refresh, so fold it into a new base (and a new
# snapshot) once it is this large relative to the base, or this many entries.
_DELTA_FRACTION = 0.05
_DELTA_MIN = 20_000

@dataclass(frozen=True, slots=True)
class Match:
    """One reference entry that an image matched.

    ``orientation`` names the dihedral variant of the upload that matched
    (``"rot90"``, ``"flipx"``, …) or is None for the image as it is. The hash of the
    reference is deliberately not part of a Match: reports must not spread it.

    ``stage`` says which stage found it: ``"global"`` (a whole-image hash within its
    threshold) or ``"local"`` (keypoints verified geometrically, see
    :mod:`hashmatch.local`; ``algorithm`` is then ``"orb"`` and ``distance`` the median
    descriptor distance of the inliers). A local match carries its evidence:
    ``inliers``, ``coverage`` (share of the reference's area spanned by the inliers),
    ``scale`` (upload pixels per reference pixel), ``rotation`` (degrees,
    counter-clockwise) and ``crop_box`` (the part of the reference the upload shows,
    in reference pixels: left, top, right, bottom).
    """

    entry_id: int
    list_name: str | None
    label: str | None
    external_id: str | None
    algorithm: str
    distance: int
    orientation: str | None = None
    stage: str = "global"
    inliers: int | None = None
    coverage: float | None = None
    scale: float | None = None
    rotation: float | None = None
    crop_box: tuple[float, float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Every field; the local-stage evidence only for local matches."""
        out = asdict(self)
        if self.stage == "global":
            for name in ("inliers", "coverage", "scale", "rotation", "crop_box"):
                del out[name]
        return out


@dataclass(frozen=True, slots=True)
class _AlgorithmState:
    """What answers one algorithm's queries; never changed once published."""

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


@dataclass(frozen=True, slots=True)
class _State:
    generation: int
    indexes: Mapping[str, _AlgorithmState]
    local: LocalIndex | None = None  # when the local stage is on


class Matcher:
    """Matches images or hashes against reference hashes; safe to share between threads.

    Build one with :meth:`from_store` or :meth:`from_hashes`.

    Options:
        algorithms: which algorithms to use (default: every algorithm the references
            have and the registry can compute).
        thresholds: maximum distance per algorithm (default :data:`DEFAULT_THRESHOLDS`).
        require: ``"any"`` reports matches of any algorithm; ``"all"`` reports only
            when every algorithm in use found at least one match.
        dihedral: also match the seven rotated and mirrored variants of an upload.
        trim_borders: also match the upload with uniform borders cut away (padding,
            letterbox), when it has any; such matches report an orientation that
            starts with ``"trimmed"``.
        min_quality: query hashes whose quality (PDQ) is below this are not matched;
            None matches them all.
        fast, limits: reduced-scale decoding and decoding limits, as for hashing.
        local: the local stage (:mod:`hashmatch.local`, store only): ``"auto"`` runs it
            when nothing matched globally if the store holds local features and the
            ``local`` extra is installed; ``"fallback"`` the same but requires the extra;
            ``"always"`` runs it for every upload; ``"off"`` never.

    These options make up the Matcher's :attr:`spec`, which :func:`hashmatch.scan`
    ships to its workers. Bad values raise :class:`~hashmatch.errors.UsageError`.
    """

    def __init__(
        self,
        *,
        _store: ReferenceStore | None,
        _metadata: Mapping[int, tuple[str | None, str | None, str | None]] | None,
        algorithms: Iterable[str] | None,
        thresholds: Mapping[str, int] | None,
        require: Literal["any", "all"],
        dihedral: bool,
        min_quality: int | None,
        fast: bool,
        limits: ImageLimits,
        trim_borders: bool,
        snapshot_dir: str | os.PathLike[str] | None,
        allowed: Iterable[str] = (),
        local: str = "off",
    ) -> None:
        self._store = _store
        self._metadata = _metadata
        self._fixed_algorithms = None if algorithms is None else QuerySpec(algorithms=tuple(algorithms)).algorithms
        self._spec = QuerySpec(
            algorithms=self._fixed_algorithms or (),
            dihedral=dihedral,
            trim_borders=trim_borders,
            fast=fast,
            limits=limits,
            min_quality=min_quality,
            thresholds=thresholds,
            require=require,
        )
        if self._fixed_algorithms is not None:
            for name in self._fixed_algorithms:
                if name not in allowed:
                    default_bits(name)  # UnknownAlgorithmError, with a "did you mean"
        self._spec.check_names(allowed)
        self._snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)
        self._owns_store = False
        self._refresh_lock = threading.Lock()
        self._told_readonly = False
        self._state = _State(-1, {})
        self._local_mode = _check_local_mode(local)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_store(
        cls,
        store: ReferenceStore | str | os.PathLike[str],
        *,
        algorithms: Iterable[str] | None = None,
        thresholds: Mapping[str, int] | None = None,
        require: Literal["any", "all"] = "any",
        dihedral: bool = True,
        min_quality: int | None = PDQ_MIN_QUALITY,
        fast: bool = True,
        limits: ImageLimits = DEFAULT_LIMITS,
        trim_borders: bool = True,
        cache_snapshots: bool = True,
        readonly: bool = False,
        local: Literal["auto", "fallback", "always", "off"] = "auto",
    ) -> Matcher:
        """A Matcher over a store's active entries.

        Index snapshots are cached in ``<store>.snapshots/`` and reused while the
        store is unchanged (a snapshot a few changes old is reused plus a delta).
        A store path is opened and owned by the Matcher (see :meth:`close`). A store
        with no active entries (or none of an algorithm asked for) logs a warning: the
        Matcher then answers "no match"; :func:`hashmatch.scan` and the CLI refuse it.
        ``readonly=True`` opens it without ever writing (a read-only file and
        folder work), reusing snapshots already cached but writing none (logged once).
        """
        owns_store = not isinstance(store, ReferenceStore)
        if owns_store:
            store = ReferenceStore(store, create=False, readonly=readonly)
        snapshot_dir = store.path + ".snapshots" if cache_snapshots else None
        matcher = cls(
            _store=store,
            _metadata=None,
            algorithms=algorithms,
            thresholds=thresholds,
            require=require,
            dihedral=dihedral,
            min_quality=min_quality,
            fast=fast,
            limits=limits,
            trim_borders=trim_borders,
            snapshot_dir=snapshot_dir,
            local=local,
        )
        matcher._owns_store = owns_store
        try:
            matcher.refresh()
        except BaseException:
            matcher.close()
            raise
        # Matching against nothing answers "no match": say so where operators look.
        empty = [name for name, count in matcher.counts.items() if not count]
        if not len(matcher):
            _log.warning("%s has no active entries: every upload will be 'no match'", store.path)
        elif empty:
            _log.warning("%s has no active %s entries: those algorithms match nothing", store.path, ", ".join(empty))
        return matcher

    @classmethod
    def from_hashes(
        cls,
        hashes: Iterable[Hash] | HashBatch,
        *,
        ids: Sequence[int] | npt.ArrayLike | None = None,
        labels: Sequence[str | None] | None = None,
        external_ids: Sequence[str | None] | None = None,
        list_name: str | None = None,
        algorithms: Iterable[str] | None = None,
        thresholds: Mapping[str, int] | None = None,
        require: Literal["any", "all"] = "any",
        dihedral: bool = True,
        min_quality: int | None = PDQ_MIN_QUALITY,
        fast: bool = True,
        limits: ImageLimits = DEFAULT_LIMITS,
        trim_borders: bool = True,
    ) -> Matcher:
        """A Matcher over hashes in memory (any mix of algorithms).

        ``ids`` (default 0, 1, 2, …) become the ``entry_id`` of matches; ``labels``,
        ``external_ids`` and ``list_name`` are reported with them.
        """
        # Group row numbers by algorithm (and bit length, which must agree within one).
        batches: dict[str, tuple[HashBatch, npt.NDArray[np.intp]]] = {}
        if isinstance(hashes, HashBatch):
            n = len(hashes)
            batches[hashes.algorithm] = (hashes, np.arange(n))
        else:
            items = list(hashes)
            n = len(items)
            rows_of: dict[str, list[int]] = {}
            for i, h in enumerate(items):
                if not isinstance(h, Hash):
                    raise InvalidHashError(f"item {i} is a {type(h).__name__}, not a Hash")
                rows_of.setdefault(h.algorithm, []).append(i)
            for name, rows in rows_of.items():
                batch = HashBatch.from_hashes([items[i] for i in rows])  # raises on mixed lengths
                batches[name] = (batch, np.asarray(rows))
        id_array = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
        if id_array.shape != (n,) or (n and not np.issubdtype(id_array.dtype, np.integer)):
            raise UsageError(f"ids must be {n} integers, got shape {id_array.shape} of {id_array.dtype}")
        id_array = id_array.astype(np.int64)
        if np.unique(id_array).size != n:
            raise UsageError("ids must be unique")
        for name, seq in (("labels", labels), ("external_ids", external_ids)):
            if seq is not None and len(seq) != n:
                raise UsageError(f"{name} must have {n} items, got {len(seq)}")
        metadata = {
            int(id_array[i]): (
                list_name,
                None if labels is None else labels[i],
                None if external_ids is None else external_ids[i],
            )
            for i in range(n)
        }
        matcher = cls(
            _store=None,
            _metadata=metadata,
            algorithms=algorithms,
            thresholds=thresholds,
            require=require,
            dihedral=dihedral,
            min_quality=min_quality,
            fast=fast,
            limits=limits,
            trim_borders=trim_borders,
            snapshot_dir=None,
            allowed=tuple(batches),
        )
        wanted = matcher._fixed_algorithms
        indexes = {}
        for name, (batch, rows) in batches.items():
            if wanted is not None and name not in wanted:
                continue
            threshold = matcher._spec.threshold(name, batch.bits)
            base = _build(batch, id_array[rows], threshold)
            indexes[name] = _AlgorithmState(batch.bits, threshold, base, 0, None, np.zeros(0, np.int64))
        matcher._state = _State(0, MappingProxyType(indexes))
        return matcher

    def close(self) -> None:
        """Close the store if the Matcher opened it (a store passed in stays open)."""
        if self._store is not None and self._owns_store:
            self._store.close()

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- properties -------------------------------------------------------------------
    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms to compute for an image (those with references, or as asked)."""
        state = self._state
        if self._fixed_algorithms is not None:
            return self._fixed_algorithms
        return tuple(name for name in state.indexes if name in ALGORITHMS)

    @property
    def spec(self) -> QuerySpec:
        """How this Matcher hashes and judges an upload, with :attr:`algorithms` resolved."""
        return self._spec.with_algorithms(self.algorithms)

    @property
    def require(self) -> Literal["any", "all"]:
        return self._spec.require

    @property
    def dihedral(self) -> bool:
        return self._spec.dihedral

    @property
    def trim_borders(self) -> bool:
        return self._spec.trim_borders

    @property
    def min_quality(self) -> int | None:
        return self._spec.min_quality

    @property
    def thresholds(self) -> Mapping[str, int]:
        return MappingProxyType({name: s.threshold for name, s in self._state.indexes.items()})

    @property
    def counts(self) -> Mapping[str, int]:
        """Reference hashes that can match, per algorithm (0 for an algorithm asked for
        that the references do not have)."""
        state = self._state
        names = dict.fromkeys((*(self._fixed_algorithms or ()), *state.indexes))
        return MappingProxyType({name: state.indexes[name].size if name in state.indexes else 0 for name in names})

    @property
    def generation(self) -> int:
        """The store generation the current indexes reflect (0 for in-memory hashes)."""
        return self._state.generation

    def __len__(self) -> int:
        """Number of reference hashes that can match."""
        return sum(s.size for s in self._state.indexes.values())

    def __repr__(self) -> str:
        return f"Matcher(algorithms={self.algorithms!r}, references={len(self)}, require={self.require!r})"


    # -- refresh ------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Take in the store's adds and retractions; True when anything changed.

        Queries keep running on the previous indexes until the new ones are ready.
        A Matcher built from hashes in memory has nothing to refresh.
        """
        store = self._store
        if store is None:
            return False
        with self._refresh_lock:
            old = self._state
            generation = store.generation
            if generation == old.generation:
                return False
            names = self._fixed_algorithms
            if names is None:
                # Every algorithm with references; one without a registered hasher
                # (PDQ lists before the PDQ hasher) still serves match_hashes.
                names = tuple(store.algorithms())
            indexes: dict[str, _AlgorithmState] = {}
            for name in names:
                indexes[name] = self._refreshed(name, old.indexes.get(name), store)
            # The generation read first: changes made while we read are taken in again
            # by the next refresh, which is harmless (deltas are relative to the base).
            local = _local_index(self._local_mode, store)
            self._state = _State(generation, MappingProxyType(indexes), local)  # one atomic swap
            _log.debug("matcher refreshed to generation %d: %d references", generation, len(self))
            return True

    def _refreshed(self, name: str, current: _AlgorithmState | None, store: ReferenceStore) -> _AlgorithmState:
        bits = default_bits(name)
        threshold = self._spec.threshold(name, bits)
        base, base_gen = (current.base, current.base_generation) if current is not None else (None, -1)
        if current is None:
            base, base_gen = self._load_snapshot(name, bits, store)
        if base_gen >= 0:
            added, added_ids, removed, generation = store.read_changes(name, base_gen)
            base_size = len(base) if base is not None else 0
            if len(added) + removed.size <= max(_DELTA_MIN, _DELTA_FRACTION * base_size):
                delta = _build(added, added_ids, threshold) if len(added) else None
                return _AlgorithmState(bits, threshold, base, base_gen, delta, np.sort(removed))
        batch, ids, generation = store.read_active(name)
        base = _build(batch, ids, threshold) if len(batch) else None
        self._save_snapshot(name, base, generation, store)
        return _AlgorithmState(bits, threshold, base, generation, None, np.zeros(0, np.int64))

    # -- snapshots --------------------------------------------------------------------
    # A snapshot file is named <algorithm>-<store id>-<generation>-<token>.hmidx; it is
    # used only while the store records that token for that generation.
    def _snapshots(self, name: str, store: ReferenceStore) -> list[tuple[int, str, Path]]:
        if self._snapshot_dir is None or not self._snapshot_dir.is_dir():
            return []
        pattern = re.compile(
            re.escape(f"{name}-{store.store_id}-") + r"(\d+)-([0-9a-f]{16})" + re.escape(SNAPSHOT_SUFFIX) + "$"
        )
        found = []
        try:
            for path in self._snapshot_dir.iterdir():
                match = pattern.match(path.name)
                if match:
                    found.append((int(match.group(1)), match.group(2), path))
        except OSError as exc:  # an unreadable cache only costs a rebuild
            _log.warning("not reading snapshots in %s: %s", self._snapshot_dir, exc)
            return []
        return sorted(found, reverse=True)

    def _load_snapshot(self, name: str, bits: int, store: ReferenceStore) -> tuple[Index | None, int]:
        """The newest usable snapshot (index, generation), or (None, -1)."""
        for generation, token, path in self._snapshots(name, store):
            if store.snapshot_token(name, generation) != token:
                continue  # not (or no longer) vouched for by the store
            try:
                # The origin inside the file must be this store, generation and token:
                # a valid index of another store renamed into place is not trusted.
                index = load_index(path, origin=Origin(store.store_id, generation, token))
            except (FileFormatError, OSError, ValueError, MemoryError) as exc:
                _log.warning("ignoring snapshot %s: %s", path.name, exc)
                continue
            if index.algorithm != name or index.bits != bits:
                _log.warning("ignoring snapshot %s: it holds %s/%d", path.name, index.algorithm, index.bits)
                continue
            return index, generation
        return None, -1

    def _save_snapshot(self, name: str, index: Index | None, generation: int, store: ReferenceStore) -> None:
        directory = self._snapshot_dir
        if directory is None or index is None:  # an empty set costs nothing to rebuild
            return
        if store.readonly:
            if not self._told_readonly:
                self._told_readonly = True
                _log.warning("not caching index snapshots: %s was opened read-only", store.path)
            return
        token = secrets.token_hex(8)
        try:
            directory.mkdir(exist_ok=True)
            final = directory / f"{name}-{store.store_id}-{generation}-{token}{SNAPSHOT_SUFFIX}"
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=SNAPSHOT_SUFFIX)
            os.close(fd)
            try:
                index.save(tmp, origin=Origin(store.store_id, generation, token))
                os.replace(tmp, final)  # readers see the whole file or none
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            store.record_snapshot(name, generation, token)
            for _, _, old in self._snapshots(name, store):
                if old != final:
                    old.unlink(missing_ok=True)
        except (OSError, StoreError) as exc:  # read-only: only costs the next start its build time
            _log.warning("not caching the %s snapshot: %s", name, exc)

    # -- matching ---------------------------------------------------------------------
    def match(self, image: ImageInput) -> list[Match]:
        """Matches of one image, nearest first; [] when nothing matches.

        ``match_views(spec.hash(image))``. Bad input raises
        :class:`~hashmatch.errors.ImageError`.
        """
        spec = self.spec
        local = self._state.local
        if local is not None:
            image = rereadable(image, spec.limits)  # a stream is read twice: once per stage
        matches = self.match_views(spec.hash(image)) if spec.algorithms else []
        if local is not None and (not matches or self._local_mode == "always"):
            matches += self._local_matches(local, image)
        return matches

    @property
    def has_local_stage(self) -> bool:
        """Whether :meth:`match` runs the local stage (the store has local features)."""
        return self._state.local is not None

    def match_with_local(self, views: Sequence[HashesInput | View], local_views: Sequence[Any]) -> list[Match]:
        """``match_views(views)``, then the local stage on the upload's local views
        (:func:`hashmatch.local.extract_views`) as :meth:`match` runs it: what a scan
        worker's reply is matched with."""
        local = self._state.local
        matches = self.match_views(views)
        if local is not None and local_views and (not matches or self._local_mode == "always"):
            matches += self._local_records(local.match_features(list(local_views)))
        return matches

    def _local_matches(self, local: LocalIndex, image: ImageInput) -> list[Match]:
        return self._local_records(local.match(image, limits=self.spec.limits))

    def _local_records(self, found: list[Any]) -> list[Match]:
        info = self._describe(m.entry_id for m in found)
        out = []
        for m in found:
            v = m.verification
            list_name, label, external_id = info.get(m.entry_id, (None, None, None))
            out.append(Match(
                m.entry_id, list_name, label, external_id, "orb", v.median_distance, None, "local",
                v.inliers, round(v.coverage, 4), round(v.scale, 4), round(v.rotation, 2), v.crop_box,
            ))
        return out

    def match_many(self, images: Iterable[ImageInput]) -> list[list[Match] | HashmatchError]:
        """Match each image; one that cannot be read yields its error in its place."""
        out: list[list[Match] | HashmatchError] = []
        for image in images:
            try:
                out.append(self.match(image))
            except HashmatchError as exc:
                out.append(exc)
        return out

    def match_hashes(self, hashes: HashesInput) -> list[Match]:
        """Matches of precomputed hashes: the output of :func:`hashmatch.compute_hashes`
        (eight results per algorithm are the dihedral variants), a Hash or a list of them."""
        return self.match_views([hashes])

    def match_views(self, views: Sequence[HashesInput | View]) -> list[Match]:
        """Matches of the views of one upload, as :meth:`QuerySpec.hash` gives them: the
        image as it is, then its border-trimmed copy. Each entry is reported once, from
        its nearest view; the trimmed view's orientations start with ``"trimmed"``. The
        ``require`` policy is applied to the merged matches of all views."""
        state = self._state  # one read: the whole query runs on one consistent state
        used = self._fixed_algorithms or tuple(state.indexes)
        # (algorithm, entry id) -> (distance, view, variant): nearest first, then the
        # earlier view, then the earlier variant.
        found: dict[tuple[str, int], tuple[int, int, int]] = {}
        for view_index, view in enumerate(views):
            queries = normalise_view(view)
            for name in used:
                alg_state = state.indexes.get(name)
                variants = queries.get(name)
                if alg_state is not None and variants:
                    self._search(name, alg_state, variants, view_index, found)
        if not found:
            return []
        if self._spec.require == "all" and {name for name, _ in found} != set(used):
            return []
        info = self._describe(entry_id for _, entry_id in found)
        matches = []
        for (name, entry_id), (distance, view_index, variant) in found.items():
            list_name, label, external_id = info.get(entry_id, (None, None, None))
            orientation = orientation_name(view_index, variant)
            matches.append(Match(entry_id, list_name, label, external_id, name, distance, orientation))
        matches.sort(key=self._rank)
        return matches

    def _search(
        self,
        name: str,
        alg_state: _AlgorithmState,
        variants: list[tuple[HashResult, int]],
        view_index: int,
        found: dict[tuple[str, int], tuple[int, int, int]],
    ) -> None:
        rows = [(r.hash, v) for r, v in variants if self._spec.passes(r)]
        if not rows:
            return
        for h, _ in rows:
            if h.bits != alg_state.bits:
                raise IncompatibleHashError(f"a {h.bits}-bit {name} hash cannot match {alg_state.bits}-bit references")
        batch = HashBatch.from_hashes([h for h, _ in rows], algorithm=name, bits=alg_state.bits)
        variant_of = np.array([v for _, v in rows], dtype=np.int64)
        for index in (alg_state.base, alg_state.delta):
            if index is None:
                continue
            res = index.query(batch, alg_state.threshold)
            ids, distances, qidx = res.ids, res.distances, res.query_index
            if alg_state.removed.size and ids.size:
                keep = ~np.isin(ids, alg_state.removed, assume_unique=False)
                ids, distances, qidx = ids[keep], distances[keep], qidx[keep]
            for entry_id, distance, q in zip(ids.tolist(), distances.tolist(), variant_of[qidx].tolist()):
                key = (name, entry_id)
                candidate = (distance, view_index, q)
                best = found.get(key)
                if best is None or candidate < best:
                    found[key] = candidate

    def _rank(self, match: Match) -> tuple[float, str, int]:
        # Nearest first across algorithms: a distance counts relative to the bit length.
        indexed = self._state.indexes.get(match.algorithm)
        bits = indexed.bits if indexed is not None else default_bits(match.algorithm)
        return (match.distance / bits, match.algorithm, match.entry_id)

    def _describe(self, entry_ids: Iterable[int]) -> Mapping[int, tuple[str | None, str | None, str | None]]:
        if self._metadata is not None:
            return self._metadata
        if self._store is None:
            return {}
        return self._store.entry_info(entry_ids)

    def with_options(self, **changes: Any) -> Matcher:
        """A Matcher over the same references (sharing their indexes) that hashes and
        judges uploads differently: ``dihedral``, ``trim_borders``, ``fast``, ``limits``,
        ``min_quality`` or ``require``. Thresholds and algorithms shape the indexes, so
        changing them needs a new Matcher. The new one never closes the store."""
        allowed = {"dihedral", "trim_borders", "fast", "limits", "min_quality", "require"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise UsageError(f"with_options cannot change {', '.join(unknown)}; it changes {', '.join(sorted(allowed))}")
        other = object.__new__(Matcher)
        other.__dict__.update(self.__dict__)
        other._spec = dataclasses.replace(self._spec, **changes)
        other._owns_store = False
        other._refresh_lock = threading.Lock()
        return other

    def index(self, algorithm: str) -> Index | None:
        """The base index answering ``algorithm`` (None when it has no references); entries
        added since it was built are in a small delta index beside it."""
        state = self._state.indexes.get(algorithm)
        return None if state is None else state.base

    def warmup(self) -> None:
        """Load this Matcher's hashing and query kernels now, not on the first upload.

        (:func:`hashmatch.warmup` loads every kernel of every algorithm.)
        """
        self.spec.warmup()
        for name, alg_state in self._state.indexes.items():
            probe = HashBatch([[0] * ((alg_state.bits + 63) // 64)], algorithm=name, bits=alg_state.bits)
            for index in (alg_state.base, alg_state.delta):
                if index is not None:
                    index.query(probe, alg_state.threshold)


def _check_local_mode(mode: object) -> str:
    if mode not in ("auto", "fallback", "always", "off"):
        raise UsageError(f"local must be 'auto', 'fallback', 'always' or 'off', got {mode!r}")
    if mode in ("fallback", "always"):
        require_opencv()  # MissingDependencyError now, with the pip command, not on the first upload
    return str(mode)


def _local_index(mode: str, store: ReferenceStore) -> LocalIndex | None:
    """The local stage's index over ``store``, or None when it is off or has nothing."""
    if mode == "off" or not store.local_count():
        return None
    if mode == "auto" and not local_available():
        _log.warning("the store has local features but OpenCV is missing: pip install 'hashmatch[local]'")
        return None
    return LocalIndex.from_store(store)


def _build(batch: HashBatch, ids: npt.NDArray[np.int64], threshold: int) -> Index:
    return build_index(batch, ids, max_distance=threshold)

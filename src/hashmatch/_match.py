"""Matching uploads against reference lists: :class:`Matcher` and :class:`Match`.

A Matcher holds one exact Hamming index per algorithm and a threshold for each
(a reference matches when its distance is at most the threshold). It answers
``match(image)`` from many threads at once.

Changes to a store reach a running Matcher through :meth:`Matcher.refresh`: it
builds the new indexes aside and then replaces one reference, so a query in flight
finishes on the state it started with and no query ever fails or sees half an
update. To keep refreshes cheap, each algorithm's state is a *base* index (loaded
from a snapshot file cached beside the store) plus a small *delta* index of entries
added since, minus the ids retracted since; when the delta grows past a fraction of
the base, the base is rebuilt and a new snapshot written.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Union

import numpy as np
import numpy.typing as npt

from .errors import (
    FileFormatError,
    HashmatchError,
    IncompatibleHashError,
    InvalidHashError,
    MissingDependencyError,
    StoreError,
    UnknownAlgorithmError,
)
from .hashers import ALGORITHMS, DIHEDRAL_NAMES, HashResult, compute_query_hashes
from .hashes import Hash, HashBatch
from ._hashlists import expected_bits
from ._loading import DEFAULT_LIMITS, ImageInput, ImageLimits
from ._store import ReferenceStore

__all__ = ["DEFAULT_THRESHOLDS", "PDQ_MIN_QUALITY", "Match", "Matcher", "default_threshold"]

_log = logging.getLogger(__name__)

from .hashers.pdq import PDQ_MIN_QUALITY

DEFAULT_THRESHOLDS: Mapping[str, int] = MappingProxyType(
    {
        # From benchmarks/bench_robustness.py (5,000 synthetic originals, 25M unrelated
        # pairs, 8,250 altered copies; README "Choosing thresholds"). Each is at most the
        # largest threshold whose measured false-positive rate per pair is <= 1e-6.
        # PDQ: upstream's 31, not the 81 measured here: synthetic images sit further
        # apart under PDQ than real photos do, and 31 had no false positive at all.
        "pdq": 31,
        "phash": 10,  # measured 11 at 1e-6 (9.2e-7 at 10 with dihedral variants)
        "dhash": 6,
        # Unrelated images collide under ahash and whash (distance 0 among 5,000):
        # only near-identical copies can be matched safely with them.
        "ahash": 1,
        "whash": 1,
    }
)
"""Default maximum Hamming distance per algorithm; others get an eighth of their bits."""

SNAPSHOT_SUFFIX = ".hmidx"
# The delta index is rebuilt on every refresh, so fold it into a new base (and a new
# snapshot) once it is this large relative to the base, or this many entries.
_DELTA_FRACTION = 0.05
_DELTA_MIN = 20_000

HashesInput = Union[
    Mapping[str, Sequence[HashResult | Hash]],
    Hash,
    HashResult,
    Iterable[Hash | HashResult],
]


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
    base: Any | None  # an index from hashmatch.index
    base_generation: int
    delta: Any | None
    removed: npt.NDArray[np.int64]  # sorted ids retracted since the base

    @property
    def size(self) -> int:
        n = (len(self.base) if self.base is not None else 0) + (len(self.delta) if self.delta is not None else 0)
        return n - int(self.removed.size)


@dataclass(frozen=True, slots=True)
class _State:
    generation: int
    indexes: Mapping[str, _AlgorithmState]
    local: Any = None  # a hashmatch.local.LocalIndex when the local stage is on


def _index_api() -> tuple[Any, Any]:
    try:
        from .index import build_index, load_index
    except ImportError as exc:  # pragma: no cover - the index package ships with hashmatch
        raise MissingDependencyError(f"hashmatch.index is not available: {exc}") from None
    return build_index, load_index


def _check_threshold(algorithm: str, value: object, bits: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= bits:
        raise ValueError(f"threshold for {algorithm} must be an integer from 0 to {bits}, got {value!r}")
    return int(value)


def default_threshold(algorithm: str, bits: int) -> int:
    """The threshold used when none is given: :data:`DEFAULT_THRESHOLDS` or bits/8."""
    return DEFAULT_THRESHOLDS.get(algorithm, bits // 8)


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
        local: the local stage (:mod:`hashmatch.local`, store only): ``"auto"`` runs it
            when nothing matched globally if the store holds local features and the
            ``local`` extra is installed; ``"fallback"`` the same but requires the extra;
            ``"always"`` runs it for every upload; ``"off"`` never.
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
        local: str = "off",
    ) -> None:
        if require not in ("any", "all"):
            raise ValueError(f"require must be 'any' or 'all', got {require!r}")
        if min_quality is not None and (isinstance(min_quality, bool) or not isinstance(min_quality, int)):
            raise ValueError(f"min_quality must be an integer or None, got {min_quality!r}")
        self._store = _store
        self._metadata = _metadata
        self._fixed_algorithms = None if algorithms is None else tuple(dict.fromkeys(algorithms))
        if self._fixed_algorithms is not None:
            for name in self._fixed_algorithms:
                expected_bits(name)  # UnknownAlgorithmError for a name nobody knows
        self._thresholds = dict(thresholds or {})
        for name, value in self._thresholds.items():
            try:
                bits = expected_bits(name)
            except UnknownAlgorithmError:  # an in-memory algorithm: checked against its hashes
                bits = 1 << 16
            _check_threshold(name, value, bits)
        self.require = require
        self.dihedral = bool(dihedral)
        self.trim_borders = bool(trim_borders)
        self.min_quality = min_quality
        self._fast = fast
        self._limits = limits
        self._snapshot_dir = None if snapshot_dir is None else Path(snapshot_dir)
        self._owns_store = False
        self._refresh_lock = threading.Lock()
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
        local: Literal["auto", "fallback", "always", "off"] = "auto",
    ) -> Matcher:
        """A Matcher over a store's active entries.

        Index snapshots are cached in ``<store>.snapshots/`` and reused while the
        store is unchanged (a snapshot a few changes old is reused plus a delta).
        A store path is opened and owned by the Matcher (see :meth:`close`).
        """
        owns_store = not isinstance(store, ReferenceStore)
        if owns_store:
            store = ReferenceStore(store, create=False)
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
            raise ValueError(f"ids must be {n} integers, got shape {id_array.shape} of {id_array.dtype}")
        id_array = id_array.astype(np.int64)
        if np.unique(id_array).size != n:
            raise ValueError("ids must be unique")
        for name, seq in (("labels", labels), ("external_ids", external_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} must have {n} items, got {len(seq)}")
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
        )
        wanted = matcher._fixed_algorithms
        indexes = {}
        for name, (batch, rows) in batches.items():
            if wanted is not None and name not in wanted:
                continue
            threshold = matcher._threshold(name, batch.bits)
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
    def thresholds(self) -> Mapping[str, int]:
        return MappingProxyType({name: s.threshold for name, s in self._state.indexes.items()})

    @property
    def generation(self) -> int:
        """The store generation the current indexes reflect (0 for in-memory hashes)."""
        return self._state.generation

    def __len__(self) -> int:
        """Number of reference hashes that can match."""
        return sum(s.size for s in self._state.indexes.values())

    def __repr__(self) -> str:
        return f"Matcher(algorithms={self.algorithms!r}, references={len(self)}, require={self.require!r})"

    def _threshold(self, algorithm: str, bits: int) -> int:
        if algorithm in self._thresholds:
            return _check_threshold(algorithm, self._thresholds[algorithm], bits)
        return default_threshold(algorithm, bits)

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
        bits = expected_bits(name)
        threshold = self._threshold(name, bits)
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
        for path in self._snapshot_dir.iterdir():
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), match.group(2), path))
        return sorted(found, reverse=True)

    def _load_snapshot(self, name: str, bits: int, store: ReferenceStore) -> tuple[Any | None, int]:
        """The newest usable snapshot (index, generation), or (None, -1)."""
        _, load_index = _index_api()
        for generation, token, path in self._snapshots(name, store):
            if store.snapshot_token(name, generation) != token:
                continue  # not (or no longer) vouched for by the store
            try:
                index = load_index(path)
            except (FileFormatError, OSError, ValueError) as exc:
                _log.warning("ignoring snapshot %s: %s", path.name, exc)
                continue
            if index.algorithm != name or index.bits != bits:
                _log.warning("ignoring snapshot %s: it holds %s/%d", path.name, index.algorithm, index.bits)
                continue
            return index, generation
        return None, -1

    def _save_snapshot(self, name: str, index: Any | None, generation: int, store: ReferenceStore) -> None:
        directory = self._snapshot_dir
        if directory is None or index is None:  # an empty set costs nothing to rebuild
            return
        token = secrets.token_hex(8)
        try:
            directory.mkdir(exist_ok=True)
            final = directory / f"{name}-{store.store_id}-{generation}-{token}{SNAPSHOT_SUFFIX}"
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=SNAPSHOT_SUFFIX)
            os.close(fd)
            try:
                index.save(tmp)
                os.replace(tmp, final)  # readers see the whole file or none
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            store.record_snapshot(name, generation, token)
            for _, _, old in self._snapshots(name, store):
                if old != final:
                    old.unlink(missing_ok=True)
        except (OSError, StoreError) as exc:  # read-only: only costs the next start its build time
            _log.info("not caching the %s snapshot: %s", name, exc)

    # -- matching ---------------------------------------------------------------------
    def match(self, image: ImageInput) -> list[Match]:
        """Matches of one image, nearest first; [] when nothing matches.

        Bad input raises :class:`~hashmatch.errors.ImageError`.
        """
        names = self.algorithms
        local = self._state.local
        if local is not None:
            from .local import rereadable

            image = rereadable(image, self._limits)  # a stream is read twice: once per stage
        matches = []
        if names:
            views = compute_query_hashes(
                image, names, fast=self._fast, limits=self._limits, dihedral=self.dihedral,
                trim_borders=self.trim_borders,
            )
            matches = self.match_views(views)
        if local is not None and (not matches or self._local_mode == "always"):
            matches += self._local_matches(local, image)
        return matches

    def _local_matches(self, local: Any, image: ImageInput) -> list[Match]:
        found = local.match(image, limits=self._limits)
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

    def match_views(self, views: Sequence[HashesInput]) -> list[Match]:
        """Matches of several views of one upload, as :func:`hashmatch.compute_query_hashes`
        gives them: the image as it is, then its border-trimmed copy. Each entry is
        reported once, from its nearest view; the trimmed view's orientations start
        with ``"trimmed"``."""
        best: dict[tuple[str, int], Match] = {}
        for i, view in enumerate(views):
            for m in self.match_hashes(view):
                if i:
                    m = replace(m, orientation="trimmed" if m.orientation is None else f"trimmed+{m.orientation}")
                key = (m.algorithm, m.entry_id)
                if key not in best or m.distance < best[key].distance:
                    best[key] = m
        return sorted(best.values(), key=self._rank)

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
        state = self._state  # one read: the whole query runs on one consistent state
        queries = _normalise(hashes)
        used = self._fixed_algorithms or tuple(state.indexes)
        found: dict[tuple[str, int], tuple[int, int]] = {}  # (alg, id) -> (distance, variant)
        matched_algorithms = set()
        considered = 0
        for name in used:
            alg_state = state.indexes.get(name)
            variants = queries.get(name)
            if alg_state is None or not variants:
                continue
            considered += 1
            rows = [(h, v) for h, q, v in variants
                    if self.min_quality is None or q is None or q >= self.min_quality]
            if not rows:
                continue
            for h, _ in rows:
                if h.bits != alg_state.bits:
                    raise IncompatibleHashError(
                        f"a {h.bits}-bit {name} hash cannot match {alg_state.bits}-bit references"
                    )
            batch = HashBatch.from_hashes([h for h, _ in rows], algorithm=name, bits=alg_state.bits)
            variant_of = np.array([i for _, i in rows], dtype=np.int64)
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
                    best = found.get(key)
                    if best is None or (distance, q) < best:
                        found[key] = (distance, q)
                    matched_algorithms.add(name)
        if not found:
            return []
        if self.require == "all" and (len(matched_algorithms) < considered or considered < len(used)):
            return []
        info = self._describe(entry_id for _, entry_id in found)
        matches = []
        for (name, entry_id), (distance, variant) in found.items():
            list_name, label, external_id = info.get(entry_id, (None, None, None))
            orientation = DIHEDRAL_NAMES[variant] if 0 < variant < len(DIHEDRAL_NAMES) else None
            matches.append(Match(entry_id, list_name, label, external_id, name, distance, orientation))
        matches.sort(key=self._rank)
        return matches

    def _rank(self, match: Match) -> tuple[float, str, int]:
        # Nearest first across algorithms: a distance counts relative to the bit length.
        indexed = self._state.indexes.get(match.algorithm)
        bits = indexed.bits if indexed is not None else expected_bits(match.algorithm)
        return (match.distance / bits, match.algorithm, match.entry_id)

    def _describe(self, entry_ids: Iterable[int]) -> Mapping[int, tuple[str | None, str | None, str | None]]:
        if self._metadata is not None:
            return self._metadata
        if self._store is None:
            return {}
        return self._store.entry_info(entry_ids)

    def warmup(self) -> None:
        """Load this Matcher's hashing and query kernels now, not on the first upload.

        (:func:`hashmatch.warmup` loads every kernel of every algorithm.)
        """
        names = self.algorithms
        if names:
            probe_image = np.zeros((64, 64, 3), np.uint8)
            probe_image[::2] = 255  # not flat: PDQ and phash take their usual paths
            compute_query_hashes(
                probe_image, names, fast=self._fast, limits=self._limits, dihedral=self.dihedral,
                trim_borders=self.trim_borders,
            )
        for name, alg_state in self._state.indexes.items():
            nwords = (alg_state.bits + 63) // 64
            probe = HashBatch(np.zeros((1, nwords), np.uint64), algorithm=name, bits=alg_state.bits)
            for index in (alg_state.base, alg_state.delta):
                if index is not None:
                    index.query(probe, alg_state.threshold)


def _check_local_mode(mode: object) -> str:
    if mode not in ("auto", "fallback", "always", "off"):
        raise ValueError(f"local must be 'auto', 'fallback', 'always' or 'off', got {mode!r}")
    if mode in ("fallback", "always"):
        from .local._opencv import opencv

        opencv()  # MissingDependencyError now, with the pip command, not on the first upload
    return str(mode)


def _local_index(mode: str, store: ReferenceStore) -> Any:
    """The local stage's index over ``store``, or None when it is off or has nothing."""
    if mode == "off" or not store.local_count():
        return None
    from .local import LocalIndex, available

    if mode == "auto" and not available():
        _log.warning("the store has local features but OpenCV is missing: pip install 'hashmatch[local]'")
        return None
    return LocalIndex.from_store(store)


def _build(batch: HashBatch, ids: npt.NDArray[np.int64], threshold: int) -> Any:
    build_index, _ = _index_api()
    return build_index(batch, ids, max_distance=threshold)


def _normalise(hashes: HashesInput) -> dict[str, list[tuple[Hash, int | None, int]]]:
    """{algorithm: [(hash, quality, variant), ...]}; variant indexes DIHEDRAL_NAMES,
    0 for a hash that is not one of eight dihedral variants."""
    out: dict[str, list[tuple[Hash, int | None, int]]] = {}

    def one(item: object, where: str) -> tuple[Hash, int | None]:
        if isinstance(item, HashResult):
            return item.hash, item.quality
        if isinstance(item, Hash):
            return item, None
        raise InvalidHashError(f"{where} is a {type(item).__name__}, not a Hash or HashResult")

    if isinstance(hashes, Mapping):
        for name, results in hashes.items():
            if isinstance(results, (Hash, HashResult)):
                results = (results,)
            items = [one(r, f"{name} result {i}") for i, r in enumerate(results)]
            dihedral = len(items) == len(DIHEDRAL_NAMES)
            for h, _ in items:
                if h.algorithm != name:
                    raise IncompatibleHashError(f"a {h.algorithm} hash listed under {name}")
            out[name] = [(h, q, i if dihedral else 0) for i, (h, q) in enumerate(items)]
        return out
    if isinstance(hashes, (Hash, HashResult)):
        hashes = [hashes]
    for i, item in enumerate(hashes):
        h, q = one(item, f"item {i}")
        # Separate hashes are separate originals, not dihedral variants of one image.
        out.setdefault(h.algorithm, []).append((h, q, 0))
    return out


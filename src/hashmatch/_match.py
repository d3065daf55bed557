"""Matching uploads against reference lists: the :class:`Matcher` (results are :class:`Match` records).

A Matcher holds one exact Hamming index per algorithm and a threshold for each
(a reference matches when its distance is at most the threshold). It answers
``match(image)`` from many threads at once. How an upload is hashed and judged is
its :class:`~hashmatch.QuerySpec`: ``match(image)`` is ``match_views(spec.hash(image))``,
and :func:`hashmatch.scan` matches its workers' hashes the same way.

Changes to a store reach a running Matcher through :meth:`Matcher.refresh`: it
builds the new indexes aside (:mod:`hashmatch._refindex`: a base from a snapshot,
:mod:`hashmatch._snapshots`, plus a delta) and then replaces one reference, so a
query in flight finishes on the state it started with and no query ever fails or
sees half an update.

Longer than the usual 400 lines because the Matcher is the one place that turns views into
a verdict: construction, refresh, the per-algorithm searches and the bands that need a
second hash of the same reference image (:class:`~hashmatch.Confirmation`) share its state
and its single consistent read of it; splitting them would spread the policy over modules.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import HashmatchError, UsageError
from .hashers import ALGORITHMS
from .hashers.pdq import PDQ_MIN_QUALITY
from .hashes import Hash, HashBatch, default_bits
from .index import Index
from .local import LocalIndex, rereadable
from .local._snapshot import LocalBase
from .local._tables import warmup as warm_local_tables
from ._local_stage import check_local_mode, local_index, local_matches, local_records
from ._loading import DEFAULT_LIMITS, ImageInput, ImageLimits
from ._matches import Match
from ._query import (
    DEFAULT_CONFIRMATIONS,
    DEFAULT_THRESHOLDS,
    PHASH_CONTENT_GATE,
    Confirmation,
    HashesInput,
    QuerySpec,
    View,
    confirm_band,
    default_threshold,
    normalise_view,
    orientation_name,
)
from ._links import Links, hash_words
from ._refindex import Band, Found, References, group_by_algorithm
from ._snapshots import SnapshotCache
from ._store import ReferenceStore

__all__ = ["DEFAULT_CONFIRMATIONS", "DEFAULT_THRESHOLDS", "Confirmation", "Match", "Matcher", "default_threshold"]

_log = logging.getLogger(__name__)

_BATCH_ROWS = 63
"""Query rows per index call in :meth:`Matcher.match_batch`: under the 64 from which an
index runs numba's parallel kernels. A scan's matching process shares its cores with its
workers, and there a parallel query of 512 rows on 1,020 references cost 7.8 ms of CPU
(threads spinning, OpenMP layer) against 0.03-0.1 ms serially."""

@dataclass(frozen=True, slots=True)
class _State:
    generation: int
    indexes: Mapping[str, References]
    local: LocalIndex | None = None  # when the local stage is on
    local_base: LocalBase | None = None  # what its next refresh starts from
    # (algorithm, by) -> each entry's one ``by`` hash of the same image, for the bands.
    links: Mapping[tuple[str, str], Links] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    plans: Mapping[str, _BandPlan] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class _BandPlan:
    """One algorithm's bands, ready for arrays of hits: the rules, how far the as-is
    band reaches (-1: none), and per confirming algorithm the loosest ``within`` of
    the rules that reach each distance (-1: none)."""

    rules: tuple[Confirmation, ...]
    as_is: int
    within: Mapping[str, npt.NDArray[np.int64]]

    @classmethod
    def of(cls, rules: Sequence[Confirmation], radius: int) -> _BandPlan:
        within: dict[str, npt.NDArray[np.int64]] = {}
        for rule in rules:
            if rule.by is not None:
                table = within.setdefault(rule.by, np.full(radius + 1, -1, dtype=np.int64))
                reach = table[: min(rule.up_to, radius) + 1]
                np.maximum(reach, rule.within, out=reach)
        as_is = max((rule.up_to for rule in rules if rule.by is None), default=-1)
        return cls(tuple(rules), as_is, MappingProxyType(within))


class Matcher:
    """Matches images or hashes against reference hashes; safe to share between threads.

    Build one with :meth:`from_store` or :meth:`from_hashes`.

    Options:
        algorithms: which algorithms to use (default: every algorithm the references
            have and the registry can compute).
        thresholds: maximum distance per algorithm (default :data:`DEFAULT_THRESHOLDS`).
        confirmations: bands past a threshold where a match needs a second hash of the
            same image and upload variant (default :data:`DEFAULT_CONFIRMATIONS`: pHash
            10 for the upload as it is, 10-14 when PDQ agrees); see
            :class:`~hashmatch.Confirmation`.
        require: ``"any"`` reports matches of any algorithm; ``"all"`` reports only
            when every algorithm in use found at least one match.
        dihedral: also match the seven rotated and mirrored variants of an upload.
        trim_borders: also match the upload with uniform borders cut away (padding,
            letterbox), when it has any; such matches report an orientation that
            starts with ``"trimmed"``.
        min_quality: query hashes whose quality (PDQ) is below this are not matched;
            None matches them all.
        fast, limits: reduced-scale decoding and decoding limits, as for hashing.
        phash_content: pHash's content gate (:data:`~hashmatch._query.PHASH_CONTENT_GATE`,
            PDQ's quality of the same variant; None: off).
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
        snapshots: SnapshotCache | None,
        allowed: Iterable[str] = (),
        local: str = "off",
        confirmations: Any = None,
        phash_content: int | None = PHASH_CONTENT_GATE,
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
            phash_content=phash_content,
            **({} if confirmations is None else {"confirmations": confirmations}),
        )
        if self._fixed_algorithms is not None:
            for name in self._fixed_algorithms:
                if name not in allowed:
                    default_bits(name)  # UnknownAlgorithmError, with a "did you mean"
        self._spec.check_names(allowed)
        self._snapshots = snapshots
        self._owns_store = False
        self._refresh_lock = threading.Lock()
        self._state = _State(-1, {})
        self._local_mode = check_local_mode(local)

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
        confirmations: Iterable[Confirmation] | None = None,
        phash_content: int | None = PHASH_CONTENT_GATE,
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
            snapshots=SnapshotCache(store) if cache_snapshots else None,
            local=local,
            confirmations=confirmations,
            phash_content=phash_content,
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
        confirmations: Iterable[Confirmation] | None = None,
        phash_content: int | None = PHASH_CONTENT_GATE,
    ) -> Matcher:
        """A Matcher over hashes in memory (any mix of algorithms).

        ``ids`` (default 0, 1, 2, …) become the ``entry_id`` of matches; ``labels``,
        ``external_ids`` and ``list_name`` are reported with them. Hashes with the same
        external id are hashes of one image (a confirmed band needs that: an entry
        whose image has exactly one hash of the confirming algorithm).
        """
        n, batches = group_by_algorithm(hashes)
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
            snapshots=None,
            allowed=tuple(batches),
            confirmations=confirmations,
            phash_content=phash_content,
        )
        wanted = matcher._fixed_algorithms
        indexes = {}
        for name, (batch, rows) in batches.items():
            if wanted is not None and name not in wanted:
                continue
            radius = matcher._spec.search_radius(name, batch.bits)
            indexes[name] = References.in_memory(batch, id_array[rows], radius)
        links = {
            (name, by): Links.in_memory(name, by, batches, id_array, external_ids)
            for name, by in matcher._link_pairs(indexes)
        }
        matcher._state = _State(0, MappingProxyType(indexes), links=MappingProxyType(links),
                                plans=matcher._plans(indexes))
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
        return MappingProxyType({name: self._spec.threshold(name, s.bits) for name, s in self._state.indexes.items()})

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
            indexes: dict[str, References] = {}
            for name in names:
                bits = default_bits(name)
                radius = self._spec.search_radius(name, bits)
                indexes[name] = References.from_store(name, bits, radius, store, old.indexes.get(name), self._snapshots)
            # The generation read first: changes made while we read are taken in again
            # by the next refresh, which is harmless (deltas are relative to the base).
            links = {
                (name, by): Links.from_store(store, name, by, indexes[by].bits, old.links.get((name, by)))
                for name, by in self._link_pairs(indexes)
            }
            local, local_base = local_index(self._local_mode, store, old.local_base, self._snapshots)
            self._state = _State(  # one atomic swap
                generation, MappingProxyType(indexes), local, local_base, MappingProxyType(links),
                self._plans(indexes),
            )
            _log.debug("matcher refreshed to generation %d: %d references", generation, len(self))
            return True

    # -- matching ---------------------------------------------------------------------
    def match(self, image: ImageInput) -> list[Match]:
        """Matches of one image, nearest first; [] when nothing matches.

        ``match_views(spec.hash(image))``. Bad input raises
        :class:`~hashmatch.errors.ImageError`.
        """
        spec = self.spec
        if self._state.local is not None:
            image = rereadable(image, spec.limits)  # a stream is read twice: once per stage
        matches = self.match_views(spec.hash(image)) if spec.algorithms else []
        return matches + self.match_local(image, matches)

    def match_local(self, image: ImageInput, global_matches: Sequence[Match] = ()) -> list[Match]:
        """The local stage's matches of one upload under this Matcher's policy: it runs
        when ``global_matches`` is empty (or always, with ``local="always"``); [] when
        the stage is off or the references hold no local features."""
        local = self._local_stage_after(global_matches)
        return [] if local is None else local_matches(local, image, self.spec.limits, self._describe)

    def _local_stage_after(self, global_matches: Sequence[Match]) -> LocalIndex | None:
        """The local index when the policy runs the stage after these global matches."""
        local = self._state.local
        if local is None or (global_matches and self._local_mode != "always"):
            return None
        return local

    @property
    def has_local_stage(self) -> bool:
        """Whether :meth:`match` runs the local stage (the store has local features)."""
        return self._state.local is not None

    def match_with_local(self, views: Sequence[HashesInput | View], local_views: Sequence[Any]) -> list[Match]:
        """``match_views(views)``, then the local stage on the upload's local views
        (:func:`hashmatch.local.extract_views`) as :meth:`match` runs it: what a scan
        worker's reply is matched with."""
        matches = self.match_views(views)
        local = self._local_stage_after(matches)
        if local is not None and local_views:
            matches += local_records(local.match_features(list(local_views)), self._describe)
        return matches

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
        return self._match_views(views, self._state)  # one read: one consistent state

    def match_batch(
        self,
        count: int,
        queries: Iterable[tuple[str, int, npt.NDArray[np.uint64], npt.NDArray[np.intp]]],
        views_of: Callable[[int], Sequence[HashesInput | View]],
    ) -> Iterator[list[Match]]:
        """``match_views`` of ``count`` uploads, in order, with one index search per
        algorithm for all of them: what :func:`hashmatch.scan` does per chunk of files.

        ``queries`` holds every hash of every upload, packed: ``(algorithm, bits, words,
        owner)`` with ``words`` as :attr:`HashBatch.words` and ``owner[i]`` the upload of
        row ``i``. An upload none of whose hashes has a reference within its index's
        search radius has no match under any policy (every match and every band hit is
        such a hit), so it gets ``[]`` without more work; the others (a few in a scan) get
        ``match_views(views_of(i))``, their views as :meth:`QuerySpec.hash` gives them.
        All of them are answered from one state of the references, as one
        ``match_views`` call is.
        """
        state = self._state
        used = self._fixed_algorithms or tuple(state.indexes)
        may = np.zeros(count, dtype=bool)
        for name, bits, words, owner in queries:
            refs = state.indexes.get(name) if name in used else None
            if refs is None or not owner.size:
                continue
            if bits != refs.bits:
                may[owner] = True  # match_views says why these cannot be matched
                continue
            for start in range(0, owner.size, _BATCH_ROWS):
                batch = HashBatch(words[start : start + _BATCH_ROWS], algorithm=name, bits=bits)
                may[owner[start + refs.rows_with_hits(batch)]] = True
        for i in range(count):
            yield self._match_views(views_of(i), state) if may[i] else []

    def _match_views(self, views: Sequence[HashesInput | View], state: _State) -> list[Match]:
        spec = self._spec
        used = self._fixed_algorithms or tuple(state.indexes)
        # (algorithm, entry id) -> (distance, view, variant): nearest first, then the
        # earlier view, then the earlier variant.
        found: Found = {}
        band: Band = {}
        normalised = [normalise_view(view) for view in views]
        for name in used:
            alg_state = state.indexes.get(name)
            if alg_state is None:
                continue
            # Every variant of every view in one lookup.
            rows = []
            for view_index, queries in enumerate(normalised):
                gated = spec.gated_variants(name, queries)
                rows += [(r.hash, view_index, v) for r, v in queries.get(name) or () if spec.passes(r) and v not in gated]
            if rows:
                alg_state.search(name, rows, found, limit=spec.threshold(name, alg_state.bits), band=band)
        if band:
            self._confirm(band, normalised, found, state)
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

    def _plans(self, indexes: Mapping[str, References]) -> Mapping[str, _BandPlan]:
        """Each algorithm's bands as :class:`_BandPlan` (those with none left out)."""
        plans = {}
        for name, refs in indexes.items():
            rules = self._spec.bands(name, refs.bits, indexes)
            if rules:
                plans[name] = _BandPlan.of(rules, refs.threshold)
        return MappingProxyType(plans)

    def _link_pairs(self, indexes: Mapping[str, References]) -> list[tuple[str, str]]:
        """The (algorithm, by) pairs whose bands this Matcher's policy can apply."""
        return sorted(
            {(name, rule.by) for name, refs in indexes.items()
             for rule in self._spec.bands(name, refs.bits, indexes) if rule.by is not None}
        )

    def _confirm(self, band: Band, views: Sequence[Mapping[str, Any]], found: Found, state: _State) -> None:
        """Add to ``found`` the band hits that a band's rule confirms (the nearest
        confirmed hit of each entry, over every rule; :class:`~hashmatch.Confirmation`).
        Entries already found within the threshold stand as they are.

        Most band hits are unrelated references (a pHash search to 14 meets about one in
        150,000 references per variant, computed for pHashes with 32 bits set):
        :func:`_could_confirm` drops, in arrays, every hit no rule can confirm, and
        :func:`confirm_band` judges the few left."""
        for name, parts in band.items():
            plan = state.plans.get(name)
            if plan is None:
                continue
            rules = plan.rules
            hits = np.concatenate(parts) if len(parts) > 1 else parts[0]
            known = [entry_id for alg, entry_id in found if alg == name]
            if known:
                hits = hits[~np.isin(hits[:, 0], np.array(known, dtype=np.int64))]
            waiting = _could_confirm(hits, plan, views, state.links, name, self._spec.passes)
            if not waiting:
                continue
            siblings = {
                by: state.links[(name, by)].hashes(waiting) if (name, by) in state.links else {}
                for by in {r.by for r in rules if r.by is not None}
            }
            for entry_id in waiting:
                entry_hits = [(d, v, var) for _, d, v, var in hits[hits[:, 0] == entry_id].tolist()]
                confirmed = []
                for rule in rules:
                    sibling = None if rule.by is None else siblings[rule.by].get(entry_id)
                    if rule.by is not None and sibling is None:
                        continue  # no single hash of the same image to confirm with
                    hit = confirm_band(entry_hits, rule, views, sibling, self._spec.passes)
                    if hit is not None:
                        confirmed.append(hit)
                if confirmed:
                    found[(name, entry_id)] = min(confirmed)

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
        ``min_quality``, ``require`` or ``phash_content``. Thresholds, confirmations and algorithms shape
        the indexes, so changing them needs a new Matcher. The new one never closes the
        store."""
        allowed = {"dihedral", "trim_borders", "fast", "limits", "min_quality", "require", "phash_content"}
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
        for name, references in self._state.indexes.items():
            references.warmup(name)
        if self._state.local is not None:
            warm_local_tables()


def _could_confirm(
    hits: npt.NDArray[np.int64],
    plan: _BandPlan,
    views: Sequence[Mapping[str, Sequence[tuple[Any, int]]]],
    links: Mapping[tuple[str, str], Links],
    name: str,
    passes: Any,
) -> list[int]:
    """The entries (sorted) with a band hit that some rule confirms: the test of
    :func:`confirm_band` over every hit at once (``hits``: rows of entry id, distance,
    view, variant), so that only those entries are judged one by one."""
    if not hits.shape[0]:
        return []
    entry, distance, view, variant = hits[:, 0], hits[:, 1], hits[:, 2], hits[:, 3]
    ok = (distance <= plan.as_is) & (view == 0) & (variant == 0)
    for by, within in plan.within.items():
        # A hit at distance d passes when its sibling is within the loosest ``within``
        # of the rules that reach d.
        apart = _sibling_distances(hits, views, links.get((name, by)), by, passes)
        if apart is not None:
            ok |= (apart >= 0) & (apart <= within[distance])
    return np.unique(entry[ok]).tolist() if ok.any() else []


def _sibling_distances(
    hits: npt.NDArray[np.int64],
    views: Sequence[Mapping[str, Sequence[tuple[Any, int]]]],
    link: Links | None,
    by: str,
    passes: Any,
) -> npt.NDArray[np.int64] | None:
    """Per band hit, the distance between the upload's ``by`` hash of its view and
    variant and the ``by`` hash of the same reference image; -1 where either is missing
    (no single such hash, under the quality gate, or of another length). None: none."""
    if link is None:
        return None
    good: list[tuple[int, int, Hash]] = []  # (view, variant, the upload's by hash)
    for v, queries in enumerate(views):
        of_variant: dict[int, list[Any]] = {}
        for r, x in queries.get(by, ()):
            of_variant.setdefault(x, []).append(r)
        good += [(v, x, same[0].hash) for x, same in of_variant.items()
                 if x >= 0 and len(same) == 1 and passes(same[0]) and same[0].hash.bits == link.bits]
    if not good:
        return None
    shape = (len(views), max(x for _, x, _ in good) + 1)
    usable = np.zeros(shape, dtype=bool)
    mine = np.zeros((*shape, (link.bits + 63) // 64), dtype=np.uint64)
    at = ([v for v, _, _ in good], [x for _, x, _ in good])
    usable[at] = True
    mine[at] = hash_words([h for _, _, h in good], link.bits)
    view, variant = hits[:, 2], hits[:, 3]
    out = np.full(hits.shape[0], -1, dtype=np.int64)
    idx = np.flatnonzero((view >= 0) & (view < shape[0]) & (variant >= 0) & (variant < shape[1]))
    idx = idx[usable[view[idx], variant[idx]]]
    has, sibling = link.lookup(hits[idx, 0])
    idx, sibling = idx[has], sibling[has]
    out[idx] = np.bitwise_count(mine[view[idx], variant[idx]] ^ sibling).sum(axis=1)
    return out

"""The query pipeline's one description: :class:`QuerySpec`.

How an upload becomes query hashes (algorithms and their options, dihedral variants,
a border-trimmed view, reduced-scale decoding, limits) and how those hashes become a
verdict (quality gate, thresholds, the multi-algorithm policy) is decided here, once.
The :class:`~hashmatch.Matcher` owns a spec; ``Matcher.match`` is
``match_views(spec.hash(image))``, and :func:`hashmatch.scan` ships the same spec to
its workers, so an image gets one verdict through every entry point.

A spec is a frozen value made of plain data, so it pickles to worker processes and
Dask clusters unchanged. Slightly over 400 lines: the policy's values (thresholds, bands,
gates) and the rule of one band (:func:`confirm_band`) live beside the spec that carries
them, so there is one place to read the whole policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Union

import numpy as np

from ._loading import DEFAULT_LIMITS, ImageInput, ImageLimits
from .errors import IncompatibleHashError, InvalidHashError, UsageError, unknown_algorithm
from .hashers import ALGORITHMS, DIHEDRAL_NAMES, HashResult, compute_query_hashes, get_algorithm
from .hashers._api import View, probe_images
from .hashers.pdq import PDQ_MATCH_DISTANCE, PDQ_MIN_QUALITY
from .hashes import DEFAULT_BITS, Hash

__all__ = [
    "Confirmation",
    "DEFAULT_CONFIRMATIONS",
    "DEFAULT_THRESHOLDS",
    "PHASH_CONTENT_GATE",
    "QuerySpec",
    "VIEW_NAMES",
    "HashesInput",
    "View",
    "check_threshold",
    "confirm_band",
    "default_threshold",
    "normalise_view",
    "orientation_name",
]

DEFAULT_THRESHOLDS: Mapping[str, int] = MappingProxyType(
    {
        # From benchmarks/bench_robustness.py (5,000 synthetic originals, 25M unrelated
        # pairs, 8,250 altered copies; README "Choosing thresholds"). Each is at most the
        # largest threshold whose measured false-positive rate per pair is <= 1e-6.
        # PDQ: upstream's 31, not the 81 measured here: synthetic images sit further
        # apart under PDQ than real photos do, and 31 had no false positive at all.
        "pdq": PDQ_MATCH_DISTANCE,
        # pHash alone: 9. At 10, reached through one of 16 variants (8 orientations x 2
        # views), unrelated images matched at 1.8-2.6e-6 per pair on issue 12's hard
        # families (notes/issue-12.md); 10 is kept through DEFAULT_CONFIRMATIONS instead.
        "phash": 9,
        "dhash": 6,
        # Unrelated images collide under ahash and whash (distance 0 among 5,000):
        # only near-identical copies can be matched safely with them.
        "ahash": 1,
        "whash": 1,
    }
)
"""Default maximum Hamming distance per algorithm at which a match stands on its own
(others get an eighth of their bits); :data:`DEFAULT_CONFIRMATIONS` adds a band past it."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A band past ``algorithm``'s threshold where a match needs a second, independent hash.

    A match of ``algorithm`` at a distance above its threshold and at most ``up_to``
    counts only when, *for the same view and orientation of the upload*, the ``by``
    hash passes the quality gate and lies within ``within`` of the ``by`` hash of the
    same reference image. With ``by=None`` (``within`` unused) the band needs no second
    hash but counts only for the upload as it is (first view, not turned): one try
    instead of the sixteen of eight orientations times two views, whose extra chances
    are what push an unrelated image into the band. Entries are hashes of the same image when they were added to
    one list in one write with the same external id (``refs add`` and
    :func:`hashmatch.add_images` add an image's hashes so; an import of a list that
    carries both hashes under one id does too), and exactly one active ``by`` entry is
    such a sibling. A reference without one (a hash-only list that lacks the ``by``
    hash), an upload whose ``by`` hash fails the quality gate, or a Matcher without
    the ``by`` algorithm, gets no band: ``algorithm``'s threshold alone.
    """

    algorithm: str
    up_to: int
    by: str | None
    within: int = 0

    def __post_init__(self) -> None:
        for name in ("algorithm", "by"):
            value = getattr(self, name)
            if (value is not None or name == "algorithm") and (not isinstance(value, str) or not value):
                raise UsageError(f"Confirmation.{name} must be an algorithm name, got {value!r}")
        if self.algorithm == self.by:
            raise UsageError("a Confirmation needs a second algorithm, not the same one")
        for name in ("up_to", "within"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"Confirmation.{name} must be a non-negative integer, got {value!r}")


DEFAULT_CONFIRMATIONS: tuple[Confirmation, ...] = (
    # pHash distances are even (each hash has 32 bits above its median), so the bands are
    # 10, 12 and 14. pHash 10 for the upload as it is (today's threshold, one try), and
    # for any view and orientation when PDQ agrees loosely: unrelated images sit near 128
    # under PDQ, a copy that pHash puts at 10-14 is usually much nearer. Chosen with
    # benchmarks/bench_policy.py (54.9M unrelated pairs; every family at or above the
    # PDQ 31 / pHash 10 policy), see notes/issue-12-policy.md. PDQ <= 31 and pHash <= 9
    # stand alone.
    Confirmation("phash", 10, None),
    Confirmation("phash", 10, "pdq", 92),
    Confirmation("phash", 12, "pdq", 88),
    Confirmation("phash", 14, "pdq", 76),
)
PHASH_CONTENT_GATE = 25
"""pHash's content gate: a pHash of an upload variant whose PDQ quality (same view and
orientation) is under this is not matched. PDQ's quality measures the image's gradient
content; near-featureless images (flat sky, tiny grey faces) make pHash collisions.
25, not PDQ's 50: measured free of recall loss in bench_policy.py (50 cost the colour
family), and it removed 2 of the 30 false pairs (notes/issue-12-policy.md)."""

"""The default bands: pHash 10 for the upload as it is; pHash 10, 12, 14 for any view and
orientation when PDQ agrees within 92, 88, 76."""

VIEW_NAMES: tuple[str | None, ...] = (None, "trimmed")
"""What each view of :meth:`QuerySpec.hash` is: the upload as it is, then border-trimmed."""


def default_threshold(algorithm: str, bits: int) -> int:
    """The threshold used when none is given: :data:`DEFAULT_THRESHOLDS` or bits/8."""
    return DEFAULT_THRESHOLDS.get(algorithm, bits // 8)


def check_threshold(algorithm: str, value: object, bits: int) -> int:
    """``value`` as a threshold for ``bits``-bit hashes, or :class:`UsageError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= bits:
        raise UsageError(f"threshold for {algorithm} must be an integer from 0 to {bits}, got {value!r}")
    return int(value)


def orientation_name(view: int, variant: int) -> str | None:
    """How a match's upload was turned: None as is, ``"rot90"``, ``"trimmed+flipx"``, …"""
    turned = DIHEDRAL_NAMES[variant] if 0 < variant < len(DIHEDRAL_NAMES) else None
    prefix = VIEW_NAMES[view] if 0 <= view < len(VIEW_NAMES) else f"view{view}"
    if prefix is None:
        return turned
    return prefix if turned is None else f"{prefix}+{turned}"


def _frozen_items(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]] | None, what: str) -> tuple[tuple[str, Any], ...]:
    if mapping is None:
        return ()
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    try:
        pairs = tuple((k, v) for k, v in items)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a mapping, got {type(mapping).__name__}") from None
    for key, _ in pairs:
        if not isinstance(key, str):
            raise UsageError(f"{what} keys must be algorithm names, got {key!r}")
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class QuerySpec:
    """How an upload is hashed and judged; frozen and picklable.

    Fields:
        algorithms: algorithms to compute for an upload (registered names).
        options: per-algorithm keyword options, ``{"phash": {"hash_size": 8}}``.
        dihedral: also hash the seven rotated and mirrored variants.
        trim_borders: also hash the upload with uniform borders cut away (padding,
            letterbox), when it has any.
        fast: allow reduced-scale JPEG decoding where an algorithm permits it.
        limits: the file-size and pixel limits of decoding.
        min_quality: query hashes whose quality (PDQ) is below this are not matched;
            None matches them all (:meth:`HashResult.passes` is the rule).
        thresholds: maximum distance per algorithm; others take :func:`default_threshold`.
        require: ``"any"`` reports matches of any algorithm; ``"all"`` reports only when
            every algorithm in use matched, in any view of the upload.
        confirmations: bands past a threshold where a match needs more evidence
            (:class:`Confirmation`). None (the default) is :data:`DEFAULT_CONFIRMATIONS`
            for every algorithm whose threshold is not given explicitly: an explicit
            threshold replaces the default rule of its algorithm as a whole. Given
            explicitly, the bands apply past whatever threshold is in force; ``()`` turns
            them off.
        phash_content: pHash's content gate (:data:`PHASH_CONTENT_GATE`): a pHash of a
            view and orientation whose PDQ (computed beside it) has a quality under this
            is not matched; None turns it off. Without PDQ in the spec, pHash is ungated.
        local_features: also extract the upload's local-stage features
            (:func:`hashmatch.local.extract_views`) where it is hashed: what a scan worker
            sends back beside the hashes. :func:`~hashmatch.scan` sets it when its Matcher
            has a local stage.

    ``options`` and ``thresholds`` may be given as mappings; they are kept as sorted
    tuples of pairs so the spec stays hashable (see :meth:`options_for`,
    :meth:`threshold_map`).
    """

    algorithms: tuple[str, ...] = ("phash",)
    options: Any = ()
    dihedral: bool = True
    trim_borders: bool = True
    fast: bool = True
    limits: ImageLimits = DEFAULT_LIMITS
    min_quality: int | None = PDQ_MIN_QUALITY
    thresholds: Any = ()
    require: Literal["any", "all"] = "any"
    local_features: bool = False
    confirmations: Any = None
    phash_content: int | None = PHASH_CONTENT_GATE

    def __post_init__(self) -> None:
        if isinstance(self.algorithms, str):
            raise UsageError(f"algorithms must be a list of names, not the string {self.algorithms!r}")
        try:
            names = tuple(dict.fromkeys(self.algorithms))
        except TypeError:
            raise UsageError(f"algorithms must be a list of names, got {self.algorithms!r}") from None
        for name in names:
            if not isinstance(name, str) or not name:
                raise UsageError(f"algorithm names must be non-empty strings, got {name!r}")
        set_ = object.__setattr__
        set_(self, "algorithms", names)
        options = tuple(
            (name, _frozen_items(opts, f"options for {name}")) for name, opts in _frozen_items(self.options, "options")
        )
        set_(self, "options", options)
        for name, opts in options:
            if name in ALGORITHMS:  # UsageError now, not on the first upload
                ALGORITHMS[name].check_options(dict(opts))
        set_(self, "thresholds", _frozen_items(self.thresholds, "thresholds"))
        for flag in ("dihedral", "trim_borders", "fast", "local_features"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise UsageError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
            set_(self, flag, bool(getattr(self, flag)))
        if not isinstance(self.limits, ImageLimits):
            raise UsageError(f"limits must be an ImageLimits, got {type(self.limits).__name__}")
        if self.min_quality is not None and (
            isinstance(self.min_quality, bool) or not isinstance(self.min_quality, int)
        ):
            raise UsageError(f"min_quality must be an integer or None, got {self.min_quality!r}")
        if self.phash_content is not None and (
            isinstance(self.phash_content, bool) or not isinstance(self.phash_content, int)
        ):
            raise UsageError(f"phash_content must be an integer or None, got {self.phash_content!r}")
        if self.require not in ("any", "all"):
            raise UsageError(f"require must be 'any' or 'all', got {self.require!r}")
        if self.confirmations is not None:
            try:
                confirmations = tuple(self.confirmations)
            except TypeError:
                raise UsageError(f"confirmations must be a list of Confirmation, got {self.confirmations!r}") from None
            for c in confirmations:
                if not isinstance(c, Confirmation):
                    raise UsageError(f"confirmations must be Confirmation values, got {type(c).__name__}")
            set_(self, "confirmations", confirmations)
        for name, value in self.thresholds:
            bits = DEFAULT_BITS.get(name)
            # A name no hasher knows may still be an in-memory algorithm of a Matcher's
            # own hashes: the Matcher checks those against its references.
            check_threshold(name, value, bits if bits is not None else 1 << 16)

    # -- reading ------------------------------------------------------------------------
    def options_for(self, algorithm: str) -> dict[str, Any]:
        """The keyword options given for ``algorithm`` (empty when none)."""
        for name, opts in self.options:
            if name == algorithm:
                return dict(opts)
        return {}

    def threshold_map(self) -> dict[str, int]:
        """The thresholds given explicitly, by algorithm."""
        return {name: int(value) for name, value in self.thresholds}

    def threshold(self, algorithm: str, bits: int) -> int:
        """The threshold for ``algorithm``'s ``bits``-bit hashes: as given, else the default."""
        given = self.threshold_map()
        if algorithm in given:
            return check_threshold(algorithm, given[algorithm], bits)
        return default_threshold(algorithm, bits)

    def search_radius(self, algorithm: str, bits: int) -> int:
        """How far ``algorithm``'s index is searched: its threshold, or the far end of a
        band past it."""
        return max([self.threshold(algorithm, bits), *(min(c.up_to, bits) for c in self.bands(algorithm, bits))])

    def bands(self, algorithm: str, bits: int, available: Iterable[str] | None = None) -> tuple[Confirmation, ...]:
        """The bands that apply to ``algorithm``: past its threshold, and (given
        ``available``, the algorithms a Matcher holds) with their second hash there."""
        if self.confirmations is None and algorithm in self.threshold_map():
            return ()  # an explicit threshold replaces the algorithm's default rule
        rules = DEFAULT_CONFIRMATIONS if self.confirmations is None else self.confirmations
        threshold = self.threshold(algorithm, bits)
        names = None if available is None else set(available)
        return tuple(
            c for c in rules
            if c.algorithm == algorithm and c.up_to > threshold and (c.by is None or names is None or c.by in names)
        )

    def check_names(self, allowed: Iterable[str] = ()) -> None:
        """Refuse threshold and option names that are neither known algorithms nor in
        ``allowed`` (a Matcher's in-memory algorithms), with a "did you mean"."""
        known = {*DEFAULT_BITS, *allowed}
        for name, _ in (*self.thresholds, *self.options):
            if name not in known:
                raise unknown_algorithm(name, known)

    def passes(self, result: HashResult) -> bool:
        """The quality gate: whether ``result`` may be matched."""
        return result.passes(self.min_quality)

    def has_content(self, algorithm: str, variant: int, view: Mapping[str, Sequence[tuple[HashResult, int]]]) -> bool:
        """pHash's content gate for one variant of a normalised view: False when the
        view's PDQ of the same variant (exactly one) has a quality under
        :attr:`phash_content`; True for other algorithms and when PDQ says nothing."""
        return variant not in self.gated_variants(algorithm, view)

    def gated_variants(self, algorithm: str, view: Mapping[str, Sequence[tuple[HashResult, int]]]) -> frozenset[int]:
        """The variants of a normalised view whose ``algorithm`` hash the content gate
        stops (:meth:`has_content` for all of them in one pass)."""
        if algorithm != "phash" or self.phash_content is None:
            return frozenset()
        seen: dict[int, list[HashResult]] = {}
        for r, v in view.get("pdq", ()):
            seen.setdefault(v, []).append(r)
        return frozenset(
            v for v, same in seen.items()
            if len(same) == 1 and same[0].quality is not None and same[0].quality < self.phash_content
        )

    def with_algorithms(self, algorithms: Iterable[str]) -> QuerySpec:
        return dataclasses.replace(self, algorithms=tuple(algorithms))

    # -- hashing ------------------------------------------------------------------------
    def hash(self, image: ImageInput) -> list[View]:
        """The query hashes of one upload: one :data:`View` per entry of
        :data:`VIEW_NAMES` that applies (the trimmed view only when borders were found).

        Bad input raises :class:`~hashmatch.errors.ImageError`; a spec without
        algorithms raises :class:`~hashmatch.errors.UsageError`.
        """
        if not self.algorithms:
            raise UsageError("no algorithm to hash with (the references hold none this spec can compute)")
        for name in self.algorithms:
            get_algorithm(name)
        return compute_query_hashes(
            image,
            self.algorithms,
            fast=self.fast,
            limits=self.limits,
            dihedral=self.dihedral,
            trim_borders=self.trim_borders,
            options={name: dict(opts) for name, opts in self.options if name in self.algorithms},
        )

    def warmup(self) -> None:
        """Load this spec's hashing kernels now (numba caches, lazy imports)."""
        if self.algorithms and all(name in ALGORITHMS for name in self.algorithms):
            for image in probe_images():
                self.hash(image)


HashesInput = Union[
    Mapping[str, Sequence[HashResult | Hash]],
    Hash,
    HashResult,
    Iterable[Hash | HashResult],
]
"""What a view may be given as: :meth:`QuerySpec.hash`'s dicts, a Hash, or a list of them."""


def normalise_view(hashes: HashesInput) -> dict[str, list[tuple[HashResult, int]]]:
    """One view of an upload as ``{algorithm: [(result, variant), ...]}``; ``variant``
    indexes DIHEDRAL_NAMES, 0 for a hash that is not one of eight dihedral variants
    (separate hashes are separate originals). A bare Hash has no quality."""
    out: dict[str, list[tuple[HashResult, int]]] = {}

    def one(item: object, where: str) -> HashResult:
        if isinstance(item, HashResult):
            return item
        if isinstance(item, Hash):
            return HashResult(item)
        raise InvalidHashError(f"{where} is a {type(item).__name__}, not a Hash or HashResult")

    if isinstance(hashes, Mapping):
        for name, results in hashes.items():
            if isinstance(results, (Hash, HashResult)):
                results = (results,)
            items = [one(r, f"{name} result {i}") for i, r in enumerate(results)]
            dihedral = len(items) == len(DIHEDRAL_NAMES)
            for r in items:
                if r.hash.algorithm != name:
                    raise IncompatibleHashError(f"a {r.hash.algorithm} hash listed under {name}")
            out[name] = [(r, i if dihedral else 0) for i, r in enumerate(items)]
        return out
    if isinstance(hashes, (Hash, HashResult)):
        hashes = [hashes]
    for i, item in enumerate(hashes):
        # Separate hashes are separate originals, not dihedral variants of one image.
        r = one(item, f"item {i}")
        out.setdefault(r.hash.algorithm, []).append((r, 0))
    return out


def confirm_band(
    hits: Iterable[tuple[int, int, int]],
    band: Confirmation,
    views: Sequence[Mapping[str, Sequence[tuple[HashResult, int]]]],
    sibling: Hash | None,
    passes: Any,
) -> tuple[int, int, int] | None:
    """The nearest of one entry's band ``hits`` ``(distance, view, variant)`` that the
    second hash confirms, or None.

    ``views`` are the upload's normalised views (:func:`normalise_view`), ``sibling``
    the reference image's ``band.by`` hash and ``passes`` the quality gate. A hit is
    confirmed when the upload's ``band.by`` hash of the same view and variant (exactly
    one) passes the gate and is within ``band.within`` of ``sibling``; for a band with
    ``by=None``, when it is the upload as it is (view 0, variant 0).
    """
    for distance, view, variant in sorted(hits):
        if distance > band.up_to or not 0 <= view < len(views):
            continue
        if band.by is None:
            if view == 0 and variant == 0:
                return distance, view, variant
            continue
        if sibling is None:
            continue
        same = [r for r, v in views[view].get(band.by, ()) if v == variant]
        if len(same) != 1 or not passes(same[0]) or same[0].hash.bits != sibling.bits:
            continue
        if same[0].hash.algorithm == sibling.algorithm and same[0].hash - sibling <= band.within:
            return distance, view, variant
    return None

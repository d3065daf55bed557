"""Thresholds from evidence: false-positive rates measured over all pairs of unrelated images.

Give :func:`calibrate_folder` a folder of images that are all distinct and unrelated
to each other (a sample of the uploads you will scan is ideal). Every pair of them is
a pair that must *not* match, so the fraction of pairs at or under a distance is the
false-positive rate of that threshold. :func:`calibrate` recommends the largest
threshold whose rate is at most the target with 95 % confidence, and says so when the
folder has too few pairs to support the target at all (fewer than ``3 / fpr``: even
zero false positives would not show the rate is that low, by the rule of three).

The pair counts come from a numba kernel over packed hash words, so ten thousand
images (fifty million pairs) take seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._jit import kernels
from .errors import CalibrationError, HashmatchError, UsageError
from .hashers import compute_hashes, get_algorithm
from .hashes import Hash, HashBatch
from ._query import QuerySpec
from ._scan._walk import WalkError, walk

_k = kernels("hashmatch._calibrate_kernels")  # numba loads on first use, not at import

__all__ = [
    "Calibration",
    "PairFeatures",
    "PolicyCalibration",
    "PolicyHashes",
    "calibrate_policy",
    "calibrate_policy_folder",
    "policy_matches",
    "policy_pair_features",
    "calibrate",
    "calibrate_folder",
    "distance_histogram",
    "false_positive_rates",
    "upper_rate_bound",
]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
_Z95 = 1.6448536269514722  # one-sided 95 %


def upper_rate_bound(count: int, pairs: int) -> float:
    """One-sided 95 % upper bound on a rate after ``count`` events in ``pairs`` trials.

    Poisson bound by the Wilson–Hilferty approximation (within 1 % of the exact
    chi-square bound); for zero events it gives 3.0 / pairs, the rule of three.
    """
    if pairs <= 0:
        return 1.0
    k = count + 1
    events = k * (1 - 1 / (9 * k) + _Z95 / (3 * math.sqrt(k))) ** 3
    return min(1.0, events / pairs)


def _words(batch: HashBatch) -> npt.NDArray[np.uint64]:
    return np.ascontiguousarray(batch.words, dtype=np.uint64)


def distance_histogram(
    references: HashBatch, queries: Sequence[HashBatch] | None = None, *, query_ok: npt.ArrayLike | None = None
) -> npt.NDArray[np.int64]:
    """Counts of Hamming distances over all pairs of distinct images; index = distance.

    Without ``queries`` or ``query_ok``: every unordered pair of rows of
    ``references``. With ``queries`` (one batch per dihedral variant, each row aligned
    with ``references``): every ordered pair, the query image's least distance over
    its variants to the other image's reference hash. ``query_ok`` (bool per image)
    leaves out the pairs whose *query* a quality gate refuses, as the Matcher does;
    callers still divide by all pairs, since a refused pair cannot match.
    """
    if not isinstance(references, HashBatch):
        raise UsageError(f"references must be a HashBatch, got {type(references).__name__}")
    n = len(references)
    if queries is None and query_ok is None:
        return _k.pair_histogram(_words(references), references.bits)
    ok = np.ones(n, dtype=np.bool_) if query_ok is None else np.asarray(query_ok, dtype=np.bool_)
    if ok.shape != (n,):
        raise UsageError(f"query_ok must have one flag per image ({n}), got shape {ok.shape}")
    queries = [references] if queries is None else queries
    if not queries:
        raise UsageError("queries must hold at least one batch")
    for q in queries:
        if not isinstance(q, HashBatch) or q.algorithm != references.algorithm or q.bits != references.bits:
            raise UsageError("every query batch must be a HashBatch of the references' algorithm and length")
        if len(q) != n:
            raise UsageError(f"every query batch must have {n} rows, got {len(q)}")
    stacked = np.ascontiguousarray(np.stack([_words(q) for q in queries], axis=1))
    return _k.query_pair_histogram(stacked, _words(references), ok, references.bits)


def false_positive_rates(histogram: npt.ArrayLike, pairs: int | None = None) -> npt.NDArray[np.float64]:
    """``rates[t]``: fraction of pairs at distance ``t`` or less (the FPR of threshold ``t``)."""
    hist = np.asarray(histogram, dtype=np.int64)
    total = int(hist.sum()) if pairs is None else int(pairs)
    if total <= 0:
        return np.zeros(hist.shape, dtype=np.float64)
    return np.cumsum(hist) / total


@dataclass(frozen=True)
class Calibration:
    """A recommended threshold and the figures behind it.

    ``threshold`` is the largest distance whose false-positive rate is at most
    ``target_fpr`` with 95 % confidence, or None when even distance 0 is not (too
    few pairs, or duplicates in the folder). ``measured_threshold`` is the largest
    whose *measured* rate is at most the target, for comparison.
    """

    algorithm: str
    bits: int
    images: int
    pairs: int
    target_fpr: float
    threshold: int | None
    measured_threshold: int | None
    false_positives: int
    measured_fpr: float
    upper_fpr: float
    histogram: tuple[int, ...] = field(repr=False)
    skipped: int = 0
    dihedral: bool = False
    min_quality: int | None = None

    @property
    def supported(self) -> bool:
        """Whether the pairs can show a rate as low as the target at all (rule of three)."""
        return self.pairs >= math.ceil(3 / self.target_fpr)

    @property
    def pairs_needed(self) -> int:
        return math.ceil(3 / self.target_fpr)

    def percentiles(self) -> dict[str, int]:
        """Distances below which 0.0001 %, 0.01 %, 1 % and 50 % of pairs lie."""
        hist = np.asarray(self.histogram, dtype=np.int64)
        cum = np.cumsum(hist)
        out = {"min": int(np.flatnonzero(hist)[0]) if cum[-1] else -1}
        for label, q in (("p0.0001", 1e-6), ("p0.01", 1e-4), ("p1", 1e-2), ("p50", 0.5)):
            out[label] = int(np.searchsorted(cum, q * cum[-1])) if cum[-1] else -1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "bits": self.bits,
            "images": self.images,
            "skipped": self.skipped,
            "pairs": self.pairs,
            "dihedral": self.dihedral,
            "min_quality": self.min_quality,
            "target_fpr": self.target_fpr,
            "supported": self.supported,
            "pairs_needed": self.pairs_needed,
            "threshold": self.threshold,
            "measured_threshold": self.measured_threshold,
            "false_positives_at_threshold": self.false_positives,
            "measured_fpr": self.measured_fpr,
            "upper_fpr_95": self.upper_fpr,
            "distance_percentiles": self.percentiles(),
            "histogram": list(self.histogram),
        }

    def summary(self) -> str:
        """A short human-readable report (no hash values)."""
        p = self.percentiles()
        lines = [
            f"algorithm {self.algorithm} ({self.bits} bits){', dihedral' if self.dihedral else ''}"
            + (f", quality >= {self.min_quality}" if self.min_quality is not None else ""),
            f"images {self.images} (skipped {self.skipped} unreadable), pairs compared {self.pairs:,}",
            f"distance distribution: min {p['min']}, 0.0001% {p['p0.0001']}, 0.01% {p['p0.01']}, "
            f"1% {p['p1']}, median {p['p50']}",
        ]
        if not self.supported:
            lines.append(
                f"TOO FEW PAIRS for a rate of {self.target_fpr:g}: need at least {self.pairs_needed:,} "
                f"(about {math.ceil(math.sqrt(2 * self.pairs_needed))} images); the lowest rate these "
                f"pairs can support is {3 / max(self.pairs, 1):.2g}"
            )
        if self.threshold is None:
            lines.append(f"no threshold reaches a false-positive rate of {self.target_fpr:g} with 95% confidence")
        else:
            lines.append(
                f"recommended threshold {self.threshold}: {self.false_positives} false-positive pairs, "
                f"measured rate {self.measured_fpr:.3g}, 95% upper bound {self.upper_fpr:.3g} "
                f"(target {self.target_fpr:g})"
            )
        if self.measured_threshold is not None and self.measured_threshold != self.threshold:
            lines.append(f"(largest threshold with measured rate under the target: {self.measured_threshold})")
        return "\n".join(lines)


def _check_fpr(fpr: object) -> float:
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < float(fpr) < 1:
        raise UsageError(f"fpr must be a number strictly between 0 and 1, got {fpr!r}")
    return float(fpr)


def calibrate(
    references: HashBatch,
    fpr: float = 1e-6,
    *,
    queries: Sequence[HashBatch] | None = None,
    query_ok: npt.ArrayLike | None = None,
    skipped: int = 0,
    min_quality: int | None = None,
) -> Calibration:
    """Recommend a threshold for ``fpr`` from hashes of unrelated images.

    ``queries`` and ``query_ok`` are as in :func:`distance_histogram` (dihedral
    matching, quality gate); with either, pairs are ordered (query, reference).
    """
    target = _check_fpr(fpr)
    n = len(references)
    if n < 2:
        raise CalibrationError(f"need at least two images to compare, got {n}")
    hist = distance_histogram(references, queries, query_ok=query_ok)
    ordered = queries is not None or query_ok is not None
    pairs = n * (n - 1) if ordered else n * (n - 1) // 2
    cum = np.cumsum(hist)
    threshold = measured = None
    for t in range(references.bits + 1):
        count = int(cum[t])
        if count <= target * pairs:
            measured = t
        if upper_rate_bound(count, pairs) <= target:
            threshold = t
    at = threshold if threshold is not None else 0
    count = int(cum[at]) if threshold is not None else 0
    return Calibration(
        algorithm=references.algorithm,
        bits=references.bits,
        images=n,
        pairs=pairs,
        target_fpr=target,
        threshold=threshold,
        measured_threshold=measured,
        false_positives=count,
        measured_fpr=count / pairs,
        upper_fpr=upper_rate_bound(count, pairs),
        histogram=tuple(int(c) for c in hist),
        skipped=skipped,
        dihedral=queries is not None,
        min_quality=min_quality,
    )


def _image_files(folder: Path, recursive: bool) -> list[Path]:
    """Image files under ``folder`` through the scan's walker (loops detected, symlinks
    skipped); ``folder`` itself that cannot be listed is a :class:`CalibrationError`."""
    exclude = () if recursive else ("*/*",)  # a pattern with a slash: anything below the top
    found = []
    for item in walk([os.fspath(folder)], exclude=exclude):
        if isinstance(item, WalkError):
            if item.path == os.fspath(folder):
                raise CalibrationError(f"cannot read {item.path}: {item.message}")
            continue  # a folder below that cannot be listed holds nothing to compare
        if os.path.splitext(item.path)[1].lower() in _IMAGE_SUFFIXES:
            found.append(Path(item.path))
    return found


def _hash_one(args: tuple[str, str, bool]) -> tuple[list[Hash], int | None] | None:
    path, algorithm, dihedral = args
    try:
        results = compute_hashes(path, [algorithm], dihedral=dihedral)[algorithm]
    except HashmatchError:
        return None
    return [r.hash for r in results], results[0].quality


def _hash_all(paths: Iterable[Path], algorithm: str, dihedral: bool, workers: int) -> list[Any]:
    jobs = [(str(p), algorithm, dihedral) for p in paths]
    if workers <= 1 or len(jobs) < 64:
        return [_hash_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_hash_one, jobs, chunksize=32))


def calibrate_folder(
    folder: str | os.PathLike[str],
    algorithm: str = "pdq",
    fpr: float = 1e-6,
    *,
    recursive: bool = True,
    dihedral: bool = False,
    min_quality: int | None = None,
    workers: int = 1,
) -> Calibration:
    """Hash every image under ``folder`` and :func:`calibrate` on all their pairs.

    Unreadable files are skipped and counted. ``dihedral`` compares each image's
    eight orientations, as a matcher with dihedral matching does. ``min_quality``
    (PDQ) leaves images under it out of every pair, as a quality-gated matcher would
    refuse them; the rate is still over all pairs.
    """
    target = _check_fpr(fpr)
    get_algorithm(algorithm)  # unknown names fail before any hashing
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"not a folder: {os.fspath(folder)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    try:
        paths = _image_files(root, recursive)
    except OSError as exc:
        raise CalibrationError(f"cannot list {root}: {exc.strerror or exc}") from None
    results = _hash_all(paths, algorithm, dihedral, workers)
    readable = [r for r in results if r is not None]
    skipped = len(results) - len(readable)
    if len(readable) < 2:
        raise CalibrationError(f"need at least two readable images under {root}, found {len(readable)}")
    references = HashBatch.from_hashes([r[0][0] for r in readable])
    queries = None
    if dihedral and len(readable[0][0]) > 1:
        queries = [HashBatch.from_hashes([r[0][v] for r in readable]) for v in range(len(readable[0][0]))]
    query_ok = None
    if min_quality is not None:
        query_ok = np.array([(q is None) or q >= min_quality for _, q in readable], dtype=np.bool_)
    return calibrate(references, target, queries=queries, query_ok=query_ok, skipped=skipped, min_quality=min_quality)


# -- the global policy as a whole (issue 12): PDQ, pHash and pHash's confirmed bands -----
_PDQ_MAX = 64  # PDQ thresholds the candidates support (half of all unrelated pairs are within 128)
_PH_MAX = 16  # pHash thresholds and band ends the candidates support


@dataclass(frozen=True)
class PolicyHashes:
    """PDQ and pHash of images, as a Matcher holds references and hashes uploads.

    ``ref_pdq`` (n, 4) and ``ref_phash`` (n, 1) are packed words of each image as a
    reference; ``query_pdq`` (n, v, 4), ``query_phash`` (n, v, 1) and ``query_quality``
    (n, v: PDQ's quality) are the ``v`` variants (views x orientations, in the same
    order for both algorithms) of each image as an upload.
    """

    ref_pdq: npt.NDArray[np.uint64]
    ref_phash: npt.NDArray[np.uint64]
    query_pdq: npt.NDArray[np.uint64]
    query_phash: npt.NDArray[np.uint64]
    query_quality: npt.NDArray[np.int16]

    def __post_init__(self) -> None:
        n = self.ref_pdq.shape[0]
        shapes = {"ref_pdq": (n, 4), "ref_phash": (n, 1)}
        for name, want in shapes.items():
            if getattr(self, name).shape != want:
                raise UsageError(f"{name} must have shape {want}, got {getattr(self, name).shape}")
        nq, v = self.query_quality.shape
        for name, want in (("query_pdq", (nq, v, 4)), ("query_phash", (nq, v, 1))):
            if getattr(self, name).shape != want:
                raise UsageError(f"{name} must have shape {want}, got {getattr(self, name).shape}")


@dataclass(frozen=True)
class PairFeatures:
    """What a PDQ-or-pHash policy looks at, for every pair any such policy could match
    (see :func:`policy_pair_features`); ``pairs`` counts all pairs looked at."""

    query: npt.NDArray[np.int64]
    reference: npt.NDArray[np.int64]
    min_pdq: npt.NDArray[np.int16]
    min_phash: npt.NDArray[np.int16]
    confirm: npt.NDArray[np.int16]  # (k, _PH_MAX + 1): least gated PDQ with pHash <= e
    as_is: npt.NDArray[np.int16]  # pHash distance of the upload as it is (variant 0)
    pairs: int

    @classmethod
    def concat(cls, parts: Sequence[PairFeatures]) -> PairFeatures:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("query", "reference", "min_pdq", "min_phash", "confirm", "as_is")),
                   pairs=sum(p.pairs for p in parts))


def policy_pair_features(
    queries: PolicyHashes,
    references: PolicyHashes,
    owner: npt.ArrayLike | None = None,
    *,
    only_owner: bool = False,
    spec: QuerySpec | None = None,
) -> PairFeatures:
    """The (query, reference) pairs of ``queries``' uploads against ``references``' images
    that a policy with PDQ <= 64 and pHash (threshold or band) <= 16 could match.

    ``owner[i]`` is the reference that is upload ``i``'s own image (-1: none): left out
    of the pairs, or, with ``only_owner``, the only pair (recall). The counting is
    exact: every pair is compared (numba kernel ``policy_candidates``). The gates are
    ``spec``'s (default: the Matcher's): PDQ's quality gate and pHash's content gate.
    """
    spec = QuerySpec(algorithms=("pdq", "phash")) if spec is None else spec
    quality = np.asarray(queries.query_quality)
    ok = quality >= (spec.min_quality if spec.min_quality is not None else -1)
    ph_ok = quality >= (spec.phash_content if spec.phash_content is not None else -1)
    n = quality.shape[0]
    own = np.full(n, -1, np.int64) if owner is None else np.ascontiguousarray(owner, dtype=np.int64)
    if own.shape != (n,):
        raise UsageError(f"owner must have one entry per upload ({n}), got shape {own.shape}")
    m = references.ref_pdq.shape[0]
    if only_owner:
        pairs = int((own >= 0).sum())
    else:
        pairs = n * m - int(((own >= 0) & (own < m)).sum())
    args = (np.ascontiguousarray(queries.query_pdq, np.uint64), np.ascontiguousarray(ok, np.bool_),
            np.ascontiguousarray(queries.query_phash, np.uint64), np.ascontiguousarray(ph_ok, np.bool_),
            np.ascontiguousarray(references.ref_pdq, np.uint64),
            np.ascontiguousarray(references.ref_phash, np.uint64), own, bool(only_owner), _PDQ_MAX, _PH_MAX)
    cap = 1 << 16
    while True:
        count, qi, rj, dp, dh, conf, as_is = _k.policy_candidates(*args, cap)
        if count <= cap:
            break
        cap = int(count)
    k = int(count)
    return PairFeatures(qi[:k], rj[:k], dp[:k], dh[:k], conf[:k], as_is[:k], pairs)


def _policy_terms(spec: QuerySpec) -> tuple[int, int, tuple[tuple[int, int | None], ...]]:
    """(PDQ threshold, pHash threshold, pHash bands (up_to, PDQ within or None for the
    upload as it is))."""
    pdq = spec.threshold("pdq", 256)
    phash = spec.threshold("phash", 64)
    bands: list[tuple[int, int | None]] = []
    for c in spec.confirmations or ():
        if c.algorithm != "phash" or c.by not in ("pdq", None):
            raise UsageError(f"calibration knows pHash bands confirmed by PDQ or the upload as it is, not {c.algorithm} by {c.by}")
    for c in spec.bands("phash", 64, ("pdq", "phash")):
        bands.append((min(c.up_to, _PH_MAX), None if c.by is None else min(c.within, 256)))
    if pdq > _PDQ_MAX or phash > _PH_MAX:
        raise UsageError(f"calibration supports PDQ thresholds up to {_PDQ_MAX} and pHash up to {_PH_MAX}")
    return pdq, phash, tuple(bands)


def policy_matches(features: PairFeatures, spec: QuerySpec) -> npt.NDArray[np.bool_]:
    """Which pairs of ``features`` (made with the same spec's gates) the spec's
    PDQ-or-pHash policy matches: PDQ within
    its threshold (quality gate passed), pHash within its threshold, or pHash within a
    band's end with PDQ of the same variant within the band's ``within`` (or, for a
    band without a second hash, the upload as it is within the band's end)."""
    pdq, phash, bands = _policy_terms(spec)
    hit = (features.min_pdq <= pdq) | (features.min_phash <= phash)
    for up_to, within in bands:
        hit |= (features.as_is <= up_to) if within is None else (features.confirm[:, up_to] <= within)
    return hit


@dataclass(frozen=True)
class PolicyCalibration:
    """False pairs of a whole global policy, and the ``within`` each band would allow.

    ``false_positives`` are the policy's matches among ``pairs`` unrelated pairs;
    ``standalone`` those of its thresholds alone. ``band_within[i]`` is, for the policy's
    ``i``-th PDQ-confirmed band (``bands[i]``), the largest PDQ ``within`` that keeps the
    whole policy's 95 % upper bound under the target, the other bands as they are
    (None: not even 0).
    """

    pairs: int
    target_fpr: float
    pdq_threshold: int
    phash_threshold: int
    bands: tuple[tuple[int, int | None], ...]
    false_positives: int
    standalone: int
    band_within: dict[int, int | None]
    images: int = 0
    skipped: int = 0

    @property
    def measured_fpr(self) -> float:
        return self.false_positives / max(self.pairs, 1)

    @property
    def upper_fpr(self) -> float:
        return upper_rate_bound(self.false_positives, self.pairs)

    @property
    def supported(self) -> bool:
        return self.pairs >= math.ceil(3 / self.target_fpr)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "images": self.images, "skipped": self.skipped, "target_fpr": self.target_fpr,
                "pdq_threshold": self.pdq_threshold, "phash_threshold": self.phash_threshold,
                "bands": [{"phash_up_to": u, "pdq_within": w} for u, w in self.bands],  # None: as-is only
                "false_positives": self.false_positives, "standalone_false_positives": self.standalone,
                "measured_fpr": self.measured_fpr, "upper_fpr_95": self.upper_fpr, "supported": self.supported,
                "recommended_within": [{"phash_up_to": self.bands[i][0], "pdq_within": w} for i, w in self.band_within.items()]}

    def summary(self) -> str:
        bands = ", ".join(f"pHash <= {u} " + ("for the upload as it is" if w is None else f"when PDQ <= {w}")
                          for u, w in self.bands) or "no band"
        lines = [
            f"policy: PDQ <= {self.pdq_threshold} (quality gate), pHash <= {self.phash_threshold}, {bands}",
            f"images {self.images} (skipped {self.skipped} unreadable), pairs compared {self.pairs:,}",
            f"false-positive pairs {self.false_positives} ({self.standalone} from the thresholds alone), "
            f"measured rate {self.measured_fpr:.3g}, 95% upper bound {self.upper_fpr:.3g} (target {self.target_fpr:g}): "
            + ("within the target" if self.upper_fpr <= self.target_fpr else "ABOVE the target"),
        ]
        if not self.supported:
            lines.append(f"TOO FEW PAIRS for a rate of {self.target_fpr:g}: need at least {math.ceil(3 / self.target_fpr):,}")
        for i, within in self.band_within.items():
            lines.append(f"band pHash <= {self.bands[i][0]} when PDQ <= {self.bands[i][1]}: the largest PDQ within that "
                         "keeps the policy's 95% upper bound under the target (other bands as they are): "
                         + ("none" if within is None else str(within)))
        return "\n".join(lines)


def calibrate_policy(
    features: PairFeatures, fpr: float = 1e-6, spec: QuerySpec | None = None, *, images: int = 0, skipped: int = 0
) -> PolicyCalibration:
    """The false pairs of ``spec``'s global policy (default: the Matcher's) among the
    unrelated pairs of ``features``, with the 95 % upper bound, and for each of its
    PDQ-confirmed bands the largest ``within`` that keeps the bound under ``fpr``."""
    target = _check_fpr(fpr)
    spec = QuerySpec(algorithms=("pdq", "phash")) if spec is None else spec
    pdq, phash, bands = _policy_terms(spec)
    hit = policy_matches(features, spec)
    alone = (features.min_pdq <= pdq) | (features.min_phash <= phash)
    n_alone = int(alone.sum())
    band_within: dict[int, int | None] = {}
    for i, (up_to, within) in enumerate(bands):
        if within is None:
            continue
        others = alone.copy()
        for j, (u, w) in enumerate(bands):
            if j != i:
                others |= (features.as_is <= u) if w is None else (features.confirm[:, u] <= w)
        conf = np.sort(features.confirm[~others, up_to])
        base = int(others.sum())
        best = None
        for x in range(257):
            if upper_rate_bound(base + int(np.searchsorted(conf, x, side="right")), features.pairs) <= target:
                best = x
        band_within[i] = best
    return PolicyCalibration(features.pairs, target, pdq, phash, bands, int(hit.sum()), n_alone, band_within, images, skipped)


def _policy_hash_one(args: tuple[str, QuerySpec]) -> tuple[Any, ...] | None:
    """One image as a reference (exact decode) and as an upload (the spec's views and
    orientations; a missing trimmed view repeats the first), as packed words."""
    path, spec = args
    try:
        ref = compute_hashes(path, ["pdq", "phash"], fast=False)
        views = spec.hash(path)
    except HashmatchError:
        return None
    views = (list(views) * 2)[:2] if spec.trim_borders else list(views)[:1]
    pdq = [r for v in views for r in v["pdq"]]
    ph = [r for v in views for r in v["phash"]]
    return (ref["pdq"][0].hash.to_words(), ref["phash"][0].hash.to_words(),
            HashBatch.from_hashes([r.hash for r in pdq]).words, HashBatch.from_hashes([r.hash for r in ph]).words,
            np.array([r.quality if r.quality is not None else 100 for r in pdq], np.int16))


def calibrate_policy_folder(
    folder: str | os.PathLike[str],
    fpr: float = 1e-6,
    *,
    spec: QuerySpec | None = None,
    recursive: bool = True,
    workers: int = 1,
) -> PolicyCalibration:
    """Hash every image under ``folder`` as the Matcher would (references exactly,
    uploads with ``spec``'s views and orientations; default: the Matcher's PDQ + pHash
    policy) and :func:`calibrate_policy` on every ordered pair of distinct images."""
    target = _check_fpr(fpr)
    spec = QuerySpec(algorithms=("pdq", "phash")) if spec is None else spec.with_algorithms(("pdq", "phash"))
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"not a folder: {os.fspath(folder)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    try:
        paths = _image_files(root, recursive)
    except OSError as exc:
        raise CalibrationError(f"cannot list {root}: {exc.strerror or exc}") from None
    jobs = [(str(p), spec) for p in paths]
    if workers <= 1 or len(jobs) < 64:
        results = [_policy_hash_one(job) for job in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_policy_hash_one, jobs, chunksize=16))
    rows = [r for r in results if r is not None]
    if len(rows) < 2:
        raise CalibrationError(f"need at least two readable images under {root}, found {len(rows)}")
    hashes = PolicyHashes(*(np.ascontiguousarray(np.stack([r[k] for r in rows])) for k in range(5)))
    features = policy_pair_features(hashes, hashes, np.arange(len(rows)), spec=spec)
    return calibrate_policy(features, target, spec, images=len(rows), skipped=len(results) - len(rows))

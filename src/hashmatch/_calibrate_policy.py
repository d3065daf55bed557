"""The global policy calibrated as a whole (issue 12): PDQ, pHash and pHash's bands.

The Matcher compares an upload through 16 variants (8 orientations x the upload as it
is and border-trimmed) and two algorithms, and lets pHash reach past its threshold in
bands that need more evidence (:class:`hashmatch.Confirmation`). Its false-positive rate
is the policy's, not any one hash's: :func:`policy_pair_features` finds, with every pair
compared (numba kernel ``policy_candidates``), each pair of unrelated images that some
policy of this shape could match, with what the policy looks at;
:func:`policy_matches` applies a :class:`~hashmatch.QuerySpec`'s policy to them, and
:func:`calibrate_policy` counts its false pairs with the 95 % upper bound and says how far
each band could go. ``hashmatch calibrate --policy`` runs it on a folder.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ._calibrate import _check_fpr, _folder_images, upper_rate_bound
from ._jit import kernels
from ._query import QuerySpec
from .errors import CalibrationError, HashmatchError, UsageError
from .hashers import compute_hashes
from .hashes import HashBatch

_k = kernels("hashmatch._calibrate_kernels")  # numba loads on first use, not at import

__all__ = [
    "PairFeatures",
    "PolicyCalibration",
    "PolicyHashes",
    "calibrate_policy",
    "calibrate_policy_folder",
    "policy_matches",
    "policy_pair_features",
]

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
        fields = ("query", "reference", "min_pdq", "min_phash", "confirm", "as_is")
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields), pairs=sum(p.pairs for p in parts))


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
            raise UsageError(
                f"calibration knows pHash bands confirmed by PDQ or the upload as it is, not {c.algorithm} by {c.by}"
            )
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
    root, paths = _folder_images(folder, recursive, workers)
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

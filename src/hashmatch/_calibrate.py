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
from ._scan._walk import WalkError, walk

_k = kernels("hashmatch._calibrate_kernels")  # numba loads on first use, not at import

__all__ = [
    "Calibration",
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


def _folder_images(folder: str | os.PathLike[str], recursive: bool, workers: object) -> tuple[Path, list[Path]]:
    """The folder and its image files; a missing folder, an unlistable one or a bad
    ``workers`` raise before any hashing."""
    root = Path(folder)
    if not root.is_dir():
        raise CalibrationError(f"not a folder: {os.fspath(folder)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UsageError(f"workers must be a positive integer, got {workers!r}")
    try:
        return root, _image_files(root, recursive)
    except OSError as exc:
        raise CalibrationError(f"cannot list {root}: {exc.strerror or exc}") from None


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
    root, paths = _folder_images(folder, recursive, workers)
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

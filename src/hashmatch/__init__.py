"""hashmatch: find known material in images.

Perceptual hashes (imagehash-compatible ahash, dhash, phash, whash, and PDQ), an exact
Hamming-distance index, and near-duplicate matching against reference lists.

Everything public is re-exported here and listed in ``__all__``; the modules behind
it are private.
"""

from __future__ import annotations

from ._loading import ImageLimits, trim_borders
from ._match import DEFAULT_CONFIRMATIONS, DEFAULT_THRESHOLDS, Confirmation, Match, Matcher
from ._references import AddResult, add_images
from ._query import QuerySpec
from ._scan import ERROR_KINDS, ScanResult, ScanRun, ScanSummary, scan
from ._store import NewEntry, ReferenceStore
from ._version import __version__
from .errors import (
    HashmatchError,
    ImageError,
    ImageTooLargeError,
    StoreError,
    UnknownAlgorithmError,
    UnreadableImageError,
    UsageError,
)
from .hashers import ALGORITHMS, HashResult, compute_hashes, compute_query_hashes, hash_image, hash_images
from .hashers._api import warmup as _warm_hashers
from .hashes import Hash, HashBatch
from .index import warmup as _warm_index
from .local._tables import warmup as _warm_local_tables


def warmup() -> None:
    """Compile every numba kernel now (hashers, indexes and the local stage's retrieval), so no request pays for it.

    Kernels are cached on disk after the first compile; this loads them from there.
    Call it once at server start-up. (:meth:`Matcher.warmup` loads only what one
    Matcher uses.)
    """
    _warm_hashers()
    _warm_index()
    _warm_local_tables()


__all__ = [
    "ALGORITHMS",
    "AddResult",
    "Confirmation",
    "DEFAULT_CONFIRMATIONS",
    "DEFAULT_THRESHOLDS",
    "ERROR_KINDS",
    "Hash",
    "HashBatch",
    "HashResult",
    "HashmatchError",
    "ImageError",
    "ImageLimits",
    "ImageTooLargeError",
    "Match",
    "Matcher",
    "NewEntry",
    "QuerySpec",
    "ReferenceStore",
    "ScanResult",
    "ScanRun",
    "ScanSummary",
    "StoreError",
    "UnknownAlgorithmError",
    "UnreadableImageError",
    "UsageError",
    "__version__",
    "add_images",
    "compute_hashes",
    "compute_query_hashes",
    "hash_image",
    "hash_images",
    "scan",
    "trim_borders",
    "warmup",
]

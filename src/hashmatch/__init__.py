"""hashmatch: find known material in images.

Perceptual hashes (imagehash-compatible ahash, dhash, phash, whash, and PDQ), an exact
Hamming-distance index, and near-duplicate matching against reference lists.
"""

from __future__ import annotations

from ._version import __version__
from .errors import HashmatchError, ImageTooLargeError, UnreadableImageError
from .hashers import ALGORITHMS, HashResult, compute_hashes, hash_image, hash_images
from .hashes import Hash, HashBatch
from ._loading import ImageLimits
from ._match import Match, Matcher
from ._store import ReferenceStore
from ._scan import ScanResult, ScanSummary, scan


def warmup() -> None:
    """Compile every numba kernel now (hashers and indexes), so no request pays for it.

    Kernels are cached on disk after the first compile; this loads them from there.
    Call it once at server start-up.
    """
    from .hashers._api import warmup as _warm_hashers
    from .index import warmup as _warm_index

    _warm_hashers()
    _warm_index()


__all__ = [
    "ALGORITHMS",
    "Hash",
    "HashBatch",
    "HashResult",
    "HashmatchError",
    "ImageLimits",
    "ImageTooLargeError",
    "Match",
    "Matcher",
    "ReferenceStore",
    "ScanResult",
    "ScanSummary",
    "UnreadableImageError",
    "__version__",
    "compute_hashes",
    "hash_image",
    "hash_images",
    "scan",
    "warmup",
]

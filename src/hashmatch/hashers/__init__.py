"""Hashing algorithms, by name in :data:`ALGORITHMS`, and the entry points that use them."""

from __future__ import annotations

from . import imagehash_compat as _imagehash_compat  # registers ahash, dhash, phash, whash
from . import pdq as _pdq  # registers pdq
from ._api import compute_hashes, compute_query_hashes, hash_image, hash_images
from ._registry import ALGORITHMS, DIHEDRAL_NAMES, Algorithm, HashResult, get_algorithm
from .imagehash_compat import ahash, dhash, phash, whash
from .pdq import PDQ_MIN_QUALITY, is_low_quality, pdq, pdq_dihedral, pdq_with_quality

del _imagehash_compat, _pdq

__all__ = [
    "ALGORITHMS",
    "DIHEDRAL_NAMES",
    "Algorithm",
    "HashResult",
    "PDQ_MIN_QUALITY",
    "ahash",
    "compute_hashes",
    "compute_query_hashes",
    "dhash",
    "get_algorithm",
    "hash_image",
    "hash_images",
    "is_low_quality",
    "pdq",
    "pdq_dihedral",
    "pdq_with_quality",
    "phash",
    "whash",
]

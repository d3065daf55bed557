"""The local stage: find a reference *inside* an upload by its keypoints.

Global hashes describe a whole image, so a crop, a tilt, a screenshot, a collage or a
meme frame moves them far from the original's. This stage finds what they miss: ORB
keypoints with 256-bit binary descriptors (OpenCV, the ``local`` extra), candidate
references retrieved through the exact :class:`~hashmatch.index.MultiIndexHash`
over their descriptors, and geometric verification (a RANSAC similarity with inlier,
spread, scale and rotation checks) before anything counts as a match.

* :func:`reference_features` / :func:`extract_features`: features of a reference or an upload;
  :func:`extract_views`: an upload's features, then those of its proposed regions (the
  picture of a screenshot, the tiles of a collage) at the references' scale.
* :func:`verify` with a :class:`VerificationRule`: one reference against one upload.
* :class:`LocalIndex` (``from_store``, ``from_features``, ``match``): many references.

Needs ``pip install 'hashmatch[local]'``; without it every entry point raises
:class:`~hashmatch.errors.MissingDependencyError` saying so.
"""

from __future__ import annotations

from ._features import (
    FORMAT_VERSION,
    REFERENCE_FEATURES,
    RETRIEVAL_FEATURES,
    LocalFeatures,
    extract_features,
    extract_views,
    reference_features,
    rereadable,
)
from ._index import DESCRIPTOR_ALGORITHM, LocalIndex, LocalMatch
from ._opencv import INSTALL_HINT, available
from ._verify import DEFAULT_RULE, Verification, VerificationRule, verify

__all__ = [
    "DEFAULT_RULE",
    "DESCRIPTOR_ALGORITHM",
    "FORMAT_VERSION",
    "INSTALL_HINT",
    "REFERENCE_FEATURES",
    "RETRIEVAL_FEATURES",
    "LocalFeatures",
    "LocalIndex",
    "LocalMatch",
    "Verification",
    "VerificationRule",
    "available",
    "extract_features",
    "extract_views",
    "reference_features",
    "rereadable",
    "verify",
]

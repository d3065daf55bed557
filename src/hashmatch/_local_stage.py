"""The Matcher's local stage: which mode, which index, and its findings as Matches.

The stage itself (keypoints, retrieval, geometric verification) is
:mod:`hashmatch.local`; this is the glue the Matcher needs around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from .errors import UsageError
from .local import LocalIndex, LocalMatch
from .local import available as local_available
from .local._opencv import opencv as require_opencv
from ._loading import ImageInput, ImageLimits
from ._matches import Match
from ._store import ReferenceStore

__all__ = ["LOCAL_MODES", "check_local_mode", "local_index", "local_matches", "local_records"]

_log = logging.getLogger(__name__)

LOCAL_MODES = ("auto", "fallback", "always", "off")

Describe = Callable[[Iterable[int]], Mapping[int, tuple[str | None, str | None, str | None]]]


def check_local_mode(mode: object) -> str:
    """``mode`` when valid; ``"fallback"`` and ``"always"`` need OpenCV now, not on the first upload."""
    if mode not in LOCAL_MODES:
        raise UsageError(f"local must be 'auto', 'fallback', 'always' or 'off', got {mode!r}")
    if mode in ("fallback", "always"):
        require_opencv()  # MissingDependencyError with the pip command
    return str(mode)


def local_index(mode: str, store: ReferenceStore) -> LocalIndex | None:
    """The local stage's index over ``store``, or None when it is off or has nothing."""
    if mode == "off" or not store.local_count():
        return None
    if mode == "auto" and not local_available():
        _log.warning("the store has local features but OpenCV is missing: pip install 'hashmatch[local]'")
        return None
    return LocalIndex.from_store(store)


def local_matches(local: LocalIndex, image: ImageInput, limits: ImageLimits, describe: Describe) -> list[Match]:
    """The local stage's verified matches of ``image``, with their evidence."""
    return local_records(local.match(image, limits=limits), describe)


def local_records(found: Sequence[LocalMatch], describe: Describe) -> list[Match]:
    """Verified local matches as Match records, with their evidence."""
    info = describe(m.entry_id for m in found)
    out = []
    for m in found:
        v = m.verification
        list_name, label, external_id = info.get(m.entry_id, (None, None, None))
        out.append(Match(
            m.entry_id, list_name, label, external_id, "orb", v.median_distance, None, "local",
            v.inliers, round(v.coverage, 4), round(v.scale, 4), round(v.rotation, 2), v.crop_box,
        ))
    return out

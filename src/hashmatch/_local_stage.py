"""The Matcher's local stage: which mode, which index, and its findings as Matches.

The stage itself (keypoints, retrieval, geometric verification) is
:mod:`hashmatch.local`; this is the glue the Matcher needs around it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from .errors import CorruptIndexError, UsageError
from .local import DESCRIPTOR_ALGORITHM, RETRIEVAL_FEATURES, LocalIndex, LocalMatch
from .local import available as local_available
from .local._index import store_source
from .local._opencv import opencv as require_opencv
from .local._snapshot import SNAPSHOT_NAME, LocalBase, base_from_index, base_from_rows, layered, needs_rebuild
from ._loading import ImageInput, ImageLimits
from ._matches import Match
from ._snapshots import SnapshotCache
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


def local_index(
    mode: str, store: ReferenceStore, current: LocalBase | None = None, snapshots: SnapshotCache | None = None
) -> tuple[LocalIndex | None, LocalBase | None]:
    """The local stage's index over ``store`` (None when it is off or has nothing) and
    its base, which the next refresh passes back as ``current``.

    As for global indexes (:mod:`hashmatch._refindex`): ``current`` or the newest usable
    snapshot, plus the store's changes since (:mod:`hashmatch.local._snapshot`); a full
    read, and a new snapshot, when there is neither or the changes are too many.
    """
    if mode == "off":
        return None, None
    if mode == "auto" and not local_available():
        if store.has_local_features():
            _log.warning("the store has local features but OpenCV is missing: pip install 'hashmatch[local]'")
        return None, None
    source = store_source(store)
    base = current
    if base is None and snapshots is not None:
        loaded = snapshots.load(SNAPSHOT_NAME, 256, holds=DESCRIPTOR_ALGORITHM)
        if loaded is not None:
            try:
                base = base_from_index(*loaded)
            except CorruptIndexError as exc:
                _log.warning("ignoring the local snapshot: %s", exc)
    if base is not None:
        changes = store.read_local_changes(RETRIEVAL_FEATURES, base.generation, base.newest)
        added = int(np.unique(changes.owners).size)
        if not needs_rebuild(base, added, int(changes.removed.size), changes.rewritten):
            local = layered(base, changes.rows, changes.owners, changes.removed, source)
            return (local if len(local) else None), base
    changes = store.read_local_changes(RETRIEVAL_FEATURES, -1, -1)
    local, base = base_from_rows(changes.rows, changes.owners, changes.generation, source)
    if base is None:
        return None, None
    if snapshots is not None:
        snapshots.save(SNAPSHOT_NAME, base.index, base.generation)
    return local, base


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

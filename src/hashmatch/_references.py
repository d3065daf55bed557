"""Adding references from images: hashed exactly, with local features when asked.

One function that both ``hashmatch refs add`` and Python callers use, so a reference
added either way is the same: every requested algorithm hashed with a full decode
(``fast=False``: a reference is hashed once, and the reduced-scale path drifted up to
8 bits on some small JPEGs), the file name (not its local path, which must not reach
partners' lists) as the external id, and the local stage's features stored beside the
first entry when the ``local`` extra is installed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ._loading import ImageInput
from ._store import NewEntry, ReferenceStore
from .errors import HashmatchError, MissingDependencyError, UsageError
from .hashers import compute_hashes
from .local import INSTALL_HINT, reference_features
from .local import available as local_available

__all__ = ["AddResult", "add_images"]


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :func:`add_images` did; ``failed`` pairs each unreadable image's position
    in the input with its error (the others were added)."""

    added: int
    duplicates: int
    entry_ids: tuple[int, ...]
    failed: tuple[tuple[int, HashmatchError], ...]


def add_images(
    store: ReferenceStore,
    list_name: str,
    images: Sequence[ImageInput],
    *,
    algorithms: Sequence[str] = ("phash",),
    label: str | None = None,
    external_id: str | None = None,
    local: bool | None = None,
) -> AddResult:
    """Hash ``images`` and add them to ``list_name`` (created when missing), one
    transaction per image; an image that cannot be read is reported, the rest added.

    ``external_id`` names a single image; by default a path's file name is used.
    ``local``: store local features (None: when the ``local`` extra is installed;
    True without it raises :class:`MissingDependencyError`).
    """
    names = tuple(algorithms)
    if not names:
        raise UsageError("add_images needs at least one algorithm")
    if external_id is not None and len(images) > 1:
        raise UsageError("external_id names one image; give one image with it")
    if local is None:
        local = local_available()
    elif local and not local_available():
        raise MissingDependencyError(f"local features need OpenCV: {INSTALL_HINT}")
    added = duplicates = 0
    entry_ids: list[int] = []
    failed: list[tuple[int, HashmatchError]] = []
    for position, image in enumerate(images):
        try:
            results = compute_hashes(image, names, fast=False)
            features = reference_features(image) if local else None
        except HashmatchError as exc:
            failed.append((position, exc))
            continue
        ext = external_id
        if ext is None and isinstance(image, (str, os.PathLike)):
            ext = os.path.basename(os.fspath(image))
        report = store.add_entries(list_name, [NewEntry(results[n][0].hash, results[n][0].quality, label, ext) for n in names])
        added += report.added
        duplicates += report.duplicates
        entry_ids += report.entry_ids
        if features is not None and report.entry_ids:
            store.add_local_features([(report.entry_ids[0], features.to_row())])
    return AddResult(added, duplicates, tuple(entry_ids), tuple(failed))

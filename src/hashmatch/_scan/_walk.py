"""Walking folders for scan (and for ``hashmatch hash -r`` and calibration).

One walker: a stable order (sorted names, depth first), symlinks skipped unless
followed, folder loops detected by identity, unreadable folders and vanished files
reported as :class:`WalkError` items in place, never raised.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass

__all__ = ["Entry", "WalkError", "kind_of_os_error", "os_message", "walk"]


@dataclass(frozen=True, slots=True)
class Entry:
    """A regular file found by the walk, with what ``stat`` said of it."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class WalkError:
    """A path the walk could not take: ``kind`` is one of the scan's error kinds."""

    path: str
    kind: str
    message: str


def kind_of_os_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    if isinstance(exc, PermissionError):
        return "permission"
    if exc.errno == 40:  # ELOOP on Linux: too many levels of symbolic links
        return "symlink_loop"
    return "os_error"


def os_message(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _matches_any(name: str, relative: str, patterns: Sequence[str]) -> bool:
    # A pattern with a slash is matched against the path below the scan root, else the name.
    return any(fnmatch.fnmatchcase(relative if "/" in p else name, p) for p in patterns)


def _count(skipped: MutableMapping[str, int], what: str) -> None:
    skipped[what] = skipped.get(what, 0) + 1


def walk(
    roots: Iterable[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    follow_symlinks: bool = False,
    skipped: MutableMapping[str, int] | None = None,
) -> Iterator[Entry | WalkError]:
    """Files under ``roots`` in a stable order, or errors in their place.

    A root is followed even when it is a symlink, and a root that is a file is yielded
    whatever its name. ``include``/``exclude`` are globs on the name, or on the path
    below the root when they hold a ``/``; ``exclude`` also prunes folders. What is
    passed over without an error (``symlink``, ``broken_symlink``, ``special`` files)
    is counted in ``skipped``.
    """
    counts: MutableMapping[str, int] = skipped if skipped is not None else {}
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            kind = "missing" if isinstance(exc, FileNotFoundError) else kind_of_os_error(exc)
            yield WalkError(root, kind, os_message(exc))
            continue
        except ValueError:  # a NUL in the name: no such path can exist
            yield WalkError(root, "os_error", "a path cannot contain a NUL character")
            continue
        if stat.S_ISREG(st.st_mode):
            yield Entry(root, st.st_size, st.st_mtime_ns)
            continue
        if not stat.S_ISDIR(st.st_mode):
            _count(counts, "special")
            continue
        # Folders on the current path, by identity: a symlink back into one of them is a loop.
        ident = (st.st_dev, st.st_ino)
        yield from _walk_dir(root, "", {ident}, include, exclude, follow_symlinks, counts)


def _walk_dir(
    folder: str,
    relative: str,
    ancestors: set[tuple[int, int]],
    include: Sequence[str],
    exclude: Sequence[str],
    follow_symlinks: bool,
    skipped: MutableMapping[str, int],
) -> Iterator[Entry | WalkError]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield WalkError(folder, kind_of_os_error(exc), f"cannot list folder: {os_message(exc)}")
        return
    for entry in entries:
        rel = f"{relative}/{entry.name}" if relative else entry.name
        if exclude and _matches_any(entry.name, rel, exclude):
            continue
        try:
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                _count(skipped, "symlink")
                continue
            st = entry.stat(follow_symlinks=True)
        except OSError as exc:
            kind = kind_of_os_error(exc)
            if kind == "vanished" and entry.is_symlink():
                _count(skipped, "broken_symlink")
                continue
            yield WalkError(entry.path, kind, os_message(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            child = (st.st_dev, st.st_ino)
            if child in ancestors:
                yield WalkError(entry.path, "symlink_loop", "folder symlink leads back into its own path")
                continue
            ancestors.add(child)
            yield from _walk_dir(entry.path, rel, ancestors, include, exclude, follow_symlinks, skipped)
            ancestors.discard(child)
        elif stat.S_ISREG(st.st_mode):
            if include and not _matches_any(entry.name, rel, include):
                continue
            yield Entry(entry.path, st.st_size, st.st_mtime_ns)
        else:
            _count(skipped, "special")

"""What a scan yields: :class:`ScanResult` per file, a live :class:`ScanSummary`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._matches import Match

__all__ = ["ERROR_KINDS", "ScanResult", "ScanSummary"]

ERROR_KINDS: Mapping[str, str] = {
    "not_image": "not a recognised image format",
    "unreadable": "empty, truncated or undecodable image",
    "too_large": "over the file-size or pixel limit",
    "permission": "permission denied (file or folder)",
    "vanished": "listed, then gone before it was read",
    "not_regular": "not a regular file (FIFO, device, socket)",
    "symlink_loop": "a folder symlink leading back into its own path",
    "missing": "a path given to scan does not exist",
    "os_error": "any other operating-system error while reading",
    "worker_crashed": "the process hashing this file died (a decoder crash)",
    "timeout": "hashing this file took longer than the scan's per-file limit (a decoder that hangs)",
    "internal_error": "an unexpected exception while hashing (a bug: please report)",
}
"""Every ``error_kind`` a :class:`ScanResult` can carry, with what it means."""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One file's outcome: its identity, its own hashes, its matches, or why it failed.

    ``hashes`` maps each algorithm to the hex of the file as stored (the dihedral
    variants used for matching are not kept). ``matches`` are the matcher's records,
    nearest first. ``error_kind`` is a key of :data:`ERROR_KINDS` or None.
    """

    path: str
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    hashes: Mapping[str, str] = field(default_factory=dict)
    quality: Mapping[str, int] = field(default_factory=dict)
    matches: tuple[Match, ...] = ()
    error_kind: str | None = None
    error: str | None = None

    @property
    def matched(self) -> bool:
        return bool(self.matches)

    @property
    def status(self) -> str:
        """``"error"``, ``"matched"`` or ``"clean"``."""
        if self.error_kind is not None:
            return "error"
        return "matched" if self.matches else "clean"

    def to_row(self, *, include_hashes: bool = True) -> dict[str, Any]:
        """The report row: plain JSON-ready values, reference hashes never included."""
        mtime = None
        if self.mtime_ns is not None:
            mtime = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.mtime_ns / 1e9))
        return {
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "mtime": mtime,
            "sha256": self.sha256,
            "status": self.status,
            "hashes": dict(self.hashes) if include_hashes and self.hashes else None,
            "quality": dict(self.quality) if include_hashes and self.quality else None,
            "matches": [m.to_dict() for m in self.matches],
            "error_kind": self.error_kind,
            "error": self.error,
        }


@dataclass
class ScanSummary:
    """Counts kept up to date while a scan runs; final once iteration ends."""

    listed: int = 0
    """Files found by walking (including those a resumed report already holds)."""
    already_done: int = 0
    """Files skipped because the report already holds them (same path, size, mtime)."""
    previously_matched: int = 0
    """Files among ``already_done`` that matched in the earlier run."""
    to_do: int = 0
    """Files this run will process: ``listed - already_done`` plus walk errors."""
    processed: int = 0
    hashed: int = 0
    matched_files: int = 0
    matches: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    """Not scanned and not in the report: ``symlink`` (not followed), ``special`` files."""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def elapsed(self) -> float:
        return (self.finished if self.finished is not None else time.monotonic()) - self.started

    @property
    def files_per_second(self) -> float:
        elapsed = self.elapsed
        return self.processed / elapsed if elapsed > 0 else 0.0

    @property
    def any_matched(self) -> bool:
        """Whether this run or the run it resumed found a match (the CLI's exit code 1)."""
        return self.matched_files + self.previously_matched > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "already_done": self.already_done,
            "previously_matched": self.previously_matched,
            "processed": self.processed,
            "hashed": self.hashed,
            "matched_files": self.matched_files,
            "matches": self.matches,
            "errors": dict(sorted(self.errors.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "elapsed_seconds": round(self.elapsed, 3),
            "files_per_second": round(self.files_per_second, 2),
        }

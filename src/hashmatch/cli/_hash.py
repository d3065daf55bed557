"""``hashmatch hash``: one row per file and algorithm, errors reported in place."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import click

from .._csv import CsvWriter
from .._scan._walk import WalkError, walk
from ..errors import HashmatchError
from ..hashers import compute_hashes
from ._options import EXIT_FOUND, EXIT_OK, algorithms_option, follow_symlinks_option


def _files(paths: tuple[str, ...], recursive: bool, follow_symlinks: bool) -> Iterator[tuple[str, str | None]]:
    """(path, problem) in a stable order, through the scan's walker; a problem replaces hashing."""
    for raw in paths:
        if os.path.isdir(raw):
            if not recursive:
                yield raw, "is a directory (use --recursive)"
                continue
        elif os.path.exists(raw) and not os.path.isfile(raw):
            yield raw, "not a regular file"  # a FIFO or device: never read
            continue
        for item in walk([raw], follow_symlinks=follow_symlinks):
            yield item.path, item.message if isinstance(item, WalkError) else None


@click.command("hash")
@click.argument("paths", nargs=-1, required=True)
@algorithms_option(default="phash", help="Comma-separated algorithm names.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--recursive", "-r", is_flag=True, help="Walk folders.")
@follow_symlinks_option()
@click.option("--exact", is_flag=True, help="Decode at full resolution (no reduced-scale JPEG decode).")
@click.option("--exif-transpose", is_flag=True, help="Apply EXIF orientation before hashing (default: stored pixels).")
def hash_command(
    paths: tuple[str, ...], algorithms: tuple[str, ...], fmt: str, recursive: bool, follow_symlinks: bool,
    exact: bool, exif_transpose: bool,
) -> int:
    """Hash image files: one row per file and algorithm.

    Columns: path, algorithm, hash, quality (PDQ only) and error. Exit code 0 when every
    file was hashed, 1 when some could not be read, 2 for usage errors.
    """
    out = sys.stdout
    writer = CsvWriter(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["path", "algorithm", "hash", "quality", "error"])
    failures = 0
    for path, problem in _files(paths, recursive, follow_symlinks):
        rows: list[tuple[str, str, str, int | None, str]] = []
        if problem is None:
            try:
                results = compute_hashes(path, algorithms, fast=not exact, exif_transpose=exif_transpose)
            except HashmatchError as exc:
                problem = str(exc)
            else:
                for name in algorithms:
                    result = results[name][0]
                    rows.append((path, name, result.hash.hex(), result.quality, ""))
        if problem is not None:
            failures += 1
            rows = [(path, name, "", None, problem) for name in algorithms]
        for path_, name, hexstr, quality, error in rows:
            if writer is not None:
                writer.writerow([path_, name, hexstr, quality, error])
            else:
                record = {"path": path_, "algorithm": name, "hash": hexstr or None, "quality": quality, "error": error or None}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    return EXIT_FOUND if failures else EXIT_OK

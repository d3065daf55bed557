"""``hashmatch hash``: one row per file and algorithm, errors reported in place."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from ..errors import HashmatchError
from ..hashers import ALGORITHMS, compute_hashes

EXIT_OK, EXIT_SOME_UNREADABLE, EXIT_USAGE = 0, 1, 2


def _split_algorithms(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALGORITHMS]
    if not names or unknown:
        raise click.BadParameter(
            f"unknown algorithm(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(sorted(ALGORITHMS))}"
        )
    return names


def _walk(paths: tuple[str, ...], recursive: bool) -> Iterator[tuple[str, str | None]]:
    """Yield (path, problem) in a stable order; a problem replaces hashing."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not recursive:
                yield raw, "is a directory (use --recursive)"
                continue
            for root, dirs, files in os.walk(path, onerror=None):
                dirs.sort()
                for name in sorted(files):
                    yield os.path.join(root, name), None
        else:
            yield raw, None


def _safe_cell(text: str) -> str:
    # A leading =, +, - or @ would run as a formula when the CSV is opened in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@click.command("hash")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--algorithm",
    "-a",
    "algorithms",
    default="phash",
    show_default=True,
    help="Comma-separated algorithm names (see `hashmatch hash --help` for the list).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--recursive", "-r", is_flag=True, help="Walk folders.")
@click.option("--exact", is_flag=True, help="Decode at full resolution (no reduced-scale JPEG decode).")
@click.option("--exif-transpose", is_flag=True, help="Apply EXIF orientation before hashing (default: stored pixels).")
def hash_command(
    paths: tuple[str, ...], algorithms: str, fmt: str, recursive: bool, exact: bool, exif_transpose: bool
) -> int:
    """Hash image files: one row per file and algorithm.

    Columns: path, algorithm, hash, quality (PDQ only) and error. Exit code 0 when every
    file was hashed, 1 when some could not be read, 2 for usage errors.
    """
    names = _split_algorithms(algorithms)
    out = sys.stdout
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["path", "algorithm", "hash", "quality", "error"])
    failures = 0
    for path, problem in _walk(paths, recursive):
        rows: list[tuple[str, str, str, int | None, str]] = []
        if problem is None:
            try:
                results = compute_hashes(path, names, fast=not exact, exif_transpose=exif_transpose)
            except HashmatchError as exc:
                problem = str(exc)
            else:
                for name in names:
                    result = results[name][0]
                    rows.append((path, name, result.hash.hex(), result.quality, ""))
        if problem is not None:
            failures += 1
            rows = [(path, name, "", None, problem) for name in names]
        for path_, name, hexstr, quality, error in rows:
            if writer is not None:
                q = "" if quality is None else str(quality)
                writer.writerow([_safe_cell(path_), name, hexstr, q, _safe_cell(error)])
            else:
                record = {"path": path_, "algorithm": name, "hash": hexstr or None, "quality": quality, "error": error or None}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
    return EXIT_SOME_UNREADABLE if failures else EXIT_OK

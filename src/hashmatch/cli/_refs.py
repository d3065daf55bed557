"""``hashmatch refs``: manage reference lists in a store (import, add, retract, export, stats)."""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence

import click

from .._hashlists import FORMATS, RejectedRow
from .._references import add_images
from .._store import ReferenceStore
from ..errors import UsageError
from ..hashes import DEFAULT_BITS
from ._options import EXIT_FOUND, EXIT_OK, algorithms_option, store_option

_SHOWN_REJECTIONS = 20  # rows listed one by one; the rest are counted by reason


def _report_rejections(source: str, rejected: Sequence[RejectedRow], algorithm: str | None) -> None:
    """List the first rejected rows, then counts by reason, and a hint when every row
    has the length of another algorithm (a PDQ list imported as phash)."""
    for row in rejected[:_SHOWN_REJECTIONS]:
        click.echo(f"{source}: rejected {row}", err=True)
    if len(rejected) > _SHOWN_REJECTIONS:
        click.echo(f"{source}: … and {len(rejected) - _SHOWN_REJECTIONS} more rejected rows", err=True)
        for reason, count in Counter(r.reason for r in rejected).most_common(5):
            click.echo(f"{source}: {count} rows: {reason}", err=True)
    digits = {m.group(1) for r in rejected if (m := re.search(r"wrong length for \S+: (\d+) hex digits", r.reason))}
    if len(digits) == 1:
        width = int(digits.pop())
        fits = sorted(name for name, bits in DEFAULT_BITS.items() if (bits + 3) // 4 == width and name != algorithm)
        if fits:
            click.echo(f"{source}: hint: {width}-digit hashes are {' or '.join(fits)}; import with --algorithm {fits[0]}", err=True)


@click.group("refs")
def refs_group() -> None:
    """Reference lists of known material: import, add, retract, export, stats."""


@refs_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@store_option(must_exist=False)
@click.option("--list", "list_name", required=True, help="List to import into (created when missing).")
@algorithms_option(
    default=None, computable=False, single=True, help="Algorithm of the hashes (for hex lists and CSV without that column)."
)
@click.option("--format", "fmt", type=click.Choice(["auto", *FORMATS]), default="auto", show_default=True)
@click.option("--source", default=None, help="Where the list came from (recorded for a new list).")
@click.option("--description", default=None, help="What the list is (recorded for a new list).")
@click.option("--strict", is_flag=True, help="Import nothing if any row is bad.")
def import_command(
    file: str, store_path: str, list_name: str, algorithms: tuple[str, ...] | None, fmt: str,
    source: str | None, description: str | None, strict: bool,
) -> int:
    """Import a hash-list file: CSV/TSV with a header, plain hex, or ThreatExchange PDQ.

    Bad rows are listed on stderr with their line numbers and the rest imported, in one
    transaction. Exit code 0 when every row was imported or a duplicate, 1 when some
    rows were rejected, 2 on error.
    """
    algorithm = algorithms[0] if algorithms else None
    with ReferenceStore(store_path) as store:
        source_file = click.get_text_stream("stdin") if file == "-" else file
        report = store.import_file(
            source_file, list_name, algorithm=algorithm, format=fmt,
            strict=strict, source_name=source, description=description,
        )
    _report_rejections(file, report.rejected, algorithm)
    click.echo(f"{report.added} added, {report.duplicates} duplicates skipped, {report.rejected_count} rejected")
    return EXIT_FOUND if report.rejected else EXIT_OK


@refs_group.command("add")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@store_option(must_exist=False)
@click.option("--list", "list_name", required=True, help="List to add to (created when missing).")
@algorithms_option(default="phash", help="Comma-separated algorithms.")
@click.option("--label", default=None, help="Label or category for every added entry.")
@click.option("--external-id", default=None, help="External id for the entries (default: each file's name).")
@click.option(
    "--local/--no-local", "local", default=None,
    help="Also store local features (keypoints) for the local stage. Default: when the 'local' extra is installed.",
)
def add_command(
    images: tuple[str, ...], store_path: str, list_name: str, algorithms: tuple[str, ...], label: str | None,
    external_id: str | None, local: bool | None,
) -> int:
    """Hash images exactly and add them to a list (the file name, not its path, becomes
    the external id: lists are shared with partners, local paths are not).

    Exit code 0 when every image was added (or already there), 1 when some could not
    be read, 2 on error.
    """
    if external_id is not None and len(images) > 1:
        raise UsageError("--external-id names one image; give one image with it")
    with ReferenceStore(store_path) as store:
        result = add_images(
            store, list_name, images, algorithms=algorithms, label=label, external_id=external_id, local=local
        )
    for position, exc in result.failed:
        click.echo(f"{images[position]}: {exc}", err=True)
    click.echo(f"{result.added} added, {result.duplicates} duplicates skipped, {len(result.failed)} unreadable")
    for entry_id in result.entry_ids:
        click.echo(f"added entry {entry_id}")
    return EXIT_FOUND if result.failed else EXIT_OK


@refs_group.command("retract")
@click.argument("entry_ids", nargs=-1, required=True, type=click.IntRange(1, 2**63 - 1))
@store_option(must_exist=False)
@click.option("--reason", default=None, help="Why (kept with the entry for audit).")
def retract_command(entry_ids: tuple[int, ...], store_path: str, reason: str | None) -> int:
    """Retract entries by id: kept for audit, never matched again.

    Exit code 0 when every id was retracted, 1 when some were unknown or already retracted.
    """
    with ReferenceStore(store_path, create=False) as store:
        count = store.retract(entry_ids, reason=reason)
    click.echo(f"{count} retracted")
    if count < len(set(entry_ids)):
        click.echo(f"{len(set(entry_ids)) - count} id(s) unknown or already retracted", err=True)
        return EXIT_FOUND
    return EXIT_OK


@refs_group.command("export")
@store_option(must_exist=False)
@click.option("--output", "-o", default="-", type=click.Path(dir_okay=False, allow_dash=True), show_default=True)
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="csv", show_default=True)
@click.option("--list", "list_name", default=None, help="Only this list.")
@algorithms_option(default=None, computable=False, single=True, help="Only this algorithm.")
def export_command(
    store_path: str, output: str, fmt: str, list_name: str | None, algorithms: tuple[str, ...] | None
) -> int:
    """Write active entries as a hash-list file (retracted ones are left out)."""
    algorithm = algorithms[0] if algorithms else None
    with ReferenceStore(store_path, create=False, readonly=True) as store:
        if fmt == "hex" and algorithm is None and len(store.algorithms()) > 1:
            held = ", ".join(store.algorithms())
            raise UsageError(f"a hex list holds one algorithm and this store has {held}: choose one with --algorithm")
        dest = sys.stdout if output == "-" else output
        count = store.export_file(dest, format=fmt, list_name=list_name, algorithm=algorithm)
    click.echo(f"{count} exported", err=True)
    return EXIT_OK


@refs_group.command("stats")
@store_option(must_exist=False)
def stats_command(store_path: str) -> int:
    """Lists with their active and retracted counts per algorithm."""
    with ReferenceStore(store_path, create=False, readonly=True) as store:
        infos = {info.name: info for info in store.lists()}
        rows = store.stats()
        click.echo(f"store {store_path}: generation {store.generation}, {len(store)} active entries")
    click.echo(f"{'list':<24} {'algorithm':<10} {'active':>10} {'retracted':>10}  source")
    for row in rows:
        source = infos[row.list_name].source or "" if row.list_name in infos else ""
        click.echo(f"{row.list_name:<24} {row.algorithm or '-':<10} {row.active:>10} {row.retracted:>10}  {source}")
    return EXIT_OK

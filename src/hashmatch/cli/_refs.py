"""``hashmatch refs``: manage reference lists in a store (import, add, retract, export, stats)."""

from __future__ import annotations

import sys

import click

from ..errors import HashmatchError, MissingDependencyError
from ..hashers import ALGORITHMS, compute_hashes
from .._hashlists import FORMATS
from .._store import NewEntry, ReferenceStore

EXIT_OK, EXIT_PARTIAL = 0, 1

_store_option = click.option(
    "--store",
    "store_path",
    required=True,
    envvar="HASHMATCH_STORE",
    type=click.Path(dir_okay=False),
    help="The reference store (SQLite file); also $HASHMATCH_STORE.",
)


def _algorithm_names(value: str | None, *, computable: bool = False) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    # Lists of PDQ hashes can be imported before a PDQ hasher is installed.
    unknown = [n for n in names if n not in ALGORITHMS and (computable or n != "pdq")]
    if not names or unknown:
        raise click.BadParameter(
            f"unknown algorithm(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(sorted(ALGORITHMS))}"
        )
    return names


@click.group("refs")
def refs_group() -> None:
    """Reference lists of known material: import, add, retract, export, stats."""


@refs_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_store_option
@click.option("--list", "list_name", required=True, help="List to import into (created when missing).")
@click.option("--algorithm", "-a", default=None, help="Algorithm of the hashes (for hex lists and CSV without that column).")
@click.option("--format", "fmt", type=click.Choice(["auto", *FORMATS]), default="auto", show_default=True)
@click.option("--source", default=None, help="Where the list came from (recorded for a new list).")
@click.option("--description", default=None, help="What the list is (recorded for a new list).")
@click.option("--strict", is_flag=True, help="Import nothing if any row is bad.")
def import_command(
    file: str, store_path: str, list_name: str, algorithm: str | None, fmt: str,
    source: str | None, description: str | None, strict: bool,
) -> int:
    """Import a hash-list file: CSV/TSV with a header, plain hex, or ThreatExchange PDQ.

    Bad rows are listed on stderr with their line numbers and the rest imported, in one
    transaction. Exit code 0 when every row was imported or a duplicate, 1 when some
    rows were rejected, 2 on error.
    """
    names = _algorithm_names(algorithm)
    if names is not None and len(names) != 1:
        raise click.BadParameter("give one algorithm for an import", param_hint="--algorithm")
    with ReferenceStore(store_path) as store:
        source_file = click.get_text_stream("stdin") if file == "-" else file
        report = store.import_file(
            source_file, list_name, algorithm=names[0] if names else None, format=fmt,
            strict=strict, source_name=source, description=description,
        )
    for row in report.rejected:
        click.echo(f"{file}: rejected {row}", err=True)
    click.echo(f"{report.added} added, {report.duplicates} duplicates skipped, {report.rejected_count} rejected")
    return EXIT_PARTIAL if report.rejected else EXIT_OK


@refs_group.command("add")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_store_option
@click.option("--list", "list_name", required=True, help="List to add to (created when missing).")
@click.option("--algorithm", "-a", "algorithms", default="phash", show_default=True, help="Comma-separated algorithms.")
@click.option("--label", default=None, help="Label or category for every added entry.")
@click.option(
    "--local/--no-local", "local", default=None,
    help="Also store local features (keypoints) for the local stage. Default: when the 'local' extra is installed.",
)
def add_command(
    images: tuple[str, ...], store_path: str, list_name: str, algorithms: str, label: str | None, local: bool | None,
) -> int:
    """Hash images and add them to a list (the file name becomes the external id).

    References are hashed exactly (full decode), once. Exit code 0 when every image
    was added (or already there), 1 when some could not be read, 2 on error.
    """
    from .. import local as local_stage

    names = _algorithm_names(algorithms, computable=True) or []
    if local is None:
        local = local_stage.available()
    elif local:
        if not local_stage.available():
            raise MissingDependencyError(f"--local needs OpenCV: {local_stage.INSTALL_HINT}")
    failures = added = duplicates = 0
    new_ids: list[int] = []
    with ReferenceStore(store_path) as store:
        for path in images:
            try:
                # fast=False: a reduced-scale decode drifted some small JPEGs' hashes by
                # up to 8 bits (issue 12); a reference is hashed once, so pay for exactness.
                results = compute_hashes(path, names, fast=False)
                features = local_stage.reference_features(path) if local else None
            except HashmatchError as exc:
                click.echo(f"{path}: {exc}", err=True)
                failures += 1
                continue
            entries = [NewEntry(results[n][0].hash, results[n][0].quality, label, path) for n in names]
            report = store.add_entries(list_name, entries)
            added += report.added
            duplicates += report.duplicates
            new_ids += report.entry_ids
            if features is not None and report.entry_ids:
                store.add_local_features([(report.entry_ids[0], features.to_row())])
    click.echo(f"{added} added, {duplicates} duplicates skipped, {failures} unreadable")
    for entry_id in new_ids:
        click.echo(f"added entry {entry_id}")
    return EXIT_PARTIAL if failures else EXIT_OK


@refs_group.command("retract")
@click.argument("entry_ids", nargs=-1, required=True, type=int)
@_store_option
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
        return EXIT_PARTIAL
    return EXIT_OK


@refs_group.command("export")
@_store_option
@click.option("--output", "-o", default="-", type=click.Path(dir_okay=False, allow_dash=True), show_default=True)
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="csv", show_default=True)
@click.option("--list", "list_name", default=None, help="Only this list.")
@click.option("--algorithm", "-a", default=None, help="Only this algorithm.")
def export_command(store_path: str, output: str, fmt: str, list_name: str | None, algorithm: str | None) -> int:
    """Write active entries as a hash-list file (retracted ones are left out)."""
    with ReferenceStore(store_path, create=False) as store:
        dest = sys.stdout if output == "-" else output
        count = store.export_file(dest, format=fmt, list_name=list_name, algorithm=algorithm)
    click.echo(f"{count} exported", err=True)
    return EXIT_OK


@refs_group.command("stats")
@_store_option
def stats_command(store_path: str) -> int:
    """Lists with their active and retracted counts per algorithm."""
    with ReferenceStore(store_path, create=False) as store:
        infos = {info.name: info for info in store.lists()}
        rows = store.stats()
        click.echo(f"store {store_path}: generation {store.generation}, {len(store)} active entries")
    click.echo(f"{'list':<24} {'algorithm':<10} {'active':>10} {'retracted':>10}  source")
    for row in rows:
        source = infos[row.list_name].source or "" if row.list_name in infos else ""
        click.echo(f"{row.list_name:<24} {row.algorithm or '-':<10} {row.active:>10} {row.retracted:>10}  {source}")
    return EXIT_OK

"""``hashmatch match``: check images against a reference store, grep's exit codes."""

from __future__ import annotations

import json
import sys

import click

from ..errors import HashmatchError
from .._match import Matcher
from .._store import store_is_writable

EXIT_NO_MATCH, EXIT_MATCH, EXIT_ERROR = 0, 1, 2


def _thresholds(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not name.strip() or not number.strip().isdigit():
            raise click.BadParameter(f"expected ALGORITHM=DISTANCE, got {value!r}", param_hint="--threshold")
        out[name.strip()] = int(number)
    return out


@click.command("match")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--store", "store_path", required=True, envvar="HASHMATCH_STORE",
    type=click.Path(dir_okay=False, exists=True), help="The reference store; also $HASHMATCH_STORE.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True)
@click.option("--algorithm", "-a", "algorithms", default=None, help="Comma-separated algorithms (default: all in the store).")
@click.option("--threshold", "-t", "thresholds", multiple=True, metavar="ALG=N", help="Maximum distance, e.g. pdq=31 (repeatable).")
@click.option("--require", type=click.Choice(["any", "all"]), default="any", show_default=True,
              help="Match when any algorithm matches, or only when all do.")
@click.option("--no-dihedral", is_flag=True, help="Do not match rotated and mirrored variants.")
@click.option("--no-cache", is_flag=True, help="Do not read or write index snapshots beside the store.")
def match_command(
    images: tuple[str, ...], store_path: str, fmt: str, algorithms: str | None, thresholds: tuple[str, ...],
    require: str, no_dihedral: bool, no_cache: bool,
) -> int:
    """Match images against the lists in a store.

    Prints each match (text: one line per match; jsonl: one object per image). Exit
    code 0 when nothing matched, 1 when something matched, 2 on error (an unreadable
    image included), as grep does.
    """
    names = None if algorithms is None else [n.strip() for n in algorithms.split(",") if n.strip()]
    matcher = Matcher.from_store(
        store_path,
        algorithms=names,
        thresholds=_thresholds(thresholds),
        require=require,  # type: ignore[arg-type]
        dihedral=not no_dihedral,
        cache_snapshots=not no_cache,
        readonly=not store_is_writable(store_path),
    )
    out = sys.stdout
    any_match = any_error = False
    with matcher:
        for path in images:
            try:
                matches = matcher.match(path)
                error = None
            except HashmatchError as exc:
                matches, error = [], str(exc)
                any_error = True
            any_match = any_match or bool(matches)
            if fmt == "jsonl":
                record = {"path": path, "matched": bool(matches), "matches": [m.to_dict() for m in matches], "error": error}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            elif error is not None:
                click.echo(f"{path}: error: {error}", err=True)
            else:
                for m in matches:
                    where = f" ({m.orientation})" if m.orientation else ""
                    label = f" label={m.label}" if m.label else ""
                    ext = f" id={m.external_id}" if m.external_id else ""
                    out.write(
                        f"{path}: match entry={m.entry_id} list={m.list_name}{label}{ext} "
                        f"{m.algorithm} distance={m.distance}{where}\n"
                    )
            out.flush()
    if any_error:
        return EXIT_ERROR
    return EXIT_MATCH if any_match else EXIT_NO_MATCH

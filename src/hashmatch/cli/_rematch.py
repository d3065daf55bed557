"""``hashmatch rematch``: re-match the hashes recorded in scan reports; only new matches."""

from __future__ import annotations

import json
import sys

import click

from .._match import Matcher
from .._rematch import rematch_reports

EXIT_NO_MATCH, EXIT_MATCH = 0, 1


@click.command("rematch")
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--store", "store_path", required=True, envvar="HASHMATCH_STORE",
              type=click.Path(dir_okay=False, exists=True), help="The reference store; also $HASHMATCH_STORE.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True)
@click.option("--no-cache", is_flag=True, help="Do not read or write index snapshots beside the store.")
def rematch_command(reports: tuple[str, ...], store_path: str, fmt: str, no_cache: bool) -> int:
    """Find files in earlier scan reports that match references added since.

    Uses the hashes each report recorded (no image is read again) and prints only
    matches the report did not already have. Exit code 0 when there are none, 1 when
    there are, 2 on error (a file that is not a scan report included).
    """
    out = sys.stdout
    found = False
    with Matcher.from_store(store_path, cache_snapshots=not no_cache) as matcher:
        for result in rematch_reports(matcher, reports):
            found = True
            if fmt == "jsonl":
                record = {"report": result.report, "path": result.path, "sha256": result.sha256,
                          "matches": [m.to_dict() for m in result.matches]}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                for m in result.matches:
                    label = f" label={m.label}" if m.label else ""
                    ext = f" id={m.external_id}" if m.external_id else ""
                    out.write(f"{result.path}: new match entry={m.entry_id} list={m.list_name}{label}{ext} "
                              f"{m.algorithm} distance={m.distance} (from {result.report})\n")
            out.flush()
    return EXIT_MATCH if found else EXIT_NO_MATCH

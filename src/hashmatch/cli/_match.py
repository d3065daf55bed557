"""``hashmatch match``: check images against a reference store, grep's exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from .._match import Matcher
from .._matches import Match
from .._scan._warm import announce as announce_compile
from .._scan._warm import prepare as prepare_kernels
from .._store import ReferenceStore, store_is_writable
from ..errors import HashmatchError, UsageError
from ._options import (
    EXIT_ERROR,
    EXIT_FOUND,
    EXIT_OK,
    algorithms_option,
    check_known,
    dihedral_option,
    store_option,
    threshold_option,
)


@contextmanager
def open_matcher(store_path: str, asked: tuple[str, ...] | None, **options: Any) -> Iterator[Matcher]:
    """A Matcher over the store at ``store_path``, closed on exit; a :class:`UsageError`
    when the store holds nothing to match against or lacks an algorithm asked for
    (matching against nothing would say "no match")."""
    # A store this process may not write (a read-only deployment) is opened read-only.
    with ReferenceStore(store_path, create=False, readonly=not store_is_writable(store_path)) as store:
        held = store.algorithms()
        if not held:
            raise UsageError(f"{store_path} has no active entries to match against")
        check_known(asked, {name: 1 for name in held}, store_path)
        # With an empty numba cache: one line saying how long compiling takes, before
        # building the indexes compiles anything, then compile on two cores at once.
        announce_compile(tuple(asked or held), local=store.local_count() > 0)
        with Matcher.from_store(store, algorithms=asked, **options) as matcher:
            # The matcher's own spec: the local stage's kernels compile only if it runs.
            prepare_kernels(matcher, matcher.spec)
            yield matcher


@click.command("match")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@store_option(must_exist=True)
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True)
@algorithms_option(default=None, help="Comma-separated algorithms (default: all in the store).")
@threshold_option()
@click.option("--require", type=click.Choice(["any", "all"]), default="any", show_default=True,
              help="Match when any algorithm matches, or only when all do.")
@dihedral_option(default=True)
@click.option("--no-cache", is_flag=True, help="Do not read or write index snapshots beside the store.")
def match_command(
    images: tuple[str, ...], store_path: str, fmt: str, algorithms: tuple[str, ...] | None,
    thresholds: tuple[tuple[str, int], ...], require: str, dihedral: bool, no_cache: bool,
) -> int:
    """Match images against the lists in a store.

    Prints each match (text: one line per match, a local-stage match with its stage and
    evidence: inliers, crop box, rotation, scale, coverage; jsonl: one object per image). Exit
    code 0 when nothing matched, 1 when something matched, 2 on error (an unreadable
    image included), as grep does.
    """
    out = sys.stdout
    any_match = any_error = False
    options = {"thresholds": dict(thresholds), "require": require, "dihedral": dihedral, "cache_snapshots": not no_cache}
    with open_matcher(store_path, algorithms, **options) as matcher:
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
                    out.write(f"{path}: {_describe(m)}\n")
            out.flush()
    if any_error:
        return EXIT_ERROR
    return EXIT_FOUND if any_match else EXIT_OK


def _describe(m: Match) -> str:
    """One match as the text format's line: who, how near, and a local match's evidence."""
    label = f" label={m.label}" if m.label else ""
    ext = f" id={m.external_id}" if m.external_id else ""
    where = f" ({m.orientation})" if m.orientation else ""
    text = f"match entry={m.entry_id} list={m.list_name}{label}{ext} {m.algorithm} distance={m.distance}{where}"
    if m.stage == "global":
        return text
    evidence = [f"stage={m.stage}"]
    if m.inliers is not None:
        evidence.append(f"inliers={m.inliers}")
    if m.crop_box is not None:
        evidence.append("crop=" + ",".join(f"{v:.0f}" for v in m.crop_box))
    if m.rotation is not None:
        evidence.append(f"rotation={m.rotation:.1f}")
    if m.scale is not None:
        evidence.append(f"scale={m.scale:.3f}")
    if m.coverage is not None:
        evidence.append(f"coverage={m.coverage:.2f}")
    return f"{text} {' '.join(evidence)}"

"""What every command shares: exit codes, option types and the common options.

One spelling per option across commands (``-a/--algorithms``, ``-t/--threshold``,
``--dihedral/--no-dihedral``, ``--store``, ``-j/--workers``), one parameter type per
kind of value, validated with range checks and "did you mean" suggestions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from ..errors import UsageError, unknown_algorithm
from ..hashers import ALGORITHMS
from ..hashes import DEFAULT_BITS

__all__ = [
    "EXIT_ERROR",
    "EXIT_FOUND",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "AlgorithmList",
    "Threshold",
    "algorithms_option",
    "check_known",
    "dihedral_option",
    "store_option",
    "threshold_option",
    "workers_option",
]

EXIT_OK = 0
"""Nothing matched; everything done."""
EXIT_FOUND = 1
"""Something matched (``match``, ``scan``), or some inputs were refused (``hash``, ``refs``)."""
EXIT_ERROR = 2
"""An error of use or of the environment: one line on stderr says what to fix."""
EXIT_INTERRUPTED = 130
"""Ctrl-C."""

F = TypeVar("F", bound=Callable[..., Any])


class AlgorithmList(click.ParamType):
    """Comma-separated algorithm names, checked against the registry.

    ``computable=False`` also takes algorithms a store can hold without a hasher (PDQ
    lists arrive before anything computes PDQ); ``single=True`` takes exactly one.
    """

    name = "algorithms"

    def __init__(self, *, computable: bool = True, single: bool = False) -> None:
        self.computable = computable
        self.single = single

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        names = tuple(dict.fromkeys(n.strip() for n in str(value).split(",") if n.strip()))
        if not names:
            self.fail("give at least one algorithm name", param, ctx)
        known = ALGORITHMS if self.computable else DEFAULT_BITS
        for name in names:
            if name not in known:
                self.fail(str(unknown_algorithm(name, known)), param, ctx)
        if self.single and len(names) != 1:
            self.fail(f"give one algorithm, got {len(names)}", param, ctx)
        return names


class Threshold(click.ParamType):
    """``ALGORITHM=DISTANCE``, the distance from 0 to the algorithm's bit length."""

    name = "ALG=N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        name, sep, number = str(value).partition("=")
        name, number = name.strip(), number.strip()
        if not sep or not name or not number:
            self.fail(f"expected ALGORITHM=DISTANCE such as pdq=31, got {value!r}", param, ctx)
        if name not in DEFAULT_BITS:
            self.fail(str(unknown_algorithm(name, DEFAULT_BITS)), param, ctx)
        bits = DEFAULT_BITS[name]
        if not number.isdigit() or not 0 <= int(number) <= bits:
            self.fail(f"a {name} distance is an integer from 0 to {bits}, got {number!r}", param, ctx)
        return name, int(number)


def algorithms_option(
    *, default: str | None, help: str, computable: bool = True, single: bool = False  # noqa: A002
) -> Callable[[F], F]:
    # --algorithm is accepted too: the spelling of earlier releases and of one-algorithm commands.
    return click.option(
        "--algorithms", "--algorithm", "-a", "algorithms", type=AlgorithmList(computable=computable, single=single),
        default=default, show_default=default is not None, help=help,
    )


def threshold_option() -> Callable[[F], F]:
    return click.option(
        "--threshold", "-t", "thresholds", type=Threshold(), multiple=True,
        help="Maximum distance for one algorithm, e.g. pdq=31 (repeatable); replaces that algorithm's "
        "default rule (for pHash: 9 plus the bands that need PDQ, see README).",
    )


def dihedral_option(*, default: bool) -> Callable[[F], F]:
    return click.option(
        "--dihedral/--no-dihedral", default=default, show_default=True,
        help="Also compare the 7 rotated and mirrored variants of each image.",
    )


def store_option(*, must_exist: bool) -> Callable[[F], F]:
    return click.option(
        "--store", "store_path", required=True, envvar="HASHMATCH_STORE",
        type=click.Path(dir_okay=False, exists=must_exist),
        help="The reference store (SQLite file); also $HASHMATCH_STORE.",
    )


def workers_option(*, minimum: int, default: int | None, help: str) -> Callable[[F], F]:  # noqa: A002
    return click.option(
        "--workers", "-j", type=click.IntRange(min=minimum), default=default,
        show_default="all cores" if default is None else True, help=help,
    )


def follow_symlinks_option() -> Callable[[F], F]:
    # The one walker's switch (hashmatch._scan._walk), the same for every walking command.
    return click.option(
        "--follow-symlinks", is_flag=True, help="Follow symlinks found while walking (loops are detected).",
    )


def check_known(names: tuple[str, ...] | None, have: Mapping[str, int], what: str) -> None:
    """Refuse algorithms asked for that the references do not hold (``have``: counts)."""
    missing = [name for name in names or () if not have.get(name)]
    if missing:
        held = ", ".join(sorted(n for n, c in have.items() if c)) or "none"
        raise UsageError(f"{what} holds no active {', '.join(missing)} entries (it has: {held})")


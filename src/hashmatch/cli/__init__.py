"""The ``hashmatch`` command: thin wrappers over the public API.

Each subcommand lives in its own module and is added to :data:`group` below.
:func:`main` is the one error boundary: a mistake of use, a project error or anything
unexpected ends with exit code 2 and one line on stderr (the traceback only with
``--debug``); exit code 1 is left to the commands, where it means "found".
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass

import click

from .._version import __version__
from ..errors import HashmatchError
from . import _calibrate, _hash, _match, _refs, _rematch, _scan, _serve, _synth, _warmup
from ._options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK

__all__ = ["group", "main"]


@dataclass
class _Settings:
    debug: bool = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hashmatch")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_obj
def group(settings: _Settings, debug: bool) -> None:
    """Perceptual hashing and exact near-duplicate matching against known-material lists.

    Exit codes: 0 nothing matched (or all done), 1 something matched (for hash and
    refs: some inputs were refused), 2 an error, with one line saying what to fix.
    """
    settings.debug = debug


for _command in (
    _hash.hash_command,
    _scan.scan_command,
    _refs.refs_group,
    _match.match_command,
    _synth.synth_command,
    _calibrate.calibrate_command,
    _serve.serve_command,
    _rematch.rematch_command,
    _warmup.warmup_command,
):
    group.add_command(_command)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    args = list(argv) if argv is not None else sys.argv[1:]
    settings = _Settings()
    try:
        result = group.main(args=args, prog_name="hashmatch", standalone_mode=False, obj=settings)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("hashmatch: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:  # bad options and arguments
        where = f"{exc.ctx.command_path}: " if isinstance(exc, click.UsageError) and exc.ctx else "hashmatch: "
        click.echo(f"{where}error: {_one_line(exc.format_message())}", err=True)
        return EXIT_ERROR
    except HashmatchError as exc:
        if settings.debug:
            traceback.print_exc()
        click.echo(f"hashmatch: error: {_one_line(str(exc))}", err=True)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the one boundary: never exit 1 ("matched") on a crash
        if settings.debug:
            traceback.print_exc()
            click.echo(f"hashmatch: internal error: {type(exc).__name__}: {_one_line(str(exc))}", err=True)
        else:
            click.echo(
                f"hashmatch: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                "(a bug: rerun with --debug for the traceback and report it)",
                err=True,
            )
        return EXIT_ERROR
    return EXIT_OK if result is None else int(result)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``hashmatch`` command: thin wrappers over the public API.

Each subcommand lives in its own module and is added to :data:`group` below. Project
errors become one-line messages on stderr, never tracebacks.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .._version import __version__
from ..errors import HashmatchError

__all__ = ["group", "main"]

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hashmatch")
def group() -> None:
    """Perceptual hashing and exact near-duplicate matching against known-material lists."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (tests call this directly)."""
    try:
        result = group.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except HashmatchError as exc:
        click.echo(f"hashmatch: error: {exc}", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return int(result or 0)


def _register() -> None:
    # One line per subcommand module; each defines a click command named in its module.
    from . import _hash, _scan

    group.add_command(_hash.hash_command)
    group.add_command(_scan.scan_command)
    from . import _match, _refs

    group.add_command(_refs.refs_group)
    group.add_command(_match.match_command)
    from . import _bench, _calibrate, _synth

    group.add_command(_synth.synth_command)
    group.add_command(_calibrate.calibrate_command)
    group.add_command(_bench.bench_command)
    from . import _warmup

    group.add_command(_warmup.warmup_command)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

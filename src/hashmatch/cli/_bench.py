"""``hashmatch bench NAME [ARGS]``: run ``benchmarks/bench_NAME.py`` from a source checkout.

The benchmarks are not part of the installed package (they need the peers and write
into the checkout), so this only finds them when hashmatch is installed editable.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

_MMAP_THRESHOLD = "134217728"  # pinned for every image benchmark; see benchmarks/_common.py


def _benchmarks_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "benchmarks"


@click.command(
    "bench", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.argument("name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench_command(name: str, args: tuple[str, ...]) -> int:
    """Run the benchmark NAME (for example `robustness`) with ARGS; `--help` after NAME lists them.

    Results go to benchmarks/results/. glibc's mmap threshold is pinned for the run.
    """
    folder = _benchmarks_dir()
    available = sorted(p.stem[len("bench_") :] for p in folder.glob("bench_*.py")) if folder.is_dir() else []
    if not available:
        raise click.ClickException(
            "benchmarks/ is not part of the installed package: run `hashmatch bench` from a "
            "hashmatch source checkout installed with `pip install -e '.[bench]'`"
        )
    if not re.fullmatch(r"[a-z0-9_]+", name) or name not in available:
        raise click.BadParameter(f"unknown benchmark {name!r}; available: {', '.join(available)}", param_hint="NAME")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": _MMAP_THRESHOLD}
    return subprocess.call([sys.executable, str(folder / f"bench_{name}.py"), *args], env=env)

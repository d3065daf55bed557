"""``hashmatch synth``: write a folder of seeded synthetic images and their manifest."""

from __future__ import annotations

import click

from ..testing.synthetic import write_dataset
from ._options import EXIT_OK, workers_option


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 512x384, got {value!r}") from None
    return w, h


@click.command("synth")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@click.option("--count", type=click.IntRange(min=0), required=True, help="Number of images.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0, show_default=True)
@click.option("--size", default=None, help="WIDTHxHEIGHT for every image (default: varied sizes and aspects).")
@click.option("--long-side", type=click.IntRange(32, 8192), default=None, help="Fix the long side, keep each image's aspect.")
@workers_option(minimum=1, default=1, help="Processes (same files either way).")
@click.option("--format", "fmt", type=click.Choice(["jpeg", "png"]), default="jpeg", show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality.")
def synth_command(
    out_dir: str, count: int, seed: int, size: str | None, long_side: int | None, workers: int, fmt: str, quality: int
) -> int:
    """Write COUNT photo-like synthetic images made from SEED, plus manifest.json.

    The same seed, count and options give the same files, byte for byte.
    """
    try:
        manifest = write_dataset(
            out_dir, count, seed, size=_parse_size(size), format=fmt, quality=quality, long_side=long_side, workers=workers
        )
    except OSError as exc:  # an error of the environment, not of hashmatch: one line
        raise click.ClickException(f"cannot write to {out_dir}: {exc.strerror or exc}") from None
    click.echo(f"wrote {count} images and {manifest}")
    return EXIT_OK

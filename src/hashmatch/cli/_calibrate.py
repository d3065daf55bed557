"""``hashmatch calibrate``: a threshold for a target false-positive rate from the user's own images."""

from __future__ import annotations

import json
import os

import click

from .._calibrate import calibrate_folder


@click.command("calibrate")
@click.option("--negatives", required=True, type=click.Path(file_okay=False), help="Folder of distinct, unrelated images.")
@click.option("--algorithm", "-a", default="pdq", show_default=True)
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-6, show_default=True, help="Target false-positive rate per pair.")
@click.option("--dihedral", is_flag=True, help="Compare the 8 rotations and mirror images of each query, as dihedral matching does.")
@click.option("--min-quality", type=click.IntRange(0, 100), default=None, help="PDQ quality gate: leave images below it out of every pair.")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="cores")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (with the full distance histogram).")
def calibrate_command(
    negatives: str, algorithm: str, fpr: float, dihedral: bool, min_quality: int | None, workers: int, as_json: bool
) -> int:
    """Recommend a match threshold from all pairs of images in NEGATIVES.

    Every pair of distinct images is a pair that must not match; the threshold is the
    largest distance whose false-positive rate is at most FPR with 95% confidence.
    Exit code 0 with a recommendation, 1 when the folder is too small for the rate.
    """
    result = calibrate_folder(
        negatives, algorithm, fpr, dihedral=dihedral, min_quality=min_quality, workers=workers
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        click.echo(result.summary())
    return 0 if result.supported and result.threshold is not None else 1

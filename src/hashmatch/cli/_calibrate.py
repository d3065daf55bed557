"""``hashmatch calibrate``: a threshold for a target false-positive rate from the user's own images."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .._calibrate import _image_files, calibrate_folder
from .._calibrate_policy import calibrate_policy_folder
from ..errors import CalibrationError
from ..local._calibrate import calibrate_local
from .._scan._worker import available_cores
from ._options import EXIT_FOUND, EXIT_OK, algorithms_option, dihedral_option, workers_option


@click.command("calibrate")
@click.option("--negatives", required=True, type=click.Path(file_okay=False), help="Folder of distinct, unrelated images.")
@algorithms_option(default="pdq", single=True, help="The algorithm to calibrate.")
@click.option("--fpr", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-6, show_default=True, help="Target false-positive rate per pair.")
@dihedral_option(default=False)
@click.option("--min-quality", type=click.IntRange(0, 100), default=None, help="PDQ quality gate: leave images below it out of every pair.")
@workers_option(minimum=1, default=None, help="Processes that hash.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (with the full distance histogram).")
@click.option("--local", "local", is_flag=True, help="Calibrate the local stage's rule (minimum inliers) instead; needs hashmatch[local].")
@click.option("--policy", "policy", is_flag=True,
              help="Calibrate the default global policy as a whole (PDQ, pHash and pHash's PDQ-confirmed bands, "
                   "dihedral, border trimming, both gates): its false pairs, 95% upper bound and each band's limit.")
def calibrate_command(
    negatives: str, algorithms: tuple[str, ...], fpr: float, dihedral: bool, min_quality: int | None,
    workers: int | None, as_json: bool, local: bool, policy: bool,
) -> int:
    """Recommend a match threshold from all pairs of images in NEGATIVES.

    Every pair of distinct images is a pair that must not match; the threshold is the
    largest distance whose false-positive rate is at most FPR with 95% confidence.
    Exit code 0 with a recommendation, 1 when the folder is too small for the rate.
    """
    if local:
        return _calibrate_local(negatives, fpr, as_json)
    if policy:
        found = calibrate_policy_folder(negatives, fpr, workers=workers or available_cores())
        click.echo(json.dumps(found.to_dict(), indent=1) if as_json else found.summary())
        return EXIT_OK if found.supported and found.upper_fpr <= fpr else EXIT_FOUND
    result = calibrate_folder(
        negatives, algorithms[0], fpr, dihedral=dihedral, min_quality=min_quality, workers=workers or available_cores()
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=1))
    else:
        click.echo(result.summary())
    return EXIT_OK if result.supported and result.threshold is not None else EXIT_FOUND


def _calibrate_local(negatives: str, fpr: float, as_json: bool) -> int:
    root = Path(negatives)
    if not root.is_dir():
        raise CalibrationError(f"not a folder: {negatives}")
    try:
        paths = _image_files(root, True)
    except OSError as exc:
        raise CalibrationError(f"cannot list {root}: {exc.strerror or exc}") from None
    result = calibrate_local(paths, fpr)
    click.echo(json.dumps(result.to_dict(), indent=1) if as_json else result.summary())
    return EXIT_OK if result.supported else EXIT_FOUND

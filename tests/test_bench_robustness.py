"""The robustness benchmark's quick mode runs end to end and writes consistent figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_robustness.py"


@pytest.mark.slow
def test_bench_robustness_quick_writes_tables_and_consistent_rates(tmp_path) -> None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "134217728"}
    cmd = [sys.executable, str(SCRIPT), "--quick", "--no-peers", "--no-plots", "--workers", "2",
           "--out", str(tmp_path), "--data", str(tmp_path / "data"), "--seed", "5"]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    payload = json.loads((tmp_path / "robustness.json").read_text())
    assert "Default policy" in (tmp_path / "robustness.md").read_text()
    settings = payload["settings"]
    assert settings["negatives"] == 120 and settings["variants"] == 3 * 55
    assert settings["ordered_negative_pairs"] == 120 * 119
    for name, system in payload["systems"].items():
        previous = -1.0
        for target in ("0.001", "0.0001", "1e-05", "1e-06"):
            at = system["at"][target]
            assert at["fpr"] <= float(target) + 1e-12, name  # chosen thresholds honour the target
            assert 0.0 <= at["recall"] <= 1.0
        for point in system["roc"]:  # recall never falls as the allowed rate grows
            assert point["recall"] >= previous - 1e-12, name
            previous = point["recall"]
        if "per_threshold" in system:
            assert system["per_threshold"]["fpr"][-1] == pytest.approx(1.0)
            assert system["per_threshold"]["recall"][-1] == pytest.approx(1.0)
    # Dihedral matching finds every quarter turn and mirror image, plain matching does not.
    dihedral = payload["systems"]["pdq+dihedral"]["at"]["0.001"]["recall_by_family"]
    assert dihedral["rotate90"] == 1.0 and dihedral["mirror"] == 1.0
    assert payload["systems"]["pdq"]["at"]["0.001"]["recall_by_family"]["rotate90"] < 1.0
    # Trimming uniform borders off the query finds every padded and letterboxed copy.
    assert payload["systems"]["pdq+dihedral+trim"]["at"]["0.001"]["recall_by_family"]["pad"] == 1.0


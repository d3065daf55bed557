"""The benchmarks' shared plumbing: smoke runs never overwrite the recorded figures."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _common():  # noqa: ANN202 - a module loaded from a path
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "benchmarks" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_go_to_the_untracked_folder_unless_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = _common()
    parser = argparse.ArgumentParser()
    common.add_record_option(parser)
    assert parser.parse_args([]).record is False and parser.parse_args(["--record"]).record is True
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(common, "SCRATCH", tmp_path / "scratch")
    assert common.write_results("x", {"a": 1}, record=False) == tmp_path / "scratch" / "x.json"
    assert not (tmp_path / "results").exists()
    assert common.write_results("x", {"a": 1}, record=True) == tmp_path / "results" / "x.json"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/benchmarks/" + _common().SCRATCH.name + "/" in ignored


def test_pin_malloc_pins_both_thresholds_for_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    common = _common()
    common.pin_malloc()
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == common.MMAP_THRESHOLD
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == common.TRIM_THRESHOLD

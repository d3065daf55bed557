"""The CLI contract as a table: every command, each class of mistake, exit 2 and one line.

Exit code 1 means "matched" (or, for hash and refs, "some inputs refused"): a crash or a
mistake of use must never produce it. No Python traceback unless ``--debug``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

import hashmatch.hashers._api as hashers_api
from hashmatch.cli import main
from hashmatch.testing.synthetic import generate_image


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("contract")
    image = root / "known.png"
    generate_image(7, size=(96, 80)).save(image)
    other = root / "other.png"
    generate_image(8, size=(96, 80)).save(other)
    store = root / "refs.db"
    assert main(["refs", "add", str(image), "--store", str(store), "--list", "L", "-a", "phash,pdq"]) == 0
    empty = root / "empty.db"
    assert main(["refs", "add", str(image), "--store", str(empty), "--list", "L"]) == 0
    assert main(["refs", "retract", "1", "--store", str(empty)]) == 0
    hexlist = root / "pdq.txt"
    hexlist.write_text("\n".join(f"{i:064x}" for i in range(1, 60)) + "\n")
    folder = root / "folder"
    folder.mkdir()
    Image.open(image).save(folder / "a.png")
    return {
        "image": str(image), "other": str(other), "store": str(store), "empty": str(empty),
        "missing": str(root / "missing.db"), "hexlist": str(hexlist), "folder": str(folder),
        "out": str(root / "out.csv"),
    }


# (command line with {placeholders}, what the one line must say)
MISTAKES = [
    # unknown options and missing arguments, for every command
    ("hash --frobnicate {image}", "no such option"),
    ("hash", "missing argument"),
    ("match {image}", "missing option '--store'"),
    ("scan {folder}", "missing option '--store'"),
    ("refs import --store {store} --list L", "missing argument"),
    ("refs add {image} --store {store}", "missing option '--list'"),
    ("refs retract --store {store}", "missing argument"),
    ("refs export --store {store} --format xml", "'xml' is not one of"),
    ("refs stats", "missing option '--store'"),
    ("calibrate", "missing option '--negatives'"),
    ("synth --out {folder}", "missing option '--count'"),
    ("frobnicate", "no such command"),
    # algorithm names, with a suggestion
    ("hash {image} -a phahs", "did you mean 'phash'"),
    ("match {image} --store {store} -a phsah", "did you mean 'phash'"),
    ("scan {folder} --store {store} -a pdqq", "did you mean 'pdq'"),
    ("refs export --store {store} -a phsah", "did you mean 'phash'"),
    ("refs import {hexlist} --store {store} --list L -a md5", "unknown algorithm 'md5'"),
    ("refs add {image} --store {store} --list L -a whsh", "did you mean 'whash'"),
    ("calibrate --negatives {folder} -a pdqq", "did you mean 'pdq'"),
    ("calibrate --negatives {folder} -a pdq,phash", "give one algorithm"),
    # thresholds: range checked, names checked
    ("match {image} --store {store} -t phash=100", "from 0 to 64"),
    ("match {image} --store {store} -t pdq=300", "from 0 to 256"),
    ("match {image} --store {store} -t pdqq=10", "did you mean 'pdq'"),
    ("match {image} --store {store} -t phash", "ALGORITHM=DISTANCE"),
    # stores and inputs that are not there, or hold nothing to match
    ("match {image} --store {missing}", "does not exist"),
    ("scan {folder} --store {missing}", "does not exist"),
    ("refs stats --store {missing}", "missing"),
    ("refs import {missing} --store {store} --list L", "no such file"),
    ("match {image} --store {empty}", "no active entries"),
    ("scan {folder} --store {empty} -j 0 -q", "no active entries"),
    ("match {image} --store {store} -a whash", "no active whash entries"),
    ("scan {folder} --store {store} -a whash -j 0 -q", "no active whash entries"),
    # values out of range
    ("refs retract 99999999999999999999 --store {store}", "range"),
    ("refs retract 0 --store {store}", "range"),
    ("scan {folder} --store {store} -j -1", "range"),
    ("scan {folder} --store {store} --resume", "--resume needs --out"),
    # refusals of export
    ("refs export --store {store} --format hex", "choose one with --algorithm"),
    ("refs add {image} {other} --store {store} --list L --external-id x", "--external-id names one image"),
]


def _argv(line: str, world: dict[str, str]) -> list[str]:
    return [part.format(**world) for part in line.split()]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("line, says", MISTAKES, ids=[m[0].split(" {")[0] + ": " + m[1] for m in MISTAKES])
def test_every_mistake_exits_2_with_one_line(world, capsys, line, says):
    code = main(_argv(line, world))
    err = capsys.readouterr().err
    assert code == 2, err
    assert says.lower() in _one_line(err).lower()


def test_a_crash_inside_hashing_exits_2_with_one_line_and_a_debug_hint(world, capsys, monkeypatch):
    def crash(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(hashers_api, "_hash_loaded", crash)  # every path to a hash passes here
    for argv in (
        ["match", world["image"], "--store", world["store"]],
        ["hash", world["image"]],
        ["refs", "add", world["image"], "--store", world["store"], "--list", "L"],
    ):
        code = main(argv)
        line = _one_line(capsys.readouterr().err)
        assert code == 2
        assert "RuntimeError: decoder exploded" in line and "--debug" in line
    assert main(["--debug", "match", world["image"], "--store", world["store"]]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_real_match_is_the_only_exit_1(world, capsys):
    assert main(["match", world["image"], "--store", world["store"]]) == 1
    assert main(["match", world["other"], "--store", world["store"]]) == 0
    assert main(["scan", world["folder"], "--store", world["store"], "-j", "0", "-q", "-o", world["out"]]) == 1
    capsys.readouterr()


def test_old_option_spellings_still_work(world, capsys):
    assert main(["hash", world["image"], "--algorithm", "phash"]) == 0
    assert main(["match", world["image"], "--store", world["store"], "--no-dihedral", "--algorithm", "pdq"]) == 1
    capsys.readouterr()


def test_refs_add_stores_the_file_name_not_the_path(world, tmp_path, capsys):
    store = str(tmp_path / "s.db")
    assert main(["refs", "add", world["image"], "--store", store, "--list", "L"]) == 0
    assert main(["refs", "add", world["other"], "--store", store, "--list", "L", "--external-id", "case-17"]) == 0
    capsys.readouterr()
    assert main(["refs", "export", "--store", store]) == 0
    out = capsys.readouterr().out
    assert Path(world["image"]).name in out and "case-17" in out
    assert str(Path(world["image"]).parent) not in out


def test_a_pdq_list_imported_as_phash_gets_a_summary_and_a_hint(world, tmp_path, capsys):
    store = str(tmp_path / "s.db")
    assert main(["refs", "import", world["hexlist"], "--store", store, "--list", "L", "-a", "phash"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) < 30  # not one line per row
    assert any("more rejected rows" in line for line in err)
    assert any("hint:" in line and "--algorithm pdq" in line for line in err)


def test_synth_bad_size_and_unwritable_folder_exit_2(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--count", "1", "--size", "8x8"]) == 2
    assert "width and height" in _one_line(capsys.readouterr().err)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["synth", "--out", str(blocker / "sub"), "--count", "1"]) == 2
    assert "cannot write" in _one_line(capsys.readouterr().err)

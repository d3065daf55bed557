from __future__ import annotations

import csv
import io
import json

import imagehash
from PIL import Image

from hashmatch.cli import main

from .conftest import encode, photo_like


def _write_images(tmp_path, rng, n=3):
    paths = []
    for i in range(n):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(encode(Image.fromarray(photo_like(rng, 90, 60)), "PNG"))
        paths.append(path)
    return paths


def test_hash_command_prints_imagehash_hex_per_file_and_algorithm(tmp_path, rng, capsys):
    paths = _write_images(tmp_path, rng)
    code = main(["hash", *map(str, paths), "--algorithm", "phash,dhash"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert code == 0
    assert len(rows) == 6
    for row in rows:
        ref = imagehash.phash if row["algorithm"] == "phash" else imagehash.dhash
        assert row["hash"] == str(ref(Image.open(row["path"])))
        assert row["error"] == ""


def test_hash_command_reports_bad_files_and_goes_on(tmp_path, rng, capsys):
    good = _write_images(tmp_path, rng, 2)
    bad = tmp_path / "=bad,\"name\".jpg"
    bad.write_bytes(b"junk")
    code = main(["hash", str(good[0]), str(bad), str(good[1]), "--format", "jsonl"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [r["path"] for r in records] == [str(good[0]), str(bad), str(good[1])]
    assert records[1]["hash"] is None and "not a recognised image" in records[1]["error"]
    assert records[0]["hash"] and records[2]["hash"]


def test_hash_command_csv_escapes_paths_and_neutralises_formulas(tmp_path, rng, capsys):
    weird = tmp_path / "=cmd,\"quoted\"\nname.png"
    weird.write_bytes(encode(Image.fromarray(photo_like(rng, 30, 30)), "PNG"))
    assert main(["hash", str(weird)]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2
    assert rows[1][0] == str(weird)  # tmp_path starts with "/", so no formula guard needed here
    assert main(["hash", "=1+1"]) == 1
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[1][0] == "'=1+1"


def test_hash_command_walks_folders_only_with_recursive(tmp_path, rng, capsys):
    _write_images(tmp_path / "sub" if (tmp_path / "sub").mkdir() is None else tmp_path, rng, 2)
    assert main(["hash", str(tmp_path)]) == 1
    assert "use --recursive" in capsys.readouterr().out
    assert main(["hash", "-r", str(tmp_path)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert sorted(r["path"].rsplit("/", 1)[1] for r in rows) == ["img0.png", "img1.png"]


def test_hash_command_usage_errors_exit_2(capsys):
    assert main(["hash", "x.png", "--algorithm", "nope"]) == 2
    assert "unknown algorithm" in capsys.readouterr().err
    assert main(["hash"]) == 2
    assert main(["frobnicate"]) == 2


def test_version_flag_exits_0(capsys):
    assert main(["--version"]) == 0
    assert "hashmatch" in capsys.readouterr().out

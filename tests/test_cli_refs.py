"""``hashmatch refs`` and ``hashmatch match``: outputs, reports and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hashmatch import ReferenceStore
from hashmatch.cli import main

from .conftest import photo_like


@pytest.fixture
def images(tmp_path: Path, rng: np.random.Generator) -> dict[str, Path]:
    out = {}
    for name in ("known1", "known2", "other"):
        path = tmp_path / f"{name}.png"
        Image.fromarray(photo_like(rng, 160, 120)).save(path)
        out[name] = path
    copy = tmp_path / "copy.jpg"
    Image.open(out["known1"]).resize((120, 90)).save(copy, quality=75)
    out["copy"] = copy
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out["broken"] = broken
    return out


def test_cli_refs_import_reports_counts_and_rejected_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lst = tmp_path / "list.csv"
    lst.write_text("hash,algorithm,label\nffd7918181c9c3c3,phash,a\nffd7918181c9c3c3,phash,a\nxyz,phash,b\n0011,phash,c\n")
    store = tmp_path / "refs.db"
    code = main(["refs", "import", str(lst), "--store", str(store), "--list", "partner"])
    out, err = capsys.readouterr()
    assert code == 1  # some rows rejected
    assert "1 added, 1 duplicates skipped, 2 rejected" in out
    assert "line 4" in err and "line 5" in err and "ffd79181" not in err
    with ReferenceStore(store) as s:
        assert len(s) == 1


def test_cli_refs_import_clean_list_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("ffd7918181c9c3c3\n0123456789abcdef  photo.jpg\n")
    code = main(["refs", "import", str(lst), "--store", str(tmp_path / "refs.db"), "--list", "L", "-a", "dhash"])
    assert code == 0
    assert "2 added" in capsys.readouterr().out


def test_cli_refs_import_strict_and_usage_errors_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lst = tmp_path / "list.csv"
    lst.write_text("hash,algorithm\nffd7918181c9c3c3,phash\nbad,phash\n")
    store = tmp_path / "refs.db"
    assert main(["refs", "import", str(lst), "--store", str(store), "--list", "L", "--strict"]) == 2
    assert "line 3" in capsys.readouterr().err
    with ReferenceStore(store) as s:
        assert len(s) == 0
    assert main(["refs", "import", str(tmp_path / "missing.csv"), "--store", str(store), "--list", "L"]) == 2
    assert main(["refs", "import", str(lst), "--store", str(store), "--list", "L", "-a", "md5"]) == 2
    hexlist = tmp_path / "plain.txt"
    hexlist.write_text("ffd7918181c9c3c3\n")
    assert main(["refs", "import", str(hexlist), "--store", str(store), "--list", "L"]) == 2  # needs -a
    assert "algorithm" in capsys.readouterr().err


def test_cli_refs_add_retract_export_stats(tmp_path: Path, images: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "refs.db")
    code = main(["refs", "add", str(images["known1"]), str(images["known2"]), "--store", store, "--list", "L",
                 "-a", "phash,dhash", "--label", "test"])
    out = capsys.readouterr().out
    assert code == 0 and "4 added" in out
    ids = [int(line.split()[-1]) for line in out.splitlines() if line.startswith("added entry")]
    assert len(ids) == 4
    assert main(["refs", "add", str(images["broken"]), "--store", store, "--list", "L"]) == 1
    capsys.readouterr()
    assert main(["refs", "retract", str(ids[0]), "--store", store, "--reason", "appeal"]) == 0
    assert main(["refs", "retract", str(ids[0]), "999999", "--store", store]) == 1
    capsys.readouterr()
    assert main(["refs", "export", "--store", store, "--format", "csv", "-a", "phash"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "hash,algorithm,id,label,quality,list" and len(rows) == 2  # one phash retracted
    out_file = tmp_path / "out.tsv"
    assert main(["refs", "export", "--store", store, "--format", "tsv", "-o", str(out_file)]) == 0
    assert len(out_file.read_text().splitlines()) == 4
    capsys.readouterr()
    assert main(["refs", "stats", "--store", store]) == 0
    stats = capsys.readouterr().out
    assert "3 active entries" in stats
    assert any(line.split()[:4] == ["L", "phash", "1", "1"] for line in stats.splitlines())
    assert main(["refs", "stats", "--store", str(tmp_path / "nope.db")]) == 2


def test_cli_match_exit_codes_like_grep(tmp_path: Path, images: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "refs.db")
    assert main(["refs", "add", str(images["known1"]), "--store", store, "--list", "L", "--label", "k1"]) == 0
    capsys.readouterr()
    assert main(["match", str(images["other"]), "--store", store]) == 0
    assert capsys.readouterr().out == ""
    assert main(["match", str(images["copy"]), str(images["other"]), "--store", store]) == 1
    out = capsys.readouterr().out
    assert f"{images['copy']}: match entry=1 list=L label=k1" in out and str(images["other"]) not in out
    assert main(["match", str(images["copy"]), str(images["broken"]), "--store", store]) == 2
    assert "broken.jpg: error" in capsys.readouterr().err
    assert main(["match", str(images["copy"]), "--store", str(tmp_path / "missing.db")]) == 2
    assert main(["match", str(images["copy"]), "--store", store, "--threshold", "phash"]) == 2


def test_cli_match_jsonl_and_options(tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "refs.db")
    main(["refs", "add", str(images["known2"]), "--store", store, "--list", "L"])
    rotated = tmp_path / "rotated.png"
    Image.open(images["known2"]).transpose(Image.Transpose.ROTATE_90).save(rotated)
    capsys.readouterr()
    assert main(["match", str(rotated), str(images["other"]), "--store", store, "--format", "jsonl"]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["matched"] for r in records] == [True, False]
    first = records[0]["matches"][0]
    assert first["orientation"] is not None and first["algorithm"] == "phash" and "hash" not in first
    assert main(["match", str(rotated), "--store", store, "--no-dihedral", "--threshold", "phash=4"]) == 0
    assert main(["match", str(rotated), "--store", store, "--no-cache"]) == 1

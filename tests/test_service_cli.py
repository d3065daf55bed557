"""``hashmatch serve``'s command line: mistakes exit 2 with one line, before any server starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hashmatch.cli import main
from hashmatch.errors import UsageError
from hashmatch.service import KeyRing, ServiceSettings, make_key

from ._serve_helpers import add_image, jpeg

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "refs.db"
    add_image(path, "known", jpeg(51), "x")
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_missing_store_exits_2(tmp_path, capsys):
    assert main(["serve", "--store", str(tmp_path / "nope.db")]) == 2
    assert "no reference store" in _one_line_error(capsys)


def test_no_store_given_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("HASHMATCH_STORE", raising=False)
    assert main(["serve"]) == 2
    assert "--store" in _one_line_error(capsys)


def test_a_file_that_is_not_a_store_exits_2(tmp_path, capsys):
    bogus = tmp_path / "x.db"
    bogus.write_bytes(b"SQLite format 3\0" + b"\0" * 100)
    assert main(["serve", "--store", str(bogus)]) == 2
    _one_line_error(capsys)


def test_non_loopback_without_keys_refuses_to_start(store, capsys):
    assert main(["serve", "--store", str(store), "--host", "0.0.0.0"]) == 2
    assert "--insecure-no-auth" in _one_line_error(capsys)


def test_a_bad_keys_file_exits_2_naming_the_line_not_the_key(store, tmp_path, capsys):
    keys = tmp_path / "keys.txt"
    secret = "sha256:" + "ab" * 31
    keys.write_text(f"# comment\nedge match {secret}\n")
    assert main(["serve", "--store", str(store), "--keys", str(keys)]) == 2
    err = _one_line_error(capsys)
    assert "line 2" in err and "ab" * 8 not in err


def test_a_port_in_use_exits_2(store, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--store", str(store), "--port", str(port)]) == 2
    assert "cannot listen" in _one_line_error(capsys)


def test_make_key_prints_a_line_the_keys_file_accepts(tmp_path, capsys):
    assert main(["serve", "--make-key", "edge:match,curate"]) == 0
    captured = capsys.readouterr()
    line = captured.out.strip()
    key = captured.err.strip().rsplit(" ", 1)[-1]
    assert key not in line and line.startswith("edge match,curate sha256:")
    (tmp_path / "keys").write_text(line + "\n")
    ring = KeyRing.load(tmp_path / "keys")
    found = ring.find(key)
    assert found is not None and found.roles == {"match", "curate"} and key not in repr(found)
    assert ring.find(key + "x") is None
    assert main(["serve", "--make-key", "edge:admin"]) == 2


def test_keys_file_rejects_duplicates_and_empty_files(tmp_path):
    _, line = make_key("a:match")
    (tmp_path / "dup").write_text(line + "\n" + line.replace("a ", "b ", 1) + "\n")
    with pytest.raises(UsageError, match="twice"):
        KeyRing.load(tmp_path / "dup")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(UsageError, match="no keys"):
        KeyRing.load(tmp_path / "empty")


def test_settings_round_trip_through_json():
    s = ServiceSettings(store="/x.db", keys_file="/k", max_body_bytes=10, algorithms=("pdq",))
    assert ServiceSettings.from_json(s.to_json()) == s
    with pytest.raises(UsageError):
        ServiceSettings(store="/x.db", max_body_bytes=0)
    with pytest.raises(UsageError):
        ServiceSettings.from_json('{"store": "/x", "nope": 1}')


def test_without_the_extra_the_command_says_what_to_install(store):
    code = (
        "import sys; sys.modules['starlette'] = None\n"
        "from hashmatch.cli import main\n"
        f"sys.exit(main(['serve', '--store', {str(store)!r}]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "pip install 'hashmatch[serve]'" in proc.stderr

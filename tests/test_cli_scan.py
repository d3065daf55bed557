"""``hashmatch scan``: exit codes, escaping, summary, progress, resume after kill -9."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hashmatch
from hashmatch._report import parse_row
from hashmatch.cli import _scan as cli_scan
from hashmatch.cli import main
from hashmatch._store import ReferenceStore

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, rng: np.random.Generator, count: int, size: int = 32) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, quality=80)
        paths.append(path)
    return paths


def make_store(path: Path, known: list[Path]) -> Path:
    with ReferenceStore(path) as store:
        for i, image in enumerate(known):
            store.add("known", hashmatch.hash_image(image, "phash"), label=f"label{i}")
    return path


@pytest.fixture
def setup(tmp_path, rng):
    images = make_images(tmp_path / "imgs", rng, 5)
    (tmp_path / "imgs" / "readme.txt").write_text("hello")
    other = make_images(tmp_path / "other", rng, 1)
    store = make_store(tmp_path / "refs.db", [images[0]] + other)
    return tmp_path, images, store


def scan_args(tmp_path: Path, store: Path, *extra: str) -> list[str]:
    return ["scan", str(tmp_path / "imgs"), "--store", str(store), "-j", "0", *extra]


def report_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def test_scan_cli_exit_1_when_anything_matched(setup, capsys):
    tmp_path, images, store = setup
    assert main(scan_args(tmp_path, store, "--quiet")) == 1
    lines = capsys.readouterr().out.splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    assert header["magic"] == "hashmatch-scan-report"
    assert len(rows) == 6
    matched = [r for r in rows if r["status"] == "matched"]
    assert [r["path"] for r in matched] == [str(images[0])]
    assert matched[0]["matches"][0]["label"] == "label0" and "hash" not in matched[0]["matches"][0]


def test_scan_cli_exit_0_when_nothing_matched(setup, tmp_path, capsys):
    _, images, _ = setup
    store = make_store(tmp_path / "unrelated.db", make_images(tmp_path / "unrelated", np.random.default_rng(7), 1))
    assert main(["scan", str(images[1]), str(images[2]), "--store", str(store), "-j", "0"]) == 0
    err = capsys.readouterr().err
    assert "images hashed: 2" in err and "matched: 0 files" in err


def test_scan_cli_unreadable_files_do_not_change_exit_code(setup, capsys):
    tmp_path, images, store = setup
    (tmp_path / "imgs" / "broken.jpg").write_bytes(images[1].read_bytes()[:100])
    out = tmp_path / "r.jsonl"
    assert main(scan_args(tmp_path, store, "--out", str(out))) == 1
    err = capsys.readouterr().err
    assert "errors: 2 (not_image 1, unreadable 1)" in err
    kinds = {Path(r["path"]).name: r["error_kind"] for r in report_rows(out)}
    assert kinds["broken.jpg"] == "unreadable" and kinds["readme.txt"] == "not_image"


@pytest.mark.parametrize(
    "args",
    [
        ["--store", "missing.db"],
        ["--algorithms", "nope"],
        ["--resume"],
        ["--workers", "-1"],
    ],
)
def test_scan_cli_exit_2_on_usage_errors(setup, args, capsys, monkeypatch):
    tmp_path, _, store = setup
    monkeypatch.chdir(tmp_path)
    argv = ["scan", str(tmp_path / "imgs"), *args]
    if "--store" not in args:
        argv += ["--store", str(store)]
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_scan_cli_exit_2_on_a_store_that_is_not_a_store(setup, capsys):
    tmp_path, _, _ = setup
    bogus = tmp_path / "bogus.db"
    bogus.write_text("not sqlite at all, " * 100)
    assert main(scan_args(tmp_path, bogus)) == 2
    assert capsys.readouterr().err.startswith("hashmatch: error:")


def test_scan_cli_exit_2_when_report_exists_without_resume(setup, capsys):
    tmp_path, _, store = setup
    out = tmp_path / "r.jsonl"
    assert main(scan_args(tmp_path, store, "--out", str(out), "-q")) == 1
    before = out.read_bytes()
    assert main(scan_args(tmp_path, store, "--out", str(out), "-q")) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_scan_cli_exit_2_when_resuming_with_other_settings(setup, capsys):
    tmp_path, _, store = setup
    out = tmp_path / "r.jsonl"
    main(scan_args(tmp_path, store, "--out", str(out), "-q"))
    assert main(scan_args(tmp_path, store, "--out", str(out), "-q", "--resume", "--no-hashes")) == 2
    assert "hashes" in capsys.readouterr().err


def test_scan_cli_resume_keeps_exit_1_for_earlier_matches(setup, capsys):
    tmp_path, _, store = setup
    out = tmp_path / "r.csv"
    assert main(scan_args(tmp_path, store, "--out", str(out), "-q")) == 1
    assert main(scan_args(tmp_path, store, "--out", str(out), "--resume")) == 1
    err = capsys.readouterr().err
    assert "6 already in the report, 1 of them matched" in err and "processed: 0" in err


EVIL = ["a,b.jpg", 'say "hi".jpg', "two\nlines.jpg", "=cmd|' -C calc'!A0.jpg", "+1.jpg", "-x.jpg", "@sum.jpg", "'q.jpg"]


def test_scan_cli_csv_escapes_names_and_keeps_them_recoverable(tmp_path, rng, capsys):
    folder = tmp_path / "imgs"
    sources = make_images(tmp_path / "src", rng, len(EVIL))
    folder.mkdir()
    for name, source in zip(EVIL, sources):
        (folder / name).write_bytes(source.read_bytes())
    store = make_store(tmp_path / "refs.db", [folder / EVIL[3]])
    out = tmp_path / "r.csv"
    assert main(["scan", str(folder), "--store", str(store), "-j", "0", "--out", str(out), "-q"]) == 1
    with out.open(encoding="utf-8", newline="") as fh:
        table = list(csv.reader(fh))
    assert len(table) == len(EVIL) + 1
    for cells in table[1:]:
        assert all(not c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    rows = {Path(parse_row(cells)["path"]).name: parse_row(cells) for cells in table[1:]}
    assert set(rows) == set(EVIL)
    assert rows[EVIL[3]]["status"] == "matched"


def test_scan_cli_progress_prints_plain_lines_off_a_terminal(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(cli_scan.time, "monotonic", lambda: now[0])
    summary = hashmatch.ScanSummary(started=0.0)

    class Stream:
        def __init__(self) -> None:
            self.text = ""

        def isatty(self) -> bool:
            return False

        def write(self, s: str) -> None:
            self.text += s

        def flush(self) -> None:
            pass

    stream = Stream()
    progress = cli_scan._Progress(10, summary, quiet=False, every=2.0, stream=stream)
    for _ in range(6):
        now[0] += 1.0
        summary.processed += 1
        progress.update()
    lines = stream.text.splitlines()
    assert lines == [
        "scan: 2/10 files (20%), 1.0 files/s, 0 matched, 0 errors, ~8 s left",
        "scan: 4/10 files (40%), 1.0 files/s, 0 matched, 0 errors, ~6 s left",
        "scan: 6/10 files (60%), 1.0 files/s, 0 matched, 0 errors, ~4 s left",
    ]
    quiet = Stream()
    silent = cli_scan._Progress(10, summary, quiet=True, every=0.0, stream=quiet)
    silent.update()
    assert quiet.text == ""


def test_scan_cli_progress_draws_a_bar_on_a_terminal_and_imports_tqdm_only_then():
    import io
    import subprocess
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    summary = hashmatch.ScanSummary(started=0.0)
    stream = Terminal()
    progress = cli_scan._Progress(3, summary, quiet=False, every=2.0, stream=stream)
    for _ in range(3):
        summary.processed += 1
        progress.update()
    progress.close()
    assert "3/3" in stream.getvalue() and "file" in stream.getvalue()
    code = "import sys, hashmatch.cli; print('tqdm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"  # a scan off a terminal never pays for it


def _processes_writing(report: Path) -> list[int]:
    """Processes whose command line names ``report`` (a scan and its forked workers)."""
    found: list[int] = []
    if not Path("/proc").is_dir():  # not Linux: nothing to inspect
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if str(report).encode() in cmdline and "State:\tZ" not in status:
                found.append(int(entry.name))
    return found


def _rows_on_disk(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n") - 1
    except FileNotFoundError:
        return 0


@pytest.mark.slow  # three interpreter and worker start-ups: 5-20 s on a loaded 2-core machine
def test_scan_cli_resume_after_kill_9_holds_every_file_exactly_once(tmp_path, rng):
    images = make_images(tmp_path / "imgs", rng, 200, size=24)
    store = make_store(tmp_path / "refs.db", [images[0]])
    out = tmp_path / "report.jsonl"
    argv = [sys.executable, "-m", "hashmatch", "scan", str(tmp_path / "imgs"), "--store", str(store),
            "--out", str(out), "-j", "1", "-q", "--resume"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    killed_at = []
    for wanted_rows in (10, 80):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _rows_on_disk(out) < wanted_rows and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at.append(_rows_on_disk(out))
        proc.wait()
        proc.stderr.close()
        # Its workers must not outlive it (forked workers would otherwise wait forever).
        deadline = time.monotonic() + 10
        while _processes_writing(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _processes_writing(out), "worker processes outlived the killed scan"
    assert killed_at, "the scan finished before it could be killed; use more images"
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 1, done.stderr  # image 0 matched, in whichever run hashed it
    rows = report_rows(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == 200
    assert set(paths) == {str(p) for p in images}
    assert sum(r["status"] == "matched" for r in rows) == 1


def test_scan_cli_on_a_dask_cluster_writes_the_same_rows(setup, capsys):
    distributed = pytest.importorskip("distributed")
    tmp_path, _, store = setup
    local, on_dask = tmp_path / "local.jsonl", tmp_path / "dask.jsonl"
    assert main(scan_args(tmp_path, store, "--out", str(local), "-q")) == 1
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        argv = ["scan", str(tmp_path / "imgs"), "--store", str(store), "--out", str(on_dask), "-q",
                "--dask", cluster.scheduler_address]
        assert main(argv) == 1

    def by_path(rows: list[dict]) -> dict[str, dict]:
        return {r.pop("path"): r for r in rows}

    assert by_path(report_rows(on_dask)) == by_path(report_rows(local))


def test_scan_cli_dask_without_the_extra_says_what_to_install(setup, capsys, monkeypatch):
    tmp_path, _, store = setup
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    assert main(scan_args(tmp_path, store, "--dask", "local")) == 2
    assert "pip install 'hashmatch[dask]'" in capsys.readouterr().err


def _ctrl_c_as_in_a_terminal() -> None:
    # A suite started in the background (`make test &`) inherits SIGINT ignored, and Python
    # keeps an inherited SIG_IGN: the scan would rightly ignore this test's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_scan_cli_ctrl_c_exits_130_and_leaves_no_error_rows(tmp_path, rng):
    images = make_images(tmp_path / "imgs", rng, 600, size=16)
    store = make_store(tmp_path / "refs.db", [images[0]])
    argv = [sys.executable, "-m", "hashmatch", "scan", str(tmp_path / "imgs"), "--store", str(store), "-j", "2", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    # The report goes to a pipe this test stops reading after the first row, shrunk to one
    # page (unbuffered here) so 600 rows cannot fit: the scan is certainly still running when
    # Ctrl-C comes, however fast it is (a 64 KiB pipe held them all on a busy machine).
    # Its own process group, so SIGINT reaches the scan and its workers as Ctrl-C would.
    with open(tmp_path / "stderr.txt", "w+b") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err, start_new_session=True, bufsize=0,
                                preexec_fn=_ctrl_c_as_in_a_terminal)
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)  # before the interpreter has started
        head = [proc.stdout.readline(), proc.stdout.readline()]  # the meta line and the first row
        assert proc.poll() is None, (head, (tmp_path / "stderr.txt").read_text())
        os.killpg(proc.pid, signal.SIGINT)
        rest = proc.stdout.read()  # drain (through readline's buffer), so the scan can flush and exit
        proc.stdout.close()
        proc.wait(timeout=60)
        assert proc.returncode == 130, (proc.returncode, (tmp_path / "stderr.txt").read_text())
    rows = [json.loads(line) for line in (head[1] + rest).decode().splitlines()]
    assert 1 <= len(rows) < 600
    assert all(r["error_kind"] is None for r in rows)  # interrupted files are not turned into errors

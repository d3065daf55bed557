"""A scan's start-up: numba's first dispatch without its import-time BLAS probe
(``_jit.load_numba_runtime``), and the garbage collector frozen while a forked pool runs.

Each case runs a fresh interpreter: what is tested is which modules a process imports
when its first kernel runs (``sys.modules`` is shared by the whole process), and the
fork start method, which a scan uses only from a single-threaded process.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import hashmatch
from hashmatch._scan import _run as scan_run
from hashmatch._scan import paused_gc
from hashmatch.cli import _scan as cli_scan
from hashmatch.cli import main

SRC = str(Path(hashmatch.__file__).parent.parent)

# A user's own kernels that need BLAS (np.dot, np.linalg) or read numba's probe answer
# (np.convolve/np.correlate on floats), compiled after hashmatch loaded numba.
USER_KERNELS = """
import numba, numpy as np
@numba.njit(cache=False)
def user(a, b):
    return np.dot(a, b), np.convolve(a, b), np.correlate(a, b), np.linalg.solve(np.outer(a, a) + np.eye(a.size), b)
a, b = np.arange(1.0, 5.0), np.array([0.5, -1.0, 2.0, 3.0])
got = user(a, b)
want = (np.dot(a, b), np.convolve(a, b), np.correlate(a, b), np.linalg.solve(np.outer(a, a) + np.eye(a.size), b))
out["user_kernels_agree"] = all(np.allclose(g, w) for g, w in zip(got, want))
import numba.np.arraymath as arraymath, numba.np.linalg as linalg
try:
    linalg.ensure_blas()
    blas = True
except ImportError:
    blas = False
out["probe_answer_is_numbas"] = bool(arraymath._HAVE_BLAS) == blas
"""


def _run(code: str, tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = SRC
    script = "import sys, json\nout = {}\n" + code + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _image(folder: Path, name: str, seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)


@pytest.mark.parametrize("threaded", [False, True])
def test_first_kernel_call_imports_scipy_linalg_only_with_other_threads(tmp_path: Path, threaded: bool) -> None:
    # sys.modules is shared: with a second thread that might import SciPy, nothing is
    # hidden and numba's probe runs as usual. Either way a user's BLAS kernels compile.
    _image(tmp_path, "a.png", 1)
    out = _run(
        "import threading, hashmatch\n"
        f"stop = threading.Event(); t = threading.Thread(target=stop.wait); {'t.start()' if threaded else ''}\n"
        "hashmatch.compute_hashes('a.png', ['phash', 'dhash'], dihedral=True)\n"
        f"{'stop.set(); t.join()' if threaded else ''}\n"
        "out['scipy_linalg'] = 'scipy.linalg' in sys.modules\n"
        "out['arraymath'] = 'numba.np.arraymath' in sys.modules\n"
        "import numba\n"
        "out['jit'] = not numba.config.DISABLE_JIT\n"
        "import numba.np.arraymath as arraymath\n"
        "out['probe_ran'] = isinstance(arraymath._HAVE_BLAS, bool)\n" + USER_KERNELS,
        tmp_path,
    )
    assert out["user_kernels_agree"] is True
    assert out["probe_answer_is_numbas"] is True
    # With NUMBA_DISABLE_JIT=1 (the coverage run) nothing dispatches: only the hook loads
    # numba's array support, and only with one thread.
    assert out["arraymath"] is (out["jit"] or not threaded)
    assert out["scipy_linalg"] is (threaded and out["arraymath"])
    assert out["probe_ran"] is threaded


def test_hashes_are_those_of_numbas_own_first_dispatch(tmp_path: Path) -> None:
    # The same hashes when scipy.linalg is imported first (numba's probe then runs as usual).
    _image(tmp_path, "a.png", 2)
    code = "out['hash'] = str(hashmatch.compute_hashes('a.png', ['phash', 'ahash', 'dhash', 'whash', 'pdq'], dihedral=True))\n"
    deferred = _run("import hashmatch\n" + code, tmp_path)
    usual = _run("import scipy.linalg, hashmatch\n" + code, tmp_path)
    assert deferred["hash"] == usual["hash"]


def test_scanning_process_does_not_import_scipy_linalg(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        _image(images, f"{i}.png", 10 + i)
    store = tmp_path / "refs.db"
    out = _run(
        "import hashmatch\n"
        f"with hashmatch.ReferenceStore({str(store)!r}) as s:\n"
        f"    hashmatch.add_images(s, 'refs', [{str(images / '0.png')!r}], algorithms=['phash'])\n"
        f"with hashmatch.Matcher.from_store({str(store)!r}, algorithms=['phash']) as m:\n"
        f"    rows = list(hashmatch.scan({str(images)!r}, m, workers=2))\n"
        "out['matched'] = sorted(r.path.rsplit('/', 1)[1] for r in rows if r.matches)\n"
        "out['rows'] = len(rows)\n"
        "out['scipy_linalg'] = 'scipy.linalg' in sys.modules\n",
        tmp_path,
    )
    assert out["rows"] == 6
    assert out["matched"] == ["0.png"]
    assert out["scipy_linalg"] is False


SCAN_FOLDER = """
import gc, hashmatch
from hashmatch._scan import _backends
store, images = sys.argv[1], sys.argv[2]
with hashmatch.ReferenceStore(store) as s:
    hashmatch.add_images(s, 'refs', [images + '/0.png'], algorithms=['phash'])
def scan_folder(**options):
    with hashmatch.Matcher.from_store(store, algorithms=['phash']) as m:
        run = hashmatch.scan(images, m, **options)
        run.start()
        during = gc.get_freeze_count()
        method = _backends._start_method()
        rows = [(r.path, r.matches) for r in run]
        return during, method, rows
"""


def _folder_and_store(tmp_path: Path) -> list[str]:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(5):
        _image(images, f"{i}.png", 20 + i)
    return [str(tmp_path / "refs.db"), str(images)]


def _run_with_args(code: str, tmp_path: Path, args: list[str]) -> dict[str, object]:
    return _run("sys.argv[1:] = " + repr(args) + "\n" + code, tmp_path)


def test_gc_is_frozen_while_a_forked_pool_runs_and_unfrozen_after(tmp_path: Path) -> None:
    out = _run_with_args(
        SCAN_FOLDER
        + "during, method, rows = scan_folder(workers=2)\n"
        + "out['method'], out['during'], out['after'] = method, during, gc.get_freeze_count()\n"
        + "_, _, in_process = scan_folder(workers=0)\n"
        + "by_path = lambda rows: sorted(rows, key=lambda row: row[0])  # a pool yields in completion order\n"
        + "out['same_rows'] = by_path(rows) == by_path(in_process)\n",
        tmp_path, _folder_and_store(tmp_path),
    )
    assert out["method"] == "fork"
    assert out["during"] > 10_000  # numba's objects, among others
    assert out["after"] == 0
    assert out["same_rows"] is True


def test_a_callers_own_frozen_objects_stay_frozen(tmp_path: Path) -> None:
    out = _run_with_args(
        SCAN_FOLDER
        + "gc.freeze(); before = gc.get_freeze_count()\n"
        + "scan_folder(workers=2)\n"
        + "out['before'], out['after'] = before, gc.get_freeze_count()\n",
        tmp_path, _folder_and_store(tmp_path),
    )
    assert out["before"] > 10_000
    # Objects freed during the scan leave the frozen set; none were unfrozen.
    assert out["after"] > out["before"] * 0.9, out


def test_in_process_scan_freezes_nothing(tmp_path: Path) -> None:
    out = _run_with_args(
        SCAN_FOLDER + "during, _, rows = scan_folder(workers=0)\nout['during'], out['rows'] = during, len(rows)\n",
        tmp_path, _folder_and_store(tmp_path),
    )
    assert out["during"] == 0
    assert out["rows"] == 5


def test_paused_gc_restores_the_callers_setting_also_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(KeyError):
        with paused_gc():
            assert not gc.isenabled()
            raise KeyError("x")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()


def test_scan_start_up_runs_without_collections_and_scans_with_them(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store, images = _folder_and_store(tmp_path)
    with hashmatch.ReferenceStore(store) as s:
        hashmatch.add_images(s, "refs", [images + "/0.png"], algorithms=["phash"])
    seen: dict[str, bool] = {}
    prepare, open_matcher, finish = scan_run.prepare, cli_scan.open_matcher, scan_run.ScanRun._finish_chunk

    def spy_prepare(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["prepare"] = gc.isenabled()
        return prepare(*args, **kwargs)

    def spy_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["store and matcher"] = gc.isenabled()
        return open_matcher(*args, **kwargs)

    def spy_finish(self, raws):  # type: ignore[no-untyped-def]
        seen["matching"] = gc.isenabled()
        return finish(self, raws)

    monkeypatch.setattr(scan_run, "prepare", spy_prepare)
    monkeypatch.setattr(cli_scan, "open_matcher", spy_open)
    monkeypatch.setattr(scan_run.ScanRun, "_finish_chunk", spy_finish)
    assert main(["scan", images, "--store", store, "-a", "phash", "-j", "0", "-q", "--out", str(tmp_path / "r.jsonl")]) == 1
    assert seen == {"store and matcher": False, "prepare": False, "matching": True}
    assert gc.isenabled()
    assert main(["scan", images, "--store", str(tmp_path / "missing.db"), "-q"]) == 2  # a start-up error
    assert gc.isenabled()


def test_a_cold_pool_worker_collects_garbage_and_loads_numba_without_scipy_linalg(tmp_path: Path) -> None:
    # What a worker started by a forkserver does first (its watchdog thread comes after).
    _image(tmp_path, "a.png", 4)
    out = _run(
        "import multiprocessing, hashmatch\n"
        "import gc\n"
        "from hashmatch._scan import _worker\n"
        "gc.disable()  # as in a start-up that pauses collections\n"
        "_worker.worker_init(None, None, 60.0, multiprocessing.Value('i', 0))\n"
        "out['gc'] = gc.isenabled()\n"
        "out['threads'] = __import__('threading').active_count()\n"
        "hashmatch.compute_hashes('a.png', ['phash'])\n"
        "out['scipy_linalg'] = 'scipy.linalg' in sys.modules\n",
        tmp_path,
    )
    assert out["threads"] == 2  # the watchdog
    assert out["gc"] is True
    assert out["scipy_linalg"] is False

"""Cold start: import without numba, read-only installs, the first-compile notice, warmup.

Each case runs a fresh interpreter, because what is tested is process start-up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import hashmatch
from hashmatch.cli import main

PACKAGE = Path(hashmatch.__file__).parent

# Hashes a small image with ahash: the fewest kernels, so a cold compile stays short.
HASH_ONE = (
    "import numpy as np, hashmatch; from PIL import Image; "
    "img = Image.fromarray(np.arange(64 * 48 * 3, dtype=np.uint8).reshape(48, 64, 3)); "
    "print(hashmatch.hash_image(img, 'ahash'))"
)


def _run(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    env.update(extra)
    return env


def test_import_and_version_do_not_import_numba(tmp_path: Path) -> None:
    env = _clean_env(PYTHONPATH=str(PACKAGE.parent))
    code = (
        "import sys, hashmatch, hashmatch.cli, hashmatch.index; "
        "print(sorted(m for m in ('numba', 'scipy', 'pywt') if m in sys.modules))"
    )
    out = _run(code, env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _read_only_install(tmp_path: Path) -> Path:
    """A copy of the package where neither numba nor Python can create a __pycache__.

    Tests may run as root, for whom permission bits do not stop writes, so each
    package folder gets a *file* named __pycache__: no one can make a folder there.
    """
    site = tmp_path / "site"
    shutil.copytree(PACKAGE, site / "hashmatch", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in (site / "hashmatch").rglob("*"):
        if folder.is_dir():
            (folder / "__pycache__").write_text("")
    (site / "hashmatch" / "__pycache__").write_text("")
    return site


def test_read_only_install_without_home_falls_back_to_a_temp_cache(tmp_path: Path) -> None:
    site = _read_only_install(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    env = _clean_env(
        PYTHONPATH=str(site), HOME=str(blocked / "home"), XDG_CACHE_HOME=str(blocked / "cache"),
        TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1",
    )
    out = _run(HASH_ONE, env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) == 16  # the hex of a 64-bit ahash
    assert out.stderr.count("RuntimeWarning") == 1, out.stderr
    assert "cannot cache compiled kernels" in out.stderr
    assert out.stderr.count("compiling kernels, first run only") == 1
    assert list(tmp.glob("hashmatch-numba-cache-*/**/*.nbi")), "kernels were not cached in the temp dir"

    version = subprocess.run(
        [sys.executable, "-m", "hashmatch", "--version"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert version.returncode == 0, version.stderr
    assert hashmatch.__version__ in version.stdout


def test_no_writable_place_at_all_runs_without_a_cache(tmp_path: Path) -> None:
    site = _read_only_install(tmp_path)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    env = _clean_env(
        PYTHONPATH=str(site), HOME=str(blocked / "home"), XDG_CACHE_HOME=str(blocked / "cache"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    # Every temp dir candidate could be writable for root, so the test removes the last resort.
    code = "import hashmatch._jit as j; j._temp_cache_dir = lambda: None; " + HASH_ONE
    out = _run(code, env, tmp_path)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) == 16  # the hex of a 64-bit ahash
    assert out.stderr.count("RuntimeWarning") == 1, out.stderr
    assert "not caching them" in out.stderr


def test_compile_notice_is_printed_once_and_only_when_compiling(tmp_path: Path) -> None:
    env = _clean_env(PYTHONPATH=str(PACKAGE.parent), NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = _run(HASH_ONE + "; print(hashmatch.hash_image(img, 'dhash'))", env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("hashmatch: compiling kernels, first run only, ~") == 1, first.stderr
    second = _run(HASH_ONE, env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "compiling" not in second.stderr  # loaded from the cache written by the first run


def test_warmup_command_reports_ready(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["warmup"]) == 0
    assert "kernels ready in" in capsys.readouterr().out


def test_temp_cache_refuses_a_folder_others_can_write(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """numba's cache holds pickles: a shared, writable folder would let others run code."""
    import os

    from hashmatch import _jit

    monkeypatch.setattr(_jit.tempfile, "tempdir", str(tmp_path))
    shared = tmp_path / f"hashmatch-numba-cache-{os.getuid()}"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    chosen = _jit._temp_cache_dir()
    assert chosen is not None and Path(chosen) != shared and Path(chosen).parent == tmp_path
    shared.chmod(0o700)
    assert _jit._temp_cache_dir() == str(shared)



# A first scan with an empty cache, with numba's compile events written to a file by
# every process that compiles (the listener is inherited by forked processes).
COLD_SCAN = """
import os, sys
from numba.core import event
from hashmatch.cli import main

class Record(event.Listener):
    def on_start(self, ev):
        func = ev.data["dispatcher"].py_func
        if func.__module__.startswith("hashmatch."):
            with open(sys.argv[1], "a") as log:
                args = str(ev.data.get("args")).replace(" ", "")
                log.write(f"{os.getpid()} {func.__module__}.{func.__name__}{args}\\n")
    def on_end(self, ev):
        pass

event.register("numba:compile", Record())
sys.exit(main(sys.argv[2:]))
"""


def _compiles(log: Path) -> list[tuple[str, str]]:
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []  # type: ignore[misc]


def test_first_scan_compiles_each_kernel_once_on_two_processes_at_once(tmp_path: Path) -> None:
    """The scan's parent and one forked helper compile different kernel families at the
    same time; no kernel is compiled by two processes (the workers load, never compile);
    one notice."""
    import numpy as np
    from PIL import Image

    images = tmp_path / "img"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(images / f"{i}.png")
    store = tmp_path / "refs.db"
    prep = _clean_env(PYTHONPATH=str(PACKAGE.parent), NUMBA_CACHE_DIR=str(tmp_path / "prep"))
    added = subprocess.run(
        [sys.executable, "-m", "hashmatch", "refs", "add", "--store", str(store), "--list", "t", "--no-local",
         "-a", "phash,pdq", str(images / "0.png")], env=prep, capture_output=True, text=True, timeout=300, check=False,
    )
    assert added.returncode == 0, added.stderr
    # HASHMATCH_COMPILE_HELPER=1: the helper even when the machine is busy (by default only with a core idle).
    env = _clean_env(PYTHONPATH=str(PACKAGE.parent), NUMBA_CACHE_DIR=str(tmp_path / "cache"), HASHMATCH_COMPILE_HELPER="1")
    log = tmp_path / "compiles.log"
    args = [str(log), "scan", "--store", str(store), "-j", "2", "-o", str(tmp_path / "r.jsonl"), str(images)]
    first = subprocess.run([sys.executable, "-c", COLD_SCAN, *args], env=env, capture_output=True, text=True,
                           timeout=600, check=False)
    assert first.returncode == 1, first.stderr  # 0.png is in the store
    assert first.stderr.count("hashmatch: compiling kernels, first run only, ~") == 1, first.stderr
    compiled = _compiles(log)
    kernels = {name for _, name in compiled}
    twice = sorted(k for k in kernels if len({pid for pid, name in compiled if name == k}) > 1)
    assert twice == [], f"compiled in two processes: {twice}"  # (a kernel with its argument types)

    def pids(kernel: str) -> set[str]:
        return {pid for pid, name in compiled if name.startswith(kernel + "(")}

    pdq, phash, index = pids("hashmatch.hashers._pdq_kernels.pdq_coeffs"), pids("hashmatch.hashers._kernels.dct_low"), pids("hashmatch.index._kernels.flat_chunk_1")
    assert len(pdq) == 1 and len(phash) == 1 and pdq != phash and index == phash, compiled

    log.unlink()
    (tmp_path / "r.jsonl").unlink()
    again = subprocess.run([sys.executable, "-c", COLD_SCAN, *args], env=env, capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 1, again.stderr
    assert "compiling" not in again.stderr
    assert _compiles(log) == []  # everything came from the cache, in the parent and the workers

"""hashmatch.scan: walking, workers, errors in place, resume, Dask."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

import hashmatch
from hashmatch._scan import _backends
from hashmatch._scan._backends import CrashedChunk
from hashmatch._scan._schedule import SMALLEST, Failed, guided_chunks, schedule
from hashmatch._scan._warm import prepare, probe_views
from hashmatch._scan._worker import hash_chunk
from hashmatch._report import read_report
from hashmatch.errors import ReportFormatError
from hashmatch._loading import ImageLimits


class StandInMatcher:
    """The interface scan needs (spec, match_views), over exact hex hashes of the first view."""

    def __init__(
        self, known: dict[str, str], *, algorithms: tuple[str, ...] = ("phash",), dihedral: bool = False,
        limits: ImageLimits = ImageLimits(),
    ):
        self.known = dict(known)  # hex of the first algorithm -> label
        self.algorithms = algorithms
        self.spec = hashmatch.QuerySpec(algorithms=algorithms, dihedral=dihedral, trim_borders=False, limits=limits)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> StandInMatcher:
        return cls(json.loads(Path(path).read_text()))

    def match_views(self, views):  # noqa: ANN001 - the Matcher's signature
        results = views[0]
        name = self.algorithms[0]
        out = []
        for variant, result in enumerate(results[name]):
            label = self.known.get(result.hash.hex())
            if label is not None:
                entry = sorted(self.known).index(result.hash.hex())
                orientation = None if variant == 0 else hashmatch.hashers.DIHEDRAL_NAMES[variant]
                out.append(hashmatch.Match(entry, "known", label, None, name, 0, orientation))
        return out


def make_images(folder: Path, rng: np.random.Generator, count: int, *, size: tuple[int, int] = (48, 40)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=80)
        paths.append(path)
    return paths


@pytest.fixture
def tree(tmp_path, rng):
    """A folder with images (two nested), a text file, an empty and a truncated JPEG."""
    root = tmp_path / "tree"
    images = make_images(root, rng, 6) + make_images(root / "sub" / "deeper", rng, 2)
    (root / "notes.txt").write_text("not an image")
    (root / "empty.jpg").write_bytes(b"")
    (root / "cut.jpg").write_bytes(images[0].read_bytes()[:200])
    return root, images


def known_of(paths: list[Path]) -> dict[str, str]:
    return {hashmatch.hash_image(p, "phash").hex(): p.name for p in paths}


def by_path(results) -> dict[str, hashmatch.ScanResult]:
    out = {}
    for r in results:
        assert r.path not in out, f"{r.path} reported twice"
        out[r.path] = r
    return out


def test_scan_reports_every_file_once_with_errors_in_place(tree):
    root, images = tree
    matcher = StandInMatcher(known_of(images[:2]))
    run = hashmatch.scan(root, matcher, workers=0)
    results = by_path(run)
    assert set(results) == {str(p) for p in images} | {str(root / n) for n in ("notes.txt", "empty.jpg", "cut.jpg")}
    assert results[str(root / "notes.txt")].error_kind == "not_image"
    assert results[str(root / "empty.jpg")].error_kind == "unreadable"
    assert results[str(root / "cut.jpg")].error_kind == "unreadable"
    for path in images:
        r = results[str(path)]
        assert r.error_kind is None
        assert r.hashes == {"phash": hashmatch.hash_image(path, "phash").hex()}
        assert r.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert r.size == path.stat().st_size and r.mtime_ns == path.stat().st_mtime_ns
    assert {p for p, r in results.items() if r.matched} == {str(images[0]), str(images[1])}
    s = run.summary
    assert (s.listed, s.processed, s.hashed, s.matched_files) == (11, 11, 8, 2)
    assert s.errors == {"not_image": 1, "unreadable": 2}
    assert s.any_matched


def test_scan_process_pool_agrees_with_in_process(tree):
    root, images = tree
    matcher = StandInMatcher(known_of(images[3:4]))
    serial = by_path(hashmatch.scan(root, matcher, workers=0))
    pooled = by_path(hashmatch.scan(root, matcher, workers=2, chunk_size=2))
    assert pooled == serial


def test_scan_dihedral_matches_a_rotated_copy(tmp_path, rng):
    (original,) = make_images(tmp_path / "a", rng, 1, size=(64, 48))
    rotated = tmp_path / "b" / "rotated.png"
    rotated.parent.mkdir()
    Image.open(original).transpose(Image.Transpose.ROTATE_90).save(rotated)
    matcher = StandInMatcher(known_of([original]), dihedral=True)
    (result,) = list(hashmatch.scan(rotated, matcher, workers=0))
    assert result.matched
    assert result.matches[0].orientation is not None
    assert result.hashes["phash"] not in matcher.known  # the file's own hash, not the variant


def test_scan_matches_a_letterboxed_copy_through_the_trimmed_view(tmp_path):
    from hashmatch.testing.synthetic import generate_image

    original = generate_image(5, size=(320, 240))
    boxed = Image.new("RGB", (320, 420))
    boxed.paste(original, (0, 90))
    boxed.save(tmp_path / "boxed.png")
    ref = hashmatch.compute_hashes(original, ["phash"])["phash"][0].hash
    for trim in (True, False):
        matcher = hashmatch.Matcher.from_hashes([ref], labels=["x"], trim_borders=trim)
        (result,) = list(hashmatch.scan(tmp_path / "boxed.png", matcher, workers=0))
        assert result.matched is trim
        if trim:
            assert result.matches[0].orientation == "trimmed"
            assert result.hashes["phash"] != ref.hex()  # the file's own hash, as stored


def test_scan_limits_record_too_large(tree):
    root, images = tree
    limits = ImageLimits(max_pixels=100, max_file_bytes=10_000_000)
    results = by_path(hashmatch.scan(root, StandInMatcher({}, limits=limits), workers=0))
    assert {results[str(p)].error_kind for p in images} == {"too_large"}
    small_files = ImageLimits(max_file_bytes=50)
    results = by_path(hashmatch.scan(root, StandInMatcher({}, limits=small_files), workers=0))
    assert {results[str(p)].error_kind for p in images} == {"too_large"}
    assert results[str(images[0])].sha256 is None  # never read past the size check


def test_scan_include_and_exclude_globs(tree):
    root, images = tree
    matcher = StandInMatcher({})
    only_jpg = by_path(hashmatch.scan(root, matcher, workers=0, include=["*.jpg"]))
    assert str(root / "notes.txt") not in only_jpg and str(root / "cut.jpg") in only_jpg
    no_sub = by_path(hashmatch.scan(root, matcher, workers=0, exclude=["sub"]))
    assert not any("/sub/" in p for p in no_sub)
    deep_only = by_path(hashmatch.scan(root, matcher, workers=0, include=["sub/*/*.jpg"]))
    assert set(deep_only) == {str(p) for p in images[6:]}


def test_scan_symlink_loop_is_reported_and_walk_ends(tree):
    root, images = tree
    os.symlink("..", root / "sub" / "loop")
    os.symlink(images[0], root / "link.jpg")
    matcher = StandInMatcher({})
    plain_run = hashmatch.scan(root, matcher, workers=0)
    plain = by_path(plain_run)
    assert str(root / "link.jpg") not in plain
    assert plain_run.summary.skipped == {"symlink": 2}
    followed = by_path(hashmatch.scan(root, matcher, workers=0, follow_symlinks=True))
    assert followed[str(root / "sub" / "loop")].error_kind == "symlink_loop"
    assert followed[str(root / "link.jpg")].hashes == followed[str(images[0])].hashes
    assert len(followed) == len(plain) + 2


def test_scan_unlistable_folder_is_reported_and_the_rest_scanned(tree, monkeypatch):
    # Tests run as root, where chmod 000 does not stop reading: simulate the refusal.
    root, images = tree
    real_scandir = os.scandir

    def refusing(path):  # noqa: ANN001
        if os.fspath(path).endswith("deeper"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    results = by_path(hashmatch.scan(root, StandInMatcher({}), workers=0))
    assert results[str(root / "sub" / "deeper")].error_kind == "permission"
    assert sum(r.error_kind is None for r in results.values()) == 6


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod-000 folders; covered by the simulated test")
def test_scan_chmod_000_folder_is_reported(tree):
    root, _ = tree
    locked = root / "sub"
    locked.chmod(0)
    try:
        results = by_path(hashmatch.scan(root, StandInMatcher({}), workers=0))
    finally:
        locked.chmod(0o755)
    assert results[str(locked)].error_kind == "permission"


def test_scan_file_vanishing_after_listing_is_reported(tree):
    root, images = tree
    run = hashmatch.scan(root, StandInMatcher({}), workers=0)
    assert run.list_files() == 11
    images[2].unlink()
    results = by_path(run)
    assert results[str(images[2])].error_kind == "vanished"
    assert run.summary.errors["vanished"] == 1


def test_scan_missing_root_is_a_result(tmp_path):
    (result,) = list(hashmatch.scan(tmp_path / "nope", StandInMatcher({}), workers=0))
    assert result.error_kind == "missing"


def test_scan_root_with_a_nul_is_a_result_not_a_crash(tmp_path):
    (result,) = list(hashmatch.scan(str(tmp_path / "a\0b.jpg"), StandInMatcher({}), workers=0))
    assert (result.error_kind, result.error) == ("os_error", "a path cannot contain a NUL character")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_scan_resume_after_partial_report_holds_every_file_once(tree, tmp_path, fmt):
    root, images = tree
    report = tmp_path / f"report.{fmt}"
    matcher = StandInMatcher(known_of(images[:1]))
    first = list(hashmatch.scan(root, matcher, workers=0, report=report))
    assert len(first) == 11
    data = report.read_bytes()
    report.write_bytes(data[: len(data) * 2 // 3])  # as if killed mid-row
    run = hashmatch.scan(root, matcher, workers=0, report=report, resume=True)
    redone = by_path(run)
    assert 0 < len(redone) < 11
    assert run.summary.already_done == 11 - len(redone)
    state = read_report(report, fmt, run._settings)
    assert state.rows == 11 and not state.dropped_partial_row
    assert {k[0] for k in state.done} == {r.path for r in first}
    assert run.summary.any_matched  # images[0] matched in one of the two runs


def test_scan_resume_redoes_a_file_that_changed(tree, tmp_path):
    root, images = tree
    report = tmp_path / "r.jsonl"
    matcher = StandInMatcher({})
    list(hashmatch.scan(root, matcher, workers=0, report=report))
    os.utime(images[0], ns=(1, 1))
    redone = list(hashmatch.scan(root, matcher, workers=0, report=report, resume=True))
    assert [r.path for r in redone] == [str(images[0])]


def test_scan_refuses_to_overwrite_or_mix_reports(tree, tmp_path):
    root, _ = tree
    report = tmp_path / "r.jsonl"
    list(hashmatch.scan(root, StandInMatcher({}), workers=0, report=report))
    with pytest.raises(ReportFormatError, match="already exists"):
        hashmatch.scan(root, StandInMatcher({}), workers=0, report=report)
    with pytest.raises(ReportFormatError, match="algorithms"):
        hashmatch.scan(root, StandInMatcher({}, algorithms=("dhash",)), workers=0, report=report, resume=True)
    with pytest.raises(ReportFormatError, match="hashes"):
        hashmatch.scan(root, StandInMatcher({}), workers=0, report=report, resume=True, include_hashes=False)


def test_scan_without_hashes_leaves_them_out_of_the_report(tree, tmp_path):
    root, images = tree
    report = tmp_path / "r.jsonl"
    list(hashmatch.scan(root, StandInMatcher({}), workers=0, report=report, include_hashes=False))
    rows = [json.loads(line) for line in report.read_text().splitlines()[1:]]
    assert len(rows) == 11 and all(row["hashes"] is None for row in rows)
    assert all(len(row["sha256"]) == 64 for row in rows if row["error_kind"] is None)


def test_scan_rejects_bad_arguments(tree):
    root, _ = tree
    with pytest.raises(ValueError, match="workers"):
        hashmatch.scan(root, StandInMatcher({}), workers=-1)
    with pytest.raises(ValueError, match="chunk_size"):
        hashmatch.scan(root, StandInMatcher({}), chunk_size=0)
    with pytest.raises(hashmatch.errors.UnknownAlgorithmError):
        hashmatch.scan(root, StandInMatcher({}, algorithms=("nope",)))


class _CrashingBackend:
    """A backend whose worker dies on any chunk holding a file named crash*."""

    capacity = 3

    def __init__(self, spec: hashmatch.QuerySpec) -> None:
        self._spec = spec
        self._pending: list = []
        self._doomed = 0
        self.restarts = 0

    def submit(self, chunk):  # noqa: ANN001
        self._pending.append(chunk)

    def next_done(self):  # noqa: ANN201
        chunk = self._pending.pop(0)
        if self._doomed:  # a dead worker fails every chunk that was in flight with it
            self._doomed -= 1
            return chunk, CrashedChunk("worker died")
        if any(Path(p).name.startswith("crash") for p, _, _ in chunk):
            self._doomed = len(self._pending)
            return chunk, CrashedChunk("worker died")
        return chunk, hash_chunk(chunk, self._spec)

    def restart(self) -> None:
        self.restarts += 1

    def close(self) -> None:
        pass


def _listed(folder: Path) -> list[tuple[str, int, int]]:
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()]


def test_schedule_isolates_the_file_that_crashes_a_worker(tree):
    root, images = tree
    crash = root / "crash.jpg"
    crash.write_bytes(images[0].read_bytes())
    backend = _CrashingBackend(hashmatch.QuerySpec(trim_borders=False))
    files = _listed(root)
    outcomes = list(schedule(files, backend, 3))
    failed = [o for o in outcomes if isinstance(o, Failed)]
    replies = [o for o in outcomes if not isinstance(o, Failed)]
    assert [(f.path, f.kind) for f in failed] == [(str(crash), "worker_crashed")]
    assert sorted(item[0] for item, _ in replies) == sorted(p for p, _, _ in files if p != str(crash))
    assert sum(raw[5] is None for _, raw in replies) == 8  # the 8 images hashed; the rest are error replies
    assert backend.restarts >= 1


def test_schedule_calls_workers_that_always_die_a_start_up_failure(tmp_path, rng):
    spec = hashmatch.QuerySpec(trim_borders=False)
    few = tmp_path / "few"
    for i, path in enumerate(make_images(few, rng, 2)):
        path.rename(few / f"crash{i}.jpg")
    outcomes = list(schedule(_listed(few), _CrashingBackend(spec), 1))
    assert [o.kind for o in outcomes] == ["worker_crashed"] * 2
    many = tmp_path / "many"
    for i, path in enumerate(make_images(many, rng, 4)):
        path.rename(many / f"crash{i}.jpg")
    with pytest.raises(hashmatch.HashmatchError, match="start-up"):
        list(schedule(_listed(many), _CrashingBackend(spec), 1))


def test_scan_dask_cluster_agrees_with_in_process(tree):
    distributed = pytest.importorskip("distributed")
    root, images = tree
    matcher = StandInMatcher(known_of(images[:1]))
    serial = by_path(hashmatch.scan(root, matcher, workers=0))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster:
        on_dask = by_path(hashmatch.scan(root, matcher, dask=cluster.scheduler_address, chunk_size=2))
    assert on_dask == serial




def test_scan_reads_through_the_loaders_one_path(tree):
    """A file swapped for a FIFO after listing is refused, not waited on (the loader's
    non-blocking open and fstat); a file over the limit is never read."""
    root, images = tree
    run = hashmatch.scan(root, StandInMatcher({}), workers=0)
    assert run.list_files() == 11
    images[2].unlink()
    os.mkfifo(images[2])
    results = by_path(run)
    assert results[str(images[2])].error_kind == "not_regular"
    assert results[str(images[2])].error == "not a regular file"
    small = ImageLimits(max_file_bytes=10)
    (big,) = list(hashmatch.scan(images[0], StandInMatcher({}, limits=small), workers=0))
    assert big.error_kind == "too_large" and big.error.startswith("file is ") and big.sha256 is None


@pytest.mark.parametrize("n", [0, 1, 5, 63, 200, 2000, 10_007])
@pytest.mark.parametrize("ways", [1, 6])
def test_guided_chunks_cover_every_file_once_in_order_and_shrink_towards_the_end(n, ways):
    files = [(f"/f{i}", i, i) for i in range(n)]
    chunks = guided_chunks(files, 64, ways)
    assert [item for chunk in chunks for item in chunk] == files
    sizes = [len(c) for c in chunks]
    assert all(1 <= s <= 64 for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    assert all(s >= SMALLEST for s in sizes[:-1])
    if n >= 64 * 4 * ways * 2:
        assert sizes[0] == 64 and sizes[-1] <= SMALLEST  # few round trips, then a short tail


class _HangingImage(ImageFile.ImageFile):
    """A fake image format whose decoder never returns (what a hostile file can do)."""

    format = "HANGTEST"

    def _open(self) -> None:
        time.sleep(3600)


def test_a_file_that_hangs_its_decoder_becomes_a_timeout_row_and_the_scan_goes_on(tree, monkeypatch):
    root, images = tree
    hang = root / "sub" / "hang.img"
    hang.write_bytes(b"HANGTEST" + bytes(64))
    monkeypatch.setattr(Image, "ID", list(Image.ID))
    monkeypatch.setattr(Image, "OPEN", dict(Image.OPEN))
    Image.register_open("HANGTEST", _HangingImage, lambda prefix: prefix.startswith(b"HANGTEST"))
    monkeypatch.setattr(_backends, "_start_method", lambda: "fork")  # the workers inherit the plugin
    matcher = StandInMatcher(known_of(images[:1]))
    run = hashmatch.scan(root, matcher, workers=2, chunk_size=3, timeout=1.0)
    results = by_path(run)
    assert results[str(hang)].error_kind == "timeout"
    assert "took longer than 1 s" in results[str(hang)].error
    assert all(results[str(p)].error_kind is None for p in images)  # every other file hashed
    assert results[str(images[0])].matched
    assert run.summary.errors == {"not_image": 1, "unreadable": 2, "timeout": 1}


def test_scan_refuses_a_timeout_that_is_not_a_positive_number(tree):
    root, _ = tree
    for bad in (0, -1.0, True, "10"):
        with pytest.raises(hashmatch.UsageError, match="timeout"):
            hashmatch.scan(root, StandInMatcher({}), timeout=bad)


@pytest.mark.parametrize("dihedral", [True, False])
def test_probe_views_have_the_shape_of_a_real_uploads_views(tree, dihedral):
    """The cold-start warm-up matches probe views: they must query what real uploads query."""
    _, images = tree
    spec = hashmatch.QuerySpec(algorithms=("phash", "pdq"), dihedral=dihedral, trim_borders=False,
                               options={"phash": {"hash_size": 16}})
    real = spec.hash(images[0])
    probe = probe_views(spec)
    assert len(probe) == len(real)
    for name in spec.algorithms:
        assert len(probe[0][name]) == len(real[0][name])
        assert {r.hash.bits for r in probe[0][name]} == {r.hash.bits for r in real[0][name]}
        assert all(spec.passes(r) for r in probe[0][name])  # past the quality gate, so the index is queried


@pytest.mark.parametrize("algorithms", [("phash",), ("ahash", "dhash", "whash"), ("pdq",)])
def test_prepare_does_nothing_when_every_kernel_is_cached(tree, monkeypatch, algorithms):
    _, images = tree
    matcher = StandInMatcher(known_of(images[:1]))
    matcher.spec = matcher.spec.with_algorithms(algorithms)
    matcher.spec.warmup()
    hashmatch.Matcher.from_hashes([hashmatch.hash_image(images[0], "phash")]).warmup()
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked a compile helper with a warm cache"))
    prepare(matcher, matcher.spec)


def test_compile_helper_runs_beside_this_process_and_is_stopped_when_this_side_fails(tmp_path):
    from hashmatch._scan._warm import _beside

    def helper_writes(name: str, wait: float = 0.0):  # noqa: ANN202
        def helper() -> None:
            (tmp_path / f"{name}.pid").write_text(str(os.getpid()))
            time.sleep(wait)
            (tmp_path / f"{name}.done").write_text("")
        return helper

    _beside(helper_writes("ok"), lambda: (tmp_path / "here.done").write_text(""))
    assert (tmp_path / "ok.done").exists() and (tmp_path / "here.done").exists()
    assert int((tmp_path / "ok.pid").read_text()) != os.getpid()  # it ran in another process

    def here_fails() -> None:
        pid_file = tmp_path / "slow.pid"
        while not (pid_file.exists() and pid_file.read_text()):  # the helper has started (and written it all)
            time.sleep(0.01)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _beside(helper_writes("slow", wait=600.0), here_fails)
    assert not (tmp_path / "slow.done").exists()  # stopped, not waited for
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "slow.pid").read_text()), 0)  # and reaped


def test_compile_helper_is_used_only_with_an_idle_core_unless_told(monkeypatch):
    from hashmatch._scan import _warm

    monkeypatch.setattr(_warm.threading, "active_count", lambda: 1)
    monkeypatch.setattr(_warm, "available_cores", lambda: 2)
    monkeypatch.delenv(_warm.HELPER_ENV, raising=False)
    monkeypatch.setattr(_warm.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert _warm._can_fork()
    monkeypatch.setattr(_warm.os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # both cores busy
    assert not _warm._can_fork()
    monkeypatch.setattr(_warm.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # one core taken
    assert not _warm._can_fork()
    monkeypatch.setenv(_warm.HELPER_ENV, "1")
    assert _warm._can_fork()
    monkeypatch.setenv(_warm.HELPER_ENV, "0")
    monkeypatch.setattr(_warm.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert not _warm._can_fork()
    monkeypatch.delenv(_warm.HELPER_ENV)
    monkeypatch.setattr(_warm.threading, "active_count", lambda: 3)  # forking with threads alive is unsafe
    assert not _warm._can_fork()

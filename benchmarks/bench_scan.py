"""Folder scanning: `hashmatch scan` against this machine's decode limit, process pool against Dask.

    python benchmarks/bench_scan.py [--count 2000] [--seed 7] [--size 1024x768] [--workers 2] [--repeats 3]

Every peer runs in its own fresh interpreter (so each pays its own start-up, as a user
would), on the same files, interleaved over ``--repeats`` rounds; the table shows medians
and ratios from this run. Besides wall time, each peer's CPU time (its own and its
workers', from getrusage) is reported: on a machine shared with other jobs it is the steadier
measure of how much work a file costs. Peers:

* ``limit``: the machine's limit for the work: ``--workers`` processes (already started)
  that only open each file and decode it at the reduced scale hashing asks for.
* ``limit-cold`` (not in the default set): the same, but the clock also covers listing
  the files, forking the pool and closing it, as ``scan``'s clock does (its workers
  import nothing: Pillow is loaded before the fork). The fair end-to-end peer.
* ``hash-limit`` (not in the default set): the same warm pool running only
  ``compute_hashes`` (decode + phash, dihedral): the hashing's own cost, without the scan.
* ``scan``: ``hashmatch.scan`` with ``--workers`` processes, matching against a store
  (1,000 references; 20 of the files are in it), dihedral matching on (the CLI default).
  ``end-to-end`` includes listing, pool start-up and the workers' numba cache loads;
  ``steady`` is the rate between the first and the last result.
* ``scan, no dihedral``: the same with one orientation per image.
* ``scan, malloc not pinned``: MALLOC_MMAP_THRESHOLD_ unset and ``mmap_threshold=None``.
* ``hashmatch scan`` (CLI): wall time of the command writing a JSONL report, interpreter
  start-up and store load included.
* ``dask='local'``: a LocalCluster of ``--workers`` single-threaded processes, started by
  the scan (its start-up is in end-to-end).
* ``running LocalCluster``: the same cluster started before the clock starts, as with
  ``--dask ADDRESS`` on a cluster that is already up.

The allocator is pinned for every peer but one (MALLOC_MMAP_THRESHOLD_=134217728, recorded
in the JSON). Images: hashmatch.testing.synthetic JPEGs (quality 90), written once under
benchmarks/data/. Writes benchmarks/results/scan.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MMAP_THRESHOLD, add_record_option, machine, pin_malloc, table, write_results  # noqa: E402

HERE = Path(__file__).resolve()
ALGORITHMS = ("phash",)


# -- peers, each run as `bench_scan.py --peer NAME ...` in a fresh interpreter -------------


def _peer_limit(folder: str, workers: int) -> dict[str, float]:
    import multiprocessing

    from hashmatch.hashers._api import _draft_request
    from hashmatch.hashers._registry import get_algorithm

    draft = _draft_request([(get_algorithm(n), get_algorithm(n).check_options({})) for n in ALGORITHMS])
    paths = sorted(str(p) for p in Path(folder).rglob("*.jpg"))
    # Forked, as hashmatch.scan does from a single-threaded process: the workers are this
    # process's children, so their CPU time is counted.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=pin_malloc) as pool:
        pool.map(_decode_reduced, [(paths[0], draft)] * workers * 2)  # started and warm
        start = time.perf_counter()
        for _ in pool.imap_unordered(_decode_reduced, [(p, draft) for p in paths], chunksize=16):
            pass
        elapsed = time.perf_counter() - start
    return {"files": len(paths), "seconds": elapsed, "steady_seconds": elapsed}


def _peer_limit_cold(folder: str, workers: int) -> dict[str, float]:
    """The limit with its own start-up, as the scan peer's clock sees it: listing the
    files, forking the pool, decoding, and closing the pool."""
    import multiprocessing

    from hashmatch.hashers._api import _draft_request
    from hashmatch.hashers._registry import get_algorithm

    draft = _draft_request([(get_algorithm(n), get_algorithm(n).check_options({})) for n in ALGORITHMS])
    start = time.perf_counter()
    paths = sorted(str(p) for p in Path(folder).rglob("*.jpg"))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=pin_malloc) as pool:
        for _ in pool.imap_unordered(_decode_reduced, [(p, draft) for p in paths], chunksize=16):
            pass
    return {"files": len(paths), "seconds": time.perf_counter() - start}


def _peer_hash_limit(folder: str, workers: int) -> dict[str, float]:
    import multiprocessing

    paths = sorted(str(p) for p in Path(folder).rglob("*.jpg"))
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=pin_malloc) as pool:
        pool.map(_hash_only, [paths[0]] * workers * 2)  # started and warm
        start = time.perf_counter()
        for _ in pool.imap_unordered(_hash_only, paths, chunksize=16):
            pass
        elapsed = time.perf_counter() - start
    return {"files": len(paths), "seconds": elapsed, "steady_seconds": elapsed}


def _hash_only(path: str) -> int:
    import hashmatch

    return hashmatch.compute_hashes(path, ALGORITHMS, dihedral=True)[ALGORITHMS[0]][0].hash.value


def _decode_reduced(item: tuple[str, tuple[str, tuple[int, int]]]) -> tuple[int, int]:
    from PIL import Image

    path, (mode, size) = item
    with Image.open(path) as img:
        img.draft(mode, size)
        img.load()
        return img.size


def _peer_scan(folder: str, store: str, workers: int, *, dihedral: bool = True, pinned: bool = True, dask: str | None = None) -> dict[str, float]:
    import hashmatch
    from hashmatch import Matcher

    start = time.perf_counter()
    matcher = Matcher.from_store(store, algorithms=ALGORITHMS, dihedral=dihedral)
    loaded = time.perf_counter()
    run = hashmatch.scan(
        folder,
        matcher,
        workers=workers,
        include=["*.jpg"],  # not the datasets' manifest.json
        dask=dask,
        mmap_threshold=hashmatch._scan.DEFAULT_MMAP_THRESHOLD if pinned else None,
    )
    first = None
    count = 0
    first_burst = 0
    for _ in run:
        count += 1
        if first is None:
            first = time.perf_counter()
        if time.perf_counter() - first < 1e-3:
            first_burst = count  # results of the first chunk arrive together
    end = time.perf_counter()
    s = run.summary
    if first is None or s.hashed != count or s.errors:
        raise SystemExit(f"unexpected scan outcome: {s.to_dict()}")
    return {
        "files": count,
        "seconds": end - loaded,
        "steady_seconds": (end - first) * count / max(1, count - first_burst),
        "store_load_seconds": loaded - start,
        "matched_files": s.matched_files,
    }


def _peer_cli(folder: str, store: str, workers: int, report: str) -> dict[str, float]:
    if os.path.exists(report):
        os.remove(report)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hashmatch", "scan", folder, "--store", store, "-a", ",".join(ALGORITHMS),
         "-j", str(workers), "--include", "*.jpg", "--out", report, "-q"],
        check=False,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"hashmatch scan failed with exit code {proc.returncode}")
    rows = sum(1 for _ in open(report, encoding="utf-8")) - 1
    return {"files": rows, "seconds": elapsed, "exit_code": proc.returncode}


def _peer_full_decode(folder: str) -> dict[str, float]:
    """CPU and minor page faults per full-resolution hash, under the allocator mode in the env."""
    import resource

    if os.environ.get("BENCH_MALLOC_MODE") == "pin":
        pin_malloc()
    import hashmatch

    paths = sorted(Path(folder).rglob("*.jpg"))[:150]
    hashmatch.compute_hashes(paths[0], ALGORITHMS, fast=False, dihedral=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    for p in paths:
        hashmatch.compute_hashes(p, ALGORITHMS, fast=False, dihedral=True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"files": len(paths), "cpu_ms_per_file": cpu / len(paths) * 1e3,
            "minor_faults_per_file": (after.ru_minflt - before.ru_minflt) / len(paths)}


def _peer_cold(folder: str) -> dict[str, float]:
    t0 = time.perf_counter()
    import hashmatch

    t1 = time.perf_counter()
    paths = sorted(Path(folder).rglob("*.jpg"))[:30]
    hashmatch.compute_hashes(paths[0], ALGORITHMS, dihedral=True)
    t2 = time.perf_counter()
    start = time.perf_counter()
    for p in paths[1:]:
        hashmatch.compute_hashes(p, ALGORITHMS, dihedral=True)
    warm = (time.perf_counter() - start) / (len(paths) - 1)
    return {"import_seconds": t1 - t0, "first_call_seconds": t2 - t1, "warm_call_seconds": warm}


def _run_peer(name: str, args: argparse.Namespace, *, pinned: bool = True, extra_env: dict[str, str] | None = None) -> dict[str, float]:
    env = dict(os.environ)
    if pinned:
        env["MALLOC_MMAP_THRESHOLD_"] = MMAP_THRESHOLD
    else:
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.update(extra_env or {})
    cmd = [sys.executable, str(HERE), "--peer", name, "--folder", args.folder, "--store", args.store,
           "--workers", str(args.workers), "--report", args.report]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # CPU seconds of the peer and every process it waited for (workers, forkserver, cluster):
    # far less sensitive than wall time to other jobs sharing the cores.
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _peer_main(args: argparse.Namespace) -> None:
    name = args.peer
    if name == "limit":
        result = _peer_limit(args.folder, args.workers)
    elif name == "limit-cold":
        result = _peer_limit_cold(args.folder, args.workers)
    elif name == "hash-limit":
        result = _peer_hash_limit(args.folder, args.workers)
    elif name == "scan":
        result = _peer_scan(args.folder, args.store, args.workers)
    elif name == "scan-no-dihedral":
        result = _peer_scan(args.folder, args.store, args.workers, dihedral=False)
    elif name == "scan-unpinned":
        result = _peer_scan(args.folder, args.store, args.workers, pinned=False)
    elif name == "dask":
        result = _peer_scan(args.folder, args.store, args.workers, dask="local")
    elif name == "dask-address":
        import dask
        from distributed import LocalCluster

        # Configured as the README advises for scan clusters: no statistical profiler.
        with dask.config.set({"distributed.worker.profile.enabled": False}), LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            result = _peer_scan(args.folder, args.store, args.workers, dask=cluster.scheduler_address)
    elif name == "cli":
        result = _peer_cli(args.folder, args.store, args.workers, args.report)
    elif name == "full-decode":
        result = _peer_full_decode(args.folder)
    elif name == "cold":
        result = _peer_cold(args.folder)
    else:
        raise SystemExit(f"unknown peer {name}")
    print(json.dumps(result))


# -- set-up and the table ---------------------------------------------------------------


def _dataset(count: int, seed: int, size: tuple[int, int]) -> Path:
    """``count`` synthetic JPEGs in two sub-folders (the walk recurses), made in parallel once."""
    folder = HERE.parent / "data" / f"scan-{size[0]}x{size[1]}-s{seed}-n{count}"
    halves = [(folder / f"part{i}", n, seed + i) for i, n in enumerate((count - count // 2, count // 2))]
    if all((p / "manifest.json").exists() for p, _, _ in halves):
        return folder
    procs = [
        subprocess.Popen([sys.executable, "-c", "import sys; from hashmatch.testing import synthetic; "
                          f"synthetic.write_dataset(sys.argv[1], {n}, {s}, size={size!r})", str(p)])
        for p, n, s in halves
    ]
    if any(proc.wait() != 0 for proc in procs):
        raise SystemExit("could not write the synthetic images")
    return folder


def _store(folder: Path, seed: int) -> Path:
    """1,000 random references plus 20 of the files' own hashes (so that scans find matches)."""
    import numpy as np

    import hashmatch
    from hashmatch._store import ReferenceStore

    path = folder.parent / f"{folder.name}-refs.db"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp.db")
    for leftover in folder.parent.glob(tmp.name + "*"):
        leftover.unlink()
    with ReferenceStore(tmp) as store:
        for i in range(1000):
            value = int(rng.integers(0, 2**63)) * 2 + int(rng.integers(0, 2))
            store.add("random", hashmatch.Hash(value, "phash", 64), label=f"r{i}")
        files = sorted(folder.rglob("*.jpg"))
        for p in rng.choice(files, 20, replace=False):
            store.add("known", hashmatch.hash_image(p, "phash"), label=p.name)
    for suffix in ("", "-wal", "-shm"):
        if Path(str(tmp) + suffix).exists():
            os.replace(str(tmp) + suffix, str(path) + suffix)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the images (the --sizes of this job)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="scan", help="results file: benchmarks/results/NAME.json")
    parser.add_argument("--peers", default="limit,scan,scan-no-dihedral,scan-unpinned,cli,dask,dask-address")
    parser.add_argument("--no-allocator", action="store_true", help="skip the full-decode allocator comparison")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    add_record_option(parser)
    args = parser.parse_args(argv)
    if args.peer:
        _peer_main(args)
        return 0
    pin_malloc()  # this process too (set-up decodes images); each peer sets its own

    size = tuple(int(v) for v in args.size.split("x"))
    folder = _dataset(args.count, args.seed, size)  # type: ignore[arg-type]
    store = _store(folder, args.seed)
    args.folder, args.store = str(folder), str(store)
    args.report = str(HERE.parent / "data" / "bench-scan-report.jsonl")
    facts = machine()
    print(f"{args.count} JPEGs of {args.size} in {folder}, {args.workers} workers, {args.repeats} rounds; "
          f"cpu {facts['cpu']}, {facts['cores']} cores, load {facts['load_average_at_start']}")

    cold = _run_peer("cold", args)
    # The allocator on full-resolution decodes (fast=False; reduced-scale JPEG decodes use
    # buffers far below any threshold): glibc's dynamic default, the env var alone, and the
    # pin the scan workers use (mmap and trim thresholds).
    allocator: dict[str, list[dict[str, float]]] = {"dynamic": [], "env MALLOC_MMAP_THRESHOLD_ only": [], "scan worker pin": []}
    for _ in range(0 if args.no_allocator else args.repeats):
        allocator["dynamic"].append(_run_peer("full-decode", args, pinned=False))
        allocator["env MALLOC_MMAP_THRESHOLD_ only"].append(_run_peer("full-decode", args))
        allocator["scan worker pin"].append(_run_peer("full-decode", args, pinned=False, extra_env={"BENCH_MALLOC_MODE": "pin"}))
    peers = args.peers.split(",")
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in peers}
    for round_ in range(args.repeats):
        for name in peers:
            result = _run_peer(name, args, pinned=name != "scan-unpinned")
            if result["files"] != args.count:
                raise SystemExit(f"{name} saw {result['files']} files, expected {args.count}")
            runs[name].append(result)
            print(f"  round {round_ + 1} {name:18s} {result['seconds']:6.2f} s", flush=True)

    def med(name: str, key: str = "seconds") -> float:
        return statistics.median(r[key] for r in runs[name] if key in r)

    limit = med("limit")
    limit_cpu = med("limit", "cpu_seconds")
    labels = {
        "limit": "limit: reduced-scale decode only",
        "limit-cold": "limit with its start-up (list, fork, close)",
        "hash-limit": "compute_hashes only (warm pool, no scan)",
        "scan": "hashmatch.scan (pool)",
        "scan-no-dihedral": "hashmatch.scan, no dihedral",
        "scan-unpinned": "hashmatch.scan, malloc not pinned",
        "cli": "hashmatch scan (CLI, JSONL report)",
        "dask": "hashmatch.scan, dask='local' (starts a LocalCluster)",
        "dask-address": "hashmatch.scan on a running LocalCluster",
    }
    rows = []
    for name in peers:
        end_to_end = med(name)
        steady = med(name, "steady_seconds") if "steady_seconds" in runs[name][0] else None
        spread = max(r["seconds"] for r in runs[name]) / min(r["seconds"] for r in runs[name]) - 1
        cpu = med(name, "cpu_seconds")
        rows.append([
            labels[name],
            args.count / end_to_end,
            f"{limit / end_to_end:.0%}",
            f"{cpu / args.count * 1e3:.2f}",
            f"{limit_cpu / cpu:.0%}",
            "" if steady is None else f"{args.count / steady:.0f}",
            "" if steady is None else f"{limit / steady:.0%}",
            f"±{spread / 2:.0%}",
        ])
    print()
    print(table(rows, ["peer", "files/s end-to-end", "of limit", "CPU ms/file", "CPU of limit", "files/s steady", "steady of limit", "wall spread"]))
    comparisons = {}
    if "dask" in runs and "scan" in runs:
        comparisons["dask_vs_pool_end_to_end"] = med("scan") / med("dask")
        comparisons["dask_vs_pool_steady"] = med("scan", "steady_seconds") / med("dask", "steady_seconds")
    if "dask-address" in runs and "scan" in runs:
        comparisons["running_cluster_vs_pool_end_to_end"] = med("scan") / med("dask-address")
        comparisons["running_cluster_vs_pool_steady"] = med("scan", "steady_seconds") / med("dask-address", "steady_seconds")
    if "scan-unpinned" in runs and "scan" in runs:
        comparisons["unpinned_vs_pinned_steady"] = med("scan", "steady_seconds") / med("scan-unpinned", "steady_seconds")
    if "scan" in runs:
        comparisons["scan_vs_limit_end_to_end"] = limit / med("scan")
        comparisons["scan_vs_limit_steady"] = limit / med("scan", "steady_seconds")
        comparisons["scan_vs_limit_cpu"] = limit_cpu / med("scan", "cpu_seconds")
    if "scan" in runs and "limit-cold" in runs:
        comparisons["scan_vs_limit_with_its_start_up_end_to_end"] = med("limit-cold") / med("scan")
    for key, value in comparisons.items():
        print(f"{key}: {value:.2f}")
    print(f"cold start (fresh interpreter, numba cache on disk): import {cold['import_seconds']:.2f} s, "
          f"first compute_hashes {cold['first_call_seconds'] * 1e3:.0f} ms, warm {cold['warm_call_seconds'] * 1e3:.2f} ms per image")
    print()
    if not args.no_allocator:
        print(table(
            [[mode, statistics.median(r["cpu_ms_per_file"] for r in rs), statistics.median(r["minor_faults_per_file"] for r in rs)]
             for mode, rs in allocator.items()],
            ["allocator (full 1024x768 decode + phash)", "CPU ms/file", "minor faults/file"],
        ))
    facts["load_average_at_end"] = os.getloadavg()
    path = write_results(args.name, record=args.record, payload={
        "machine": facts,
        "settings": {
            "count": args.count, "seed": args.seed, "size": args.size, "workers": args.workers,
            "repeats": args.repeats, "algorithms": ALGORITHMS, "references": 1020,
            "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "unpinned_peer": "scan-unpinned",
        },
        "runs": runs,
        "medians_seconds": {name: med(name) for name in peers},
        "comparisons": comparisons,
        "cold_start": cold,
        "allocator_full_decode": allocator,
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

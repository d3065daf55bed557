"""Where a scan's time goes, per file: each step of a worker and of the parent, in one process.

    python benchmarks/scan_parts.py [--count 300] [--pool]

Uses bench_scan.py's files and store (run it once first). Each step is timed in CPU
seconds (best of ``--repeats``) over the same ``--count`` files, next to the decode-only
limit peer of bench_scan.py, so the ratios hold on a loaded machine. With ``--pool``,
also runs ``hashmatch.scan`` with 2 workers over all the files and splits its CPU into
the parent's start-up, the parent's share while results stream, and the workers'.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_record_option, cpu_label, write_results  # noqa: E402

HERE = Path(__file__).resolve()


def _best(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", default=str(HERE.parent / "data" / "scan-1024x768-s7-n2000"))
    parser.add_argument("--pool", action="store_true", help="also split a 2-worker scan's CPU")
    add_record_option(parser)
    args = parser.parse_args(argv)

    import dataclasses

    from PIL import Image

    import hashmatch
    from hashmatch import Matcher
    from hashmatch._loading import read_regular_file_stat
    from hashmatch._report import ReportWriter
    from hashmatch._scan._worker import decode_views, hash_chunk
    from hashmatch.hashers._api import _draft_request
    from hashmatch.hashers._registry import get_algorithm

    folder = Path(args.folder)
    store = str(folder) + "-refs.db"
    matcher = Matcher.from_store(store, algorithms=("phash",), dihedral=True)
    spec = matcher.spec
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    files = paths[: args.count]
    chunk = [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files]
    mode, size = _draft_request([(get_algorithm("phash"), get_algorithm("phash").check_options({}))])
    hash_chunk(chunk[:2], spec)
    datas = [read_regular_file_stat(p, 1 << 30)[0] for p in files]

    def decode(p: str) -> None:
        with Image.open(p) as img:
            img.draft(mode, size)
            img.load()

    no_trim = dataclasses.replace(spec, trim_borders=False)
    raws = hash_chunk(chunk, spec)
    views = [decode_views(r[4]) for r in raws]
    run = hashmatch.scan(str(folder), matcher, workers=0, report=io.StringIO())
    results = [run._finish(r) for r in raws]
    rows = [r.to_row(include_hashes=True) for r in results]
    report = os.path.join(str(HERE.parent / "scratch"), "scan-parts.jsonl")
    os.makedirs(os.path.dirname(report), exist_ok=True)
    writer = ReportWriter.open(report, "jsonl", run._settings)
    steps = {
        "limit: reduced-scale decode (bench_scan's peer)": lambda: [decode(p) for p in files],
        "worker: read (open, fstat, read)": lambda: [read_regular_file_stat(p, 1 << 30) for p in files],
        "worker: SHA-256": lambda: [hashlib.sha256(d).hexdigest() for d in datas],
        "worker: spec.hash (decode, phash x8, trimmed-view check)": lambda: [spec.hash(d) for d in datas],
        "worker: spec.hash without the trimmed view": lambda: [no_trim.hash(d) for d in datas],
        "worker: hash_chunk (all of a worker's work)": lambda: hash_chunk(chunk, spec),
        "parent: decode_views": lambda: [decode_views(r[4]) for r in raws],
        "parent: match_views (1,020 references)": lambda: [matcher.match_views(v) for v in views],
        "parent: result (decode + match + ScanResult)": lambda: [run._finish(r) for r in raws],
        "parent: report row (to_row + write + flush)": lambda: [writer.write_row(r.to_row(include_hashes=True)) for r in results],
    }
    out: dict[str, float] = {}
    print(f"CPU: {cpu_label()}; load average {os.getloadavg()[0]:.1f}; {len(files)} files, best of {args.repeats}")
    limit = None
    for name, fn in steps.items():
        ms = _best(fn, args.repeats) / len(files) * 1e3
        limit = limit or ms
        out[name] = ms
        print(f"  {name:58s} {ms:7.3f} ms/file  ({ms / limit:.2f} of the limit)")
    writer.close()
    os.remove(report)
    del rows
    if args.pool:
        out.update(_pool_split(str(folder), matcher, len(paths)))
    out["load_average"] = os.getloadavg()[0]
    write_results("scan-parts", {"cpu": cpu_label(), "ms_per_file": out}, record=args.record)
    return 0


def _pool_split(folder: str, matcher, n: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    import hashmatch

    before = resource.getrusage(resource.RUSAGE_SELF)
    run = hashmatch.scan(folder, matcher, workers=2, include=["*.jpg"])
    started = time.process_time()
    wall = time.perf_counter()
    run.start()
    start_cpu = time.process_time() - started
    start_wall = time.perf_counter() - wall
    streaming = time.process_time()
    count = sum(1 for _ in run)
    stream_cpu = time.process_time() - streaming
    total_wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    parent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    worker_cpu = workers.ru_utime + workers.ru_stime
    print(f"  2-worker scan of {count} files: {total_wall:.2f} s wall, start-up {start_wall:.2f} s wall / "
          f"{start_cpu:.2f} s CPU; parent while streaming {stream_cpu / count * 1e3:.3f} ms/file; "
          f"parent in all {parent / count * 1e3:.3f} ms/file; workers {worker_cpu / count * 1e3:.3f} ms/file")
    return {"pool_start_cpu_s": start_cpu, "pool_start_wall_s": start_wall,
            "pool_parent_streaming_ms": stream_cpu / count * 1e3, "pool_workers_ms": worker_cpu / count * 1e3}


if __name__ == "__main__":
    sys.exit(main())

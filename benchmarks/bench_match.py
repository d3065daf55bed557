"""Matcher benchmarks: upload latency against 1M references, and loading 10M PDQ references.

Part 1, upload latency. One 1024x768 JPEG (synthetic, quality 85) is matched with
``Matcher.match(bytes)`` against N random references per algorithm in a store (the
upload's own hash planted once, so the "hit" case also pays the SQLite metadata
lookup). Reported: median and p99 of the whole call; of ``compute_hashes`` alone
(decode + hash, the same work match does first); and of ``match_hashes`` on the
precomputed hashes, which is the part outside decoding and hashing (target: p99 at
most 1 ms). Peers from the same run on the same data: the bare index query (the
matcher's own overhead is the difference) and a brute-force ``Flat`` index.

Part 2, 10M PDQ references (random 256-bit hashes when no PDQ hasher is registered,
which does not change anything measured here): build the store, let a first Matcher
build and cache its snapshot, then in fresh processes time ``Matcher.from_store`` from
the cached snapshot and read its memory (VmRSS/VmHWM, and the growth over the
interpreter with hashmatch imported). Targets: at most 5 s and 1.5 GB.

Also: numba cold start (a fresh process's first ``match``, kernels loaded from the
disk cache) against the warm median.

Run:  .venv/bin/python benchmarks/bench_match.py [--seed 0] [--sizes 1000000] [--big 10000000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, table, write_results  # noqa: E402


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


_CPU: dict[int, list[float]] = {}


def _timed(fn: Any, reps: int) -> list[float]:
    """Wall-clock seconds per call; the same calls' thread CPU seconds go to _CPU[id(list)].

    On a shared machine the wall-clock tail is mostly time spent descheduled; the CPU
    time of the calling thread (numba kernels and SQLite run in it) shows the work.
    """
    fn()  # warm: compile / cache load outside the measurement
    out, cpu = [], []
    for _ in range(reps):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    _CPU[id(out)] = cpu
    return out


def _cpu(samples: list[float]) -> dict[str, float]:
    cpu = _CPU[id(samples)]
    return {"median": _pct(cpu, 50), "p99": _pct(cpu, 99)}


def _random_entries(rng: np.random.Generator, n: int, algorithm: str, bits: int, chunk: int = 200_000):
    from hashmatch.hashes import Hash
    from hashmatch import NewEntry

    nbytes = bits // 8
    for start in range(0, n, chunk):
        raw = rng.bytes(nbytes * min(chunk, n - start))
        for i in range(0, len(raw), nbytes):
            yield NewEntry(Hash(int.from_bytes(raw[i : i + nbytes], "big"), algorithm, bits), quality=100)


def _jpeg(seed: int) -> bytes:
    from hashmatch.testing.synthetic import generate_image

    buf = io.BytesIO()
    generate_image(seed, size=(1024, 768)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def latency(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from hashmatch import ALGORITHMS, Matcher, ReferenceStore, compute_hashes
    from hashmatch.hashes import HashBatch
    from hashmatch.index import Flat
    from hashmatch import DEFAULT_THRESHOLDS

    algorithms = [a for a in ("phash", "pdq") if a in ALGORITHMS]
    upload = _jpeg(args.seed)
    other = _jpeg(args.seed + 1)
    rows, records = [], []
    for n in args.sizes:
        for algorithm in algorithms:
            rng = np.random.default_rng(args.seed)
            path = workdir / f"latency-{algorithm}-{n}-s{args.seed}.db"
            store = ReferenceStore(path)
            t0 = time.perf_counter()
            bits = ALGORITHMS[algorithm].bits(**ALGORITHMS[algorithm].options)
            if store.generation == 0:  # a kept workdir reuses its stores (a count would scan)
                store.add_entries("bench", _random_entries(rng, n, algorithm, bits), return_ids=False)
            planted = compute_hashes(upload, [algorithm])[algorithm][0]
            store.add("known", planted.hash, quality=planted.quality, label="planted")
            fill_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            built = Matcher.from_store(store, algorithms=[algorithm])
            build_s = time.perf_counter() - t0
            for dihedral in (True, False):
                matcher = built.with_options(dihedral=dihedral)
                for case, image in (("hit", upload), ("miss", other)):
                    precomputed = compute_hashes(image, [algorithm], dihedral=dihedral)
                    found = matcher.match(image)
                    assert (len(found) > 0) == (case == "hit"), (case, found)
                    base, threshold = matcher.index(algorithm), matcher.thresholds[algorithm]
                    batch = HashBatch.from_hashes([r.hash for r in precomputed[algorithm]])
                    flat = _flat_cache(base, Flat)
                    t_all = _timed(lambda: matcher.match(image), args.reps)
                    t_hash = _timed(lambda: compute_hashes(image, [algorithm], dihedral=dihedral), args.reps)
                    t_outside = _timed(lambda: matcher.match_hashes(precomputed), args.reps)
                    t_index = _timed(lambda: base.query(batch, threshold), args.reps)
                    t_flat = _timed(lambda: flat.query(batch, threshold), max(5, args.reps // 20))
                    rec = {
                        "algorithm": algorithm, "references": n, "dihedral": dihedral, "case": case,
                        "index_kind": type(base).__name__, "threshold": threshold,
                        "queries_per_upload": len(batch),
                        "match_ms": {"median": _pct(t_all, 50), "p99": _pct(t_all, 99)},
                        "decode_hash_ms": {"median": _pct(t_hash, 50), "p99": _pct(t_hash, 99)},
                        "outside_decode_hash_ms": {"median": _pct(t_outside, 50), "p99": _pct(t_outside, 99)},
                        "outside_decode_hash_cpu_ms": _cpu(t_outside),
                        "match_cpu_ms": _cpu(t_all),
                        "index_query_ms": {"median": _pct(t_index, 50), "p99": _pct(t_index, 99)},
                        "flat_scan_ms": {"median": _pct(t_flat, 50), "p99": _pct(t_flat, 99)},
                        "store_fill_s": fill_s, "matcher_build_s": build_s,
                        "load_average": os.getloadavg(),
                    }
                    records.append(rec)
                    rows.append([
                        algorithm, n, "on" if dihedral else "off", case,
                        rec["match_ms"]["median"], rec["match_ms"]["p99"],
                        rec["decode_hash_ms"]["median"],
                        rec["outside_decode_hash_ms"]["median"], rec["outside_decode_hash_ms"]["p99"],
                        rec["outside_decode_hash_cpu_ms"]["p99"],
                        rec["index_query_ms"]["median"], rec["flat_scan_ms"]["median"],
                        rec["flat_scan_ms"]["median"] / max(rec["index_query_ms"]["median"], 1e-9),
                    ])
            built.close()
            store.close()
    print(table(rows, [
        "alg", "refs", "dihedral", "case", "match med ms", "match p99 ms", "decode+hash med ms",
        "outside med ms", "outside p99 ms", "outside CPU p99 ms", "index med ms", "flat med ms", "flat/index",
    ]))
    return {"rows": records, "thresholds": dict(DEFAULT_THRESHOLDS)}


_FLAT: dict[int, Any] = {}


def _flat_cache(index: Any, flat_cls: Any) -> Any:
    key = id(index)
    if key not in _FLAT:
        _FLAT[key] = flat_cls.build(*index.entries())
    return _FLAT[key]


_LOAD_PROBE = r"""
import json, os, sys, time
def status():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out
import numpy as np
import hashmatch
from hashmatch import Matcher
from hashmatch.hashes import Hash
before = status()
t0 = time.perf_counter()
m = Matcher.from_store(sys.argv[1], algorithms=[sys.argv[2]])
load_s = time.perf_counter() - t0
after = status()
rng = np.random.default_rng(0)
q = Hash(int.from_bytes(rng.bytes(32), "big"), sys.argv[2], 256)
t0 = time.perf_counter(); m.match_hashes(q); first_query_s = time.perf_counter() - t0
times = []
for _ in range(50):
    q = Hash(int.from_bytes(rng.bytes(32), "big"), sys.argv[2], 256)
    t0 = time.perf_counter(); m.match_hashes(q); times.append(time.perf_counter() - t0)
print(json.dumps({"load_s": load_s, "rss_before": before["VmRSS"], "rss_after": after["VmRSS"],
                  "hwm_after": after["VmHWM"], "references": len(m), "first_query_s": first_query_s,
                  "warm_query_median_ms": float(np.median(times) * 1e3), "kind": type(m.index(sys.argv[2])).__name__}))
"""


def big_load(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from hashmatch import Matcher, ReferenceStore

    n = args.big
    algorithm = "pdq"
    path = workdir / f"big-{n}-s{args.seed}.db"
    rng = np.random.default_rng(args.seed + 7)
    t0 = time.perf_counter()
    with ReferenceStore(path) as store:
        if store.generation == 0:  # a kept workdir reuses its store (a count would scan)
            store.add_entries("bench", _random_entries(rng, n, algorithm, 256), return_ids=False)
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Matcher.from_store(path, algorithms=[algorithm]):
        pass
    first_build_s = time.perf_counter() - t0
    snaps = list(Path(str(path) + ".snapshots").iterdir())
    runs = []
    for _ in range(args.load_repeats):
        load_average = os.getloadavg()
        proc = _probe(_LOAD_PROBE, str(path), algorithm)
        runs.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "load_average": load_average})
    db_bytes = path.stat().st_size
    rows = [[
        n, r["kind"], f"{r['load_average'][0]:.1f}", r["load_s"], (r["rss_after"] - r["rss_before"]) / 2**30, r["rss_after"] / 2**30,
        r["hwm_after"] / 2**30, r["warm_query_median_ms"],
    ] for r in runs]
    print(f"\n10M load: store fill {fill_s:.1f} s, first Matcher (read store + build + save snapshot) "
          f"{first_build_s:.1f} s, snapshot {sum(p.stat().st_size for p in snaps) / 2**20:.0f} MiB, "
          f"store {db_bytes / 2**20:.0f} MiB")
    print(table(rows, ["refs", "index", "loadavg", "load s", "RSS growth GiB", "RSS GiB", "peak RSS GiB", "query med ms"]))
    return {
        "references": n, "store_fill_s": fill_s, "first_build_s": first_build_s,
        "snapshot_bytes": sum(p.stat().st_size for p in snaps), "store_bytes": db_bytes, "runs": runs,
        "note": "random 256-bit hashes stored as algorithm 'pdq'",
    }


_COLD_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from hashmatch import Matcher
data = open(sys.argv[2], "rb").read()
m = Matcher.from_store(sys.argv[1])
t1 = time.perf_counter()
m.match(data)
t2 = time.perf_counter()
warm = []
for _ in range(30):
    a = time.perf_counter(); m.match(data); warm.append(time.perf_counter() - a)
warm.sort()
print(json.dumps({"import_and_load_s": t1 - t0, "first_match_s": t2 - t1, "warm_median_s": warm[len(warm) // 2]}))
"""


def _probe(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"probe failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def cold_start(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from hashmatch import Matcher, ReferenceStore, compute_hashes

    upload = _jpeg(args.seed)
    image_path = workdir / "upload.jpg"
    image_path.write_bytes(upload)
    path = workdir / f"cold-s{args.seed}.db"
    rng = np.random.default_rng(args.seed)
    with ReferenceStore(path) as store:
        if store.generation == 0:
            store.add_entries("bench", _random_entries(rng, 100_000, "phash", 64), return_ids=False)
        store.add("known", compute_hashes(upload, ["phash"])["phash"][0].hash)
    Matcher.from_store(path).close()  # snapshot cached, numba cache warm on disk
    runs = []
    for _ in range(3):
        proc = _probe(_COLD_PROBE, str(path), str(image_path))
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    rows = [[r["import_and_load_s"] * 1e3, r["first_match_s"] * 1e3, r["warm_median_s"] * 1e3,
             r["first_match_s"] / r["warm_median_s"]] for r in runs]
    print("\nCold start (fresh process, 100k phash refs, kernels from numba's disk cache):")
    print(table(rows, ["import+load ms", "first match ms", "warm match med ms", "first/warm"]))
    return {"references": 100_000, "runs": runs}


def import_rate(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A ThreatExchange-style PDQ list through ``import_file`` against the same rows
    through ``add_entries`` (no parsing): rows per second, each into a fresh store."""
    from hashmatch import ReferenceStore

    n = args.import_rows
    rng = np.random.default_rng(args.seed + 11)
    raw = rng.bytes(32 * n)
    listing = workdir / f"list-{n}.pdq"
    with open(listing, "w") as f:
        for i in range(n):
            f.write(f"{raw[32 * i:32 * i + 32].hex()},100,item{i}.jpg\n")
    rows = []
    out: dict[str, Any] = {"rows": n, "load_average": os.getloadavg()}
    for label in ("import_file", "add_entries"):
        path = workdir / f"import-{label}-{n}.db"
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        with ReferenceStore(path) as store:
            t0 = time.perf_counter()
            if label == "import_file":
                report = store.import_file(listing, "bench")
                added = report.added
            else:
                entries = _random_entries(np.random.default_rng(args.seed + 11), n, "pdq", 256)
                added = store.add_entries("bench", entries, return_ids=False).added
            seconds = time.perf_counter() - t0
        out[label] = {"seconds": seconds, "rows_per_s": n / seconds, "added": added}
        rows.append([label, n, seconds, n / seconds])
    print(f"\nImport of a {n}-row PDQ list (hash,quality,name):")
    print(table(rows, ["path", "rows", "seconds", "rows/s"]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1_000_000],
                        help="reference counts for the latency part (comma-separated)")
    parser.add_argument("--big", type=int, default=10_000_000, help="references for the load part (0 skips)")
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--load-repeats", type=int, default=3)
    parser.add_argument("--workdir", default=None,
                        help="keep the stores here and reuse them on the next run (default: a temp dir)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--import-rows", type=int, default=0, help="also time importing a PDQ list of this many rows")
    parser.add_argument("--output", default="match", help="results file name in benchmarks/results/ (no .json)")
    add_record_option(parser)
    args = parser.parse_args(argv)
    pin_malloc()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"machine": machine(), "settings": vars(args)}
        from hashmatch import ALGORITHMS

        result["pdq_hasher_registered"] = "pdq" in ALGORITHMS
        if not args.skip_latency:
            result["latency"] = latency(args, workdir)
        if not args.skip_cold:
            result["cold_start"] = cold_start(args, workdir)
        if args.import_rows:
            result["import"] = import_rate(args, workdir)
        if args.big:
            result["big_load"] = big_load(args, workdir)
    out = write_results(args.output, result, record=args.record)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to a ready Matcher with local references: rebuilt at start (before) vs local snapshot (after).

Builds (once, kept in ``--workdir``) a store per size with one pHash entry and 256
synthetic local features per reference (the stored size of real ones: random
descriptors, the first 16 of which are each reference's retrieval rows), then starts
fresh interpreters that time ``Matcher.from_store(store)`` (the local stage on) and
``warmup()`` as a service worker does, record peak and final RSS, then add 10 references
through another connection and time ``refresh()``. Peers run interleaved, ``--repeats``
rounds:

* ``before``: the code of ``--base`` (a tree of the base commit; its Matcher rebuilds the
  local index from the store at every start and every refresh);
* ``after``: this tree, the local snapshot already cached;
* ``after, no snapshot``: this tree with the local snapshot deleted first (build + save).

``--serve-workers N`` then spawns ``hashmatch serve --workers N`` from each tree once
(after first, its snapshot cached; then before) and times it to every worker's /ready.

Global snapshots are cached for every peer (all versions do that). Example:

    git archive 54be614 | (mkdir -p /tmp/localsnap-base && tar -x -C /tmp/localsnap-base)
    python benchmarks/bench_local_snapshot.py --sizes 100000 1000000 --base /tmp/localsnap-base/src --record
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, table, write_results  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
CHUNK = 20_000

# Runs in a fresh interpreter with PYTHONPATH set to the tree under test.
CHILD = r"""
import json, os, sys, time
start = time.perf_counter()
import numpy as np
from hashmatch import Matcher, ReferenceStore
from hashmatch._store import NewEntry
from hashmatch.hashes import Hash
imported = time.perf_counter()
matcher = Matcher.from_store(sys.argv[1])
ready = time.perf_counter()
matcher.warmup()
warm = time.perf_counter()
local = matcher._state.local
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
rng = np.random.default_rng([int(sys.argv[2]), time.time_ns()])  # new references on every run, also reruns
with ReferenceStore(sys.argv[1]) as other:
    ids = other.add_entries("L", [NewEntry(Hash(int.from_bytes(rng.bytes(8), "big"), "phash", 64)) for _ in range(10)]).entry_ids
    row = (1, 512, 384, bytes(6 * 256), rng.bytes(32 * 256))
    other.add_local_features([(i, row) for i in ids])
before_refresh = time.perf_counter()
matcher.refresh()
refreshed = time.perf_counter()
print(json.dumps({
    "import_s": imported - start, "from_store_s": ready - imported, "ready_s": ready - start,
    "worker_ready_s": warm - start, "refresh_after_10_adds_s": refreshed - before_refresh,
    "local_references": 0 if local is None else len(local), "rss_bytes": rss("VmRSS:"), "peak_rss_bytes": rss("VmHWM:"),
    "local_nbytes": 0 if local is None else local.nbytes,
}))
"""


def build_store(path: Path, n: int, seed: int) -> None:
    from hashmatch import Matcher, ReferenceStore
    from hashmatch._store import NewEntry
    from hashmatch.hashes import Hash

    rng = np.random.default_rng(seed)
    pool = rng.bytes(32 * 240)  # features 17-256: stored, never indexed
    keypoints = bytes(6 * 256)
    tmp = path.with_suffix(".building")
    with ReferenceStore(tmp) as store:
        for start in range(0, n, CHUNK):
            k = min(CHUNK, n - start)
            words = rng.integers(0, 2**63, size=k, dtype=np.int64).tolist()
            ids = store.add_entries("L", [NewEntry(Hash(w, "phash", 64)) for w in words]).entry_ids
            retrieval = rng.bytes(32 * 16 * k)
            store.add_local_features(
                (i, (1, 512, 384, keypoints, retrieval[512 * j : 512 * (j + 1)] + pool)) for j, i in enumerate(ids)
            )
        Matcher.from_store(store, local="off").close()  # the global snapshot every peer reuses
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    Path(str(tmp) + ".snapshots").rename(str(path) + ".snapshots")


def run_child(src: Path, store: Path, seed: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", CHILD, str(store), str(seed)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def serve_ready(src: Path, store: Path, workers: int) -> dict[str, Any]:
    """Spawn ``hashmatch serve`` from the tree ``src``: seconds until every worker answers
    /ready, and each worker's RSS and PSS then."""
    from bench_service import Served

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)
    try:
        server = Served(store, workers)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    try:
        return {"ready_s": server.wait_ready(), "memory": server.memory()}
    finally:
        server.stop()


def local_snapshots(store: Path) -> list[Path]:
    folder = Path(str(store) + ".snapshots")
    return sorted(folder.glob("local-*.hmidx")) if folder.is_dir() else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--base", type=Path, required=True, help="src/ of the base commit's tree (the 'before' peer)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hashmatch-bench-localsnap"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="local_snapshot", help="results file name (without .json)")
    parser.add_argument("--serve-workers", type=int, default=0,
                        help="also time 'hashmatch serve' to /ready with this many workers (after, then before)")
    add_record_option(parser)
    args = parser.parse_args(argv)
    pin_malloc()
    args.workdir.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"machine": machine(), "runs": []}
    rows: list[list[Any]] = []
    serve_rows: list[list[Any]] = []
    for n in args.sizes:
        store = args.workdir / f"local-{n}.db"
        if not store.exists():
            t0 = time.perf_counter()
            build_store(store, n, args.seed)
            print(f"built {store} in {time.perf_counter() - t0:.0f} s ({store.stat().st_size / 1e9:.2f} GB)", flush=True)
        results: dict[str, list[dict[str, Any]]] = {"before": [], "after": [], "after, no snapshot": []}
        for src in (args.base, SRC) if args.repeats else ():  # each tree's numba disk cache filled, not timed
            run_child(src, store, 999)
        for r in range(args.repeats):
            # Every child adds 10 references; the refresh times therefore include their deltas.
            results["before"].append(run_child(args.base, store, 1000 * r + 1))
            for snap in local_snapshots(store):
                snap.unlink()
            results["after, no snapshot"].append(run_child(SRC, store, 1000 * r + 2))
            run_child(SRC, store, 1000 * r + 3)  # the adds above changed the store: cache this generation
            results["after"].append(run_child(SRC, store, 1000 * r + 4))
            print(f"{n}: round {r + 1}: " + ", ".join(f"{k} {v[-1]['from_store_s']:.2f} s" for k, v in results.items()), flush=True)
        best = {k: min(v, key=lambda x: x["from_store_s"]) for k, v in results.items() if v}
        snap = local_snapshots(store)
        run = {"references": n, "results": results, "snapshot_bytes": snap[0].stat().st_size if snap else None}
        payload["runs"].append(run)
        if args.serve_workers:
            run["serve"] = {"workers": args.serve_workers, "after": serve_ready(SRC, store, args.serve_workers),
                            "before": serve_ready(args.base, store, args.serve_workers)}
            for name in ("before", "after"):
                got = run["serve"][name]
                serve_rows.append([n, name, args.serve_workers, round(got["ready_s"], 2),
                                   " / ".join(f"{m['rss_mib']:.0f}" for m in got["memory"]),
                                   " / ".join(f"{m['pss_mib']:.0f}" for m in got["memory"])])
        for name, res in best.items():
            b = best["before"]
            rows.append([n, name, res["local_references"], round(res["from_store_s"], 3),
                         round(res["from_store_s"] / b["from_store_s"], 3), round(res["worker_ready_s"], 3),
                         round(res["refresh_after_10_adds_s"], 4), round(res["peak_rss_bytes"] / 2**20),
                         round(res["rss_bytes"] / 2**20)])
    text = table(rows, ["refs", "peer", "local refs", "from_store s", "÷ before", "ready+warmup s",
                        "refresh s", "peak RSS MiB", "RSS MiB"])
    if serve_rows:
        text += "\n\n" + table(serve_rows, ["refs", "peer", "workers", "serve ready s", "RSS MiB/worker", "PSS MiB/worker"])
    print(text)
    payload["table"] = text
    print(f"results: {write_results(args.output, payload, record=args.record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

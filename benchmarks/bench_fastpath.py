"""The global fast path end to end: ``Matcher.match`` per 1024x768 JPEG upload, one thread.

Each timed call decodes the upload, computes PDQ and pHash for every dihedral variant of
every view (as is, border-trimmed), looks every variant up and applies the policy
(thresholds, pHash's confirmed bands, their sibling lookups in the store). Also timed:
the pHash lookup alone (``match_views`` on the upload's precomputed pHash views, policy
included). References live in a real store (``Matcher.from_store``, the service's
path): each reference image has a pHash (random, 32 of 64 bits set as every pHash
has) and a PDQ (random) with the same external id, added in writes of ``--group``
images (``refs add`` writes one image at a time, a partner import one file at once).

Several source trees are compared in the same run: each tree runs in its own process
(``PYTHONPATH=<tree>/src``), the trees take turns in every round, and the figures are
percentiles over every round's calls, given as ratios to the first tree::

    MALLOC_MMAP_THRESHOLD_=134217728 MALLOC_TRIM_THRESHOLD_=268435456 NUMBA_NUM_THREADS=1 \\
    python benchmarks/bench_fastpath.py --trees base=/work/wt-fastpath-base main=/work/main \\
        new=/work/wt-fastpath --sizes 100000 1000000 [--rounds 3] [--record]

The stores are built once in ``--data`` (untracked) and shared by the trees (same
schema); ``--worker`` is the per-tree process (internal).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, SCRATCH, machine  # noqa: E402

DATA = SCRATCH / "fastpath"


def phash_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 64-bit words with exactly 32 bits set (a pHash's shape)."""
    keys = rng.random((n, 64))
    top = np.argpartition(keys, 32, axis=1)[:, :32]
    bits = np.zeros((n, 64), dtype=np.uint64)
    np.put_along_axis(bits, top, np.uint64(1), axis=1)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def build_store(path: Path, n: int, group: int, seed: int) -> None:
    from hashmatch import NewEntry, ReferenceStore
    from hashmatch.hashes import Hash

    tmp = path.with_suffix(".tmp")
    for p in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
        p.unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    with ReferenceStore(tmp, create=True) as store:
        for start in range(0, n, group):
            k = min(group, n - start)
            ph = phash_words(rng, k)
            pdq = rng.integers(0, 2**63, size=(k, 4), dtype=np.int64).view(np.uint64) ^ (
                rng.integers(0, 2, size=(k, 4), dtype=np.uint64) << np.uint64(63))
            entries = []
            for i in range(k):
                ext = f"img{start + i}"
                entries.append(NewEntry(Hash.from_bytes(int(ph[i]).to_bytes(8, "big"), algorithm="phash", bits=64),
                                        None, None, ext))
                entries.append(NewEntry(Hash.from_bytes(b"".join(int(w).to_bytes(8, "big") for w in pdq[i]),
                                                        algorithm="pdq", bits=256), 100, None, ext))
            store.add_entries("refs", entries, return_ids=False)
        add_image_copies(store, seed)
    tmp.rename(path)


COPIES = 24  # uploads 0 .. COPIES - 1 have a reference: an altered copy of themselves


def altered(data: bytes, i: int) -> bytes:
    """Upload ``i``'s reference copy: cropped 8 %, turned 4 degrees, or re-saved at
    quality 40 in turn (the first two land pHash in the confirmed bands), and every
    fourth upload has none."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    if i % 4 == 0:
        img = img.crop((int(0.04 * w), int(0.04 * h), int(0.96 * w), int(0.96 * h)))
    elif i % 4 == 1:
        img = img.rotate(4, resample=Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=40 if i % 4 == 2 else 90)
    return buf.getvalue()


def add_image_copies(store: Any, seed: int) -> None:
    """Reference copies of the first uploads, added as ``refs add`` adds images."""
    from hashmatch import add_images

    for i, data in enumerate(uploads(COPIES, seed + 10_000)):
        if i % 4 != 3:
            add_images(store, "refs", [io.BytesIO(altered(data, i))], algorithms=("pdq", "phash"),
                       external_id=f"upload{i}", local=False)


def uploads(count: int, seed: int) -> list[bytes]:
    from hashmatch.testing.synthetic import generate_image

    out = []
    for i in range(count):
        buf = io.BytesIO()
        generate_image(seed + i, size=(1024, 768)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def worker(store_path: str, count: int, seed: int, repeats: int) -> dict[str, Any]:
    """One tree's timings: every upload ``repeats`` times, end to end and pHash only."""
    from hashmatch import Matcher

    t0 = time.perf_counter()
    matcher = Matcher.from_store(store_path, cache_snapshots=False, readonly=True, local="off")
    load_s = time.perf_counter() - t0
    spec = matcher.spec
    data = uploads(count, seed)
    views = [spec.hash(io.BytesIO(b)) for b in data]
    phash_views = [[{k: v for k, v in view.items() if k == "phash"} for view in vs] for vs in views]
    verdicts = [[(m.entry_id, m.algorithm, m.distance, m.orientation) for m in matcher.match(io.BytesIO(b))]
                for b in data]
    end_to_end, lookup = [], []
    for _ in range(repeats):
        for b, pv in zip(data, phash_views):
            t = time.perf_counter()
            matcher.match(io.BytesIO(b))
            end_to_end.append(time.perf_counter() - t)
            t = time.perf_counter()
            matcher.match_views(pv)
            lookup.append(time.perf_counter() - t)
    index = matcher.index("phash")
    return {"end_to_end_s": end_to_end, "phash_lookup_s": lookup, "load_s": load_s, "verdicts": verdicts,
            "phash_index": type(index).__name__, "references": len(matcher),
            "variants_per_upload": [sum(len(v.get("phash", ())) for v in vs) for vs in views]}


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trees", nargs="*", default=[], metavar="NAME=DIR", help="source trees; the first is the peer")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--group", type=int, default=1000, help="reference images per write")
    ap.add_argument("--uploads", type=int, default=COPIES)
    ap.add_argument("--repeats", type=int, default=2, help="calls per upload per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--record", action="store_true", help="write benchmarks/results/fastpath.json")
    ap.add_argument("--worker", nargs=2, metavar=("STORE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        result = worker(args.worker[0], args.uploads, args.seed + 10_000, args.repeats)
        Path(args.worker[1]).write_text(json.dumps(result))
        return 0
    trees = dict(t.split("=", 1) for t in args.trees)
    if not trees:
        ap.error("--trees NAME=DIR ... is required")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="134217728", MALLOC_TRIM_THRESHOLD_="268435456",
               NUMBA_NUM_THREADS="1")
    args.data.mkdir(parents=True, exist_ok=True)
    first = next(iter(trees.values()))
    report: dict[str, Any] = {"machine": machine(), "settings": vars(args) | {"data": str(args.data)}, "sizes": {}}
    for n in args.sizes:
        store = args.data / f"refs-{n}-g{args.group}-s{args.seed}.db"
        if not store.exists():
            print(f"building {store} ...", flush=True)
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_fastpath as b; "
                    f"from pathlib import Path; b.build_store(Path({str(store)!r}), {n}, {args.group}, {args.seed})")
            subprocess.run([sys.executable, "-c", code], check=True, env=dict(env, PYTHONPATH=f"{first}/src"))
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name, tree in trees.items():
                out = args.data / f"out-{name}.json"
                cmd = [sys.executable, __file__, "--worker", str(store), str(out), "--uploads", str(args.uploads),
                       "--repeats", str(args.repeats), "--seed", str(args.seed)]
                subprocess.run(cmd, check=True, env=dict(env, PYTHONPATH=f"{tree}/src"))
                runs[name].append(json.loads(out.read_text()))
                print(f"n={n} round {r} {name} done (load {os.getloadavg()[0]:.1f})", flush=True)
        verdicts = {name: rs[0]["verdicts"] for name, rs in runs.items()}
        peer = next(iter(trees))
        names = list(trees)
        row: dict[str, Any] = {}
        for name, rs in runs.items():
            e2e = [t for x in rs for t in x["end_to_end_s"]]
            lk = [t for x in rs for t in x["phash_lookup_s"]]
            row[name] = {"index": rs[0]["phash_index"], "references": rs[0]["references"], "load_s": rs[0]["load_s"],
                         "calls": len(e2e),
                         "same_verdicts_as": [o for o in names if verdicts[o] == verdicts[name] and o != name],
                         "matches_per_upload": float(np.mean([len(v) for v in verdicts[name]])),
                         "end_to_end_ms": {f"p{q}": pct(e2e, q) for q in (50, 95, 99)},
                         "phash_lookup_ms": {f"p{q}": pct(lk, q) for q in (50, 95, 99)}}
        for name in row:
            for what in ("end_to_end_ms", "phash_lookup_ms"):
                row[name][what + "_ratio_to_" + peer] = {
                    q: row[name][what][q] / row[peer][what][q] for q in row[name][what]}
        report["sizes"][str(n)] = row
        print(f"\n{n:,} references (one thread; ms per upload, ratio to {peer})")
        print(f"{'tree':8} {'index':16} {'e2e p50':>14} {'e2e p95':>14} {'e2e p99':>14} "
              f"{'lookup p50':>14} {'lookup p95':>14} {'lookup p99':>14}")
        for name, x in row.items():
            cells = [f"{x[w][q]:7.2f} {x[w + '_ratio_to_' + peer][q]:5.2f}x"
                     for w in ("end_to_end_ms", "phash_lookup_ms") for q in ("p50", "p95", "p99")]
            print(f"{name:8} {x['index']:16} " + " ".join(f"{c:>14}" for c in cells))
    report["load_average_at_end"] = os.getloadavg()
    dest = (RESULTS if args.record else args.data) / "fastpath.json"
    dest.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

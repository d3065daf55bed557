"""Exact Hamming index benchmark: hashmatch's indexes against pybktree, faiss and numpy.

For each data set (random 64-bit hashes at 100k and 1M, random 256-bit at 1M, and
realistic hashes of synthetic images and their transformed copies) and radius, every
index is built on the same references and queried with the same 1,000 queries (half
planted within r of a reference, half random), on one thread (numba threads = 1,
faiss omp threads = 1). Reported per index: build seconds, memory per reference
(array bytes, and RSS growth), queries per second, and the speed ratio to faiss
``IndexBinaryFlat`` measured in the same run. Exactness: every peer's set of
(query, reference) pairs is compared with hashmatch's ``Flat`` (the oracle) on the
same queries; slow peers run on a prefix of the queries (``queries`` column).

Peers: faiss ``IndexBinaryFlat.range_search``; faiss ``IndexBinaryMultiHash`` with the
bit flips that make it exact (pigeonhole) and, for 256 bits, ``nflip=0`` (approximate,
recall reported); pybktree; a numpy ``bitwise_count`` scan. Timings on a shared
2-core machine are noisy: each figure is the best of ``--repeats`` runs, and the
ratios (same run, same data) are what to compare.

Also: numba cold start (fresh process: import, load kernels from the disk cache,
build and query a small index) against the same work warm.

Run:  .venv/bin/python benchmarks/bench_index.py [--seed 0] [--sizes 64:100000,64:1000000,256:1000000]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MMAP_THRESHOLD, add_record_option, machine, pin_malloc, table, write_results  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
RADII = {64: [4, 8, 12], 256: [31]}
Pairs = set[tuple[int, int]]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def random_words(rng: np.random.Generator, n: int, nw: int) -> np.ndarray:
    return rng.integers(0, 2**64 - 1, size=(n, nw), dtype=np.uint64, endpoint=True)


def flip_bits(rng: np.random.Generator, rows: np.ndarray, r: int) -> np.ndarray:
    """Each row with a uniform number of bits (0 .. r) flipped at random places."""
    out = rows.copy()
    bits = rows.shape[1] * 64
    for i in range(len(out)):
        for p in rng.choice(bits, size=int(rng.integers(0, r + 1)), replace=False):
            out[i, p // 64] ^= np.uint64(1) << np.uint64(63 - p % 64)
    return out


def make_queries(rng: np.random.Generator, refs: np.ndarray, nq: int, r: int) -> np.ndarray:
    planted = flip_bits(rng, refs[rng.integers(0, len(refs), nq // 2)], r)
    return np.concatenate([planted, random_words(rng, nq - nq // 2, refs.shape[1])])


# ---------------------------------------------------------------------------------
# Realistic data: hashes of synthetic images and transformed copies
# ---------------------------------------------------------------------------------
def _transforms(image: Any, rng: np.random.Generator) -> list[Any]:
    import io

    from PIL import Image, ImageEnhance

    w, h = image.size
    out = []
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=int(rng.integers(30, 70)))
    out.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    out.append(image.resize((max(8, int(w * rng.uniform(0.4, 0.8))), max(8, int(h * rng.uniform(0.4, 0.8))))))
    c = rng.uniform(0.02, 0.08)
    out.append(image.crop((int(w * c), int(h * c), w - int(w * c), h - int(h * c))))
    out.append(ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.25)))
    return out


def realistic_hashes(seed: int, n_images: int) -> dict[str, np.ndarray]:
    """phash (64) and pdq (256) words of n_images originals and 4 transformed copies each
    (rows image-major: original, JPEG, resized, cropped, brighter), and of two copies of
    each of n_images // 4 unseen images. Cached in benchmarks/data (no pickle)."""
    path = DATA / f"index-realistic-{seed}-{n_images}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from hashmatch.hashers import hash_image
    from hashmatch.testing.synthetic import generate_image

    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("phash_ref", "pdq_ref", "phash_unseen", "pdq_unseen")}
    for i in range(n_images + n_images // 4):
        image = generate_image(seed * 1_000_003 + i, long_side=int(rng.integers(256, 640)))
        group = "ref" if i < n_images else "unseen"
        variants = [image, *_transforms(image, rng)] if group == "ref" else _transforms(image, rng)[:2]
        for v in variants:
            out[f"phash_{group}"].append(hash_image(v, "phash").to_words())
            out[f"pdq_{group}"].append(hash_image(v, "pdq").to_words())
    arrays = {k: np.array(v, dtype=np.uint64) for k, v in out.items()}
    DATA.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return arrays


# ---------------------------------------------------------------------------------
# Peers: each returns (build(refs) -> handle, query(handle, queries, r) -> pairs)
# ---------------------------------------------------------------------------------
def as_bytes(words: np.ndarray) -> np.ndarray:
    # faiss wants uint8 codes; any fixed byte order gives the same Hamming distances.
    return np.ascontiguousarray(words).view(np.uint8).reshape(len(words), -1)


def faiss_flat() -> tuple[Callable[..., Any], Callable[..., Pairs]]:
    import faiss

    def build(words: np.ndarray) -> Any:
        index = faiss.IndexBinaryFlat(words.shape[1] * 64)
        index.add(as_bytes(words))
        return index

    def query(index: Any, q: np.ndarray, r: int) -> Pairs:
        lims, _, ids = index.range_search(as_bytes(q), r + 1)  # faiss keeps d < radius
        return {(qi, int(i)) for qi in range(len(q)) for i in ids[lims[qi] : lims[qi + 1]]}

    return build, query


def faiss_multihash(nhash: int, b: int, nflip: int | None) -> tuple[Callable[..., Any], Callable[..., Pairs]]:
    """``nflip=None``: the fewest flips that make it exact, ``r // nhash`` (pigeonhole)."""
    import faiss

    def build(words: np.ndarray) -> Any:
        index = faiss.IndexBinaryMultiHash(words.shape[1] * 64, nhash, b)
        index.add(as_bytes(words))
        return index

    def query(index: Any, q: np.ndarray, r: int) -> Pairs:
        index.nflip = r // nhash if nflip is None else nflip
        lims, _, ids = index.range_search(as_bytes(q), r + 1)
        return {(qi, int(i)) for qi in range(len(q)) for i in ids[lims[qi] : lims[qi + 1]]}

    return build, query


def pybktree_peer() -> tuple[Callable[..., Any], Callable[..., Pairs]]:
    import pybktree

    def to_ints(words: np.ndarray) -> list[int]:
        return [int.from_bytes(row.astype(">u8").tobytes(), "big") for row in words]

    def build(words: np.ndarray) -> Any:
        values = to_ints(words)
        ids: dict[int, list[int]] = {}
        for i, v in enumerate(values):
            ids.setdefault(v, []).append(i)
        return pybktree.BKTree(lambda a, b: (a ^ b).bit_count(), list(ids)), ids

    def query(handle: Any, q: np.ndarray, r: int) -> Pairs:
        tree, ids = handle
        return {(qi, i) for qi, v in enumerate(to_ints(q)) for _, item in tree.find(v, r) for i in ids[item]}

    return build, query


def numpy_scan() -> tuple[Callable[..., Any], Callable[..., Pairs]]:
    def query(words: np.ndarray, q: np.ndarray, r: int) -> Pairs:
        out: Pairs = set()
        for qi in range(len(q)):
            d = np.bitwise_count(words ^ q[qi]).sum(axis=1, dtype=np.int32)
            out.update((qi, int(i)) for i in np.flatnonzero(d <= r))
        return out

    return (lambda words: np.ascontiguousarray(words)), query


def hashmatch_peer(kind: str) -> tuple[Callable[..., Any], Callable[..., Pairs]]:
    from hashmatch.hashes import HashBatch
    from hashmatch.index import build_index

    def build(words: np.ndarray, r: int | None = None) -> Any:
        batch = HashBatch(words, algorithm="bench", bits=words.shape[1] * 64)
        return build_index(batch, max_distance=r, kind=kind)

    def query(index: Any, q: np.ndarray, r: int) -> Pairs:
        res = index.query(HashBatch(q, algorithm="bench", bits=q.shape[1] * 64), r)
        return set(zip(res.query_index.tolist(), res.ids.tolist()))

    return build, query


# ---------------------------------------------------------------------------------
def timed_queries(query: Callable[..., Pairs], handle: Any, q: np.ndarray, r: int, repeats: int,
                  budget: float) -> tuple[float, int, Pairs]:
    """Best queries/s over repeats; a slow peer runs on a prefix of the queries sized to the budget."""
    k = min(len(q), 10)
    while True:
        start = time.perf_counter()
        pairs = query(handle, q[:k], r)
        elapsed = time.perf_counter() - start
        if k == len(q) or elapsed >= budget / 8:
            break
        k = min(len(q), k * 4)
    best = k / elapsed
    for _ in range(repeats - 1 if k == len(q) else 0):
        start = time.perf_counter()
        pairs = query(handle, q, r)
        best = max(best, k / (time.perf_counter() - start))
    return best, k, pairs


def build_measured(build: Callable[..., Any], *args: Any) -> tuple[Any, float, int]:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    handle = build(*args)
    seconds = time.perf_counter() - start
    gc.collect()
    return handle, seconds, rss_bytes() - before


def run_case(name: str, refs: np.ndarray, queries: np.ndarray, radii: list[int], args: argparse.Namespace,
             rows: list[list[Any]], results: list[dict[str, Any]]) -> None:
    n, nw = refs.shape
    bits = nw * 64
    peers: list[tuple[str, Callable[..., Any], Callable[..., Pairs]]] = []
    for kind in ("flat", "mih", "bktree", "auto"):
        peers.append((f"hashmatch {kind}", *hashmatch_peer(kind)))
    peers.append(("faiss IndexBinaryFlat", *faiss_flat()))
    if bits == 64:
        peers.append(("faiss MultiHash 3x21 nflip=r//3 (exact)", *faiss_multihash(3, 21, None)))
    else:
        peers.append(("faiss MultiHash 16x16 nflip=1 (exact)", *faiss_multihash(16, 16, None)))
        peers.append(("faiss MultiHash 16x16 nflip=0 (approx)", *faiss_multihash(16, 16, 0)))
    peers.append(("numpy bitwise_count scan", *numpy_scan()))
    if bits == 64 and not args.no_pybktree:
        peers.append(("pybktree", *pybktree_peer()))
    built: dict[str, tuple[Any, float, int]] = {}
    for r in radii:
        oracle: Pairs | None = None
        oracle_used = 0
        faiss_rate = None
        case_rows = []
        for label, build, query in peers:
            if label == "pybktree" and n > args.pybktree_max:
                continue
            key = label if label != "hashmatch auto" else f"{label} r={r}"
            if key not in built:
                extra = (r,) if label == "hashmatch auto" else ()
                built[key] = build_measured(build, refs, *extra) if label.startswith("hashmatch") else build_measured(build, refs)
                if label.startswith("hashmatch") and label != "hashmatch auto":
                    warm_q = queries[:5]
                    query(built[key][0], warm_q, r)  # compile or load kernels outside the timing
            handle, build_s, rss = built[key]
            qps, used, pairs = timed_queries(query, handle, queries, r, args.repeats, args.budget)
            if oracle is None:
                oracle, oracle_used = pairs, used  # hashmatch flat comes first: the oracle
            common = min(used, oracle_used)  # slow peers may have run on different prefixes
            expected = {p for p in oracle if p[0] < common}
            got = {p for p in pairs if p[0] < common}
            exact = got == expected
            recall = len(got & expected) / max(1, len(expected))
            if label == "faiss IndexBinaryFlat":
                faiss_rate = qps
            nbytes = getattr(handle, "nbytes", None)
            chosen = type(handle).__name__ if label == "hashmatch auto" else ""
            case_rows.append([name, r, label + (f" ({chosen})" if chosen else ""), used, qps, build_s,
                              "-" if nbytes is None else nbytes / n, rss / n,
                              f"yes ({common})" if exact else f"no: recall {recall:.3f} ({common})", len(expected)])
        for row in case_rows:
            row.insert(5, row[4] / faiss_rate if faiss_rate else float("nan"))
            rows.append(row)
            results.append(dict(zip(HEADER, row)))
            print(table([row], HEADER).splitlines()[-1], flush=True)


HEADER = ["data", "r", "index", "queries", "q/s", "x faiss flat", "build s", "bytes/ref (arrays)",
          "bytes/ref (RSS)", "exact (on queries)", "matches"]


def cold_and_warm() -> dict[str, float]:
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np\n"
        "from hashmatch.hashes import HashBatch\n"
        "from hashmatch.index import MultiIndexHash, Flat\n"
        "w = np.random.default_rng(0).integers(0, 2**63, size=(20000, 4), dtype=np.uint64)\n"
        "b = HashBatch(w, algorithm='pdq', bits=256)\n"
        "def once():\n"
        "    t = time.perf_counter(); i = MultiIndexHash.build(b); i.query(b[:100], 31)\n"
        "    f = Flat.build(b); f.query(b[:100], 31); return time.perf_counter() - t\n"
        "t1 = time.perf_counter(); first = once(); warm = min(once() for _ in range(3))\n"
        "print(t1 - t0, first, warm)\n"
    )
    once = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imp, first, warm = map(float, once.stdout.split())
    return {"import_s": imp, "first_build_and_query_s": first, "warm_build_and_query_s": warm}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", default="64:100000,64:1000000,256:1000000",
                        help="comma-separated bits:count random data sets")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds a slow peer may spend per case")
    parser.add_argument("--realistic-images", type=int, default=2000,
                        help="synthetic images for the realistic set (0 to skip)")
    parser.add_argument("--pybktree-max", type=int, default=100_000, help="largest set pybktree runs on")
    parser.add_argument("--no-pybktree", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="index", help="results file: benchmarks/results/<name>.json")
    add_record_option(parser)
    args = parser.parse_args(argv)
    pin_malloc()

    import faiss
    import numba

    numba.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    print(table([], HEADER))
    for spec in filter(None, args.sizes.split(",")):
        bits, n = (int(x) for x in spec.split(":"))
        refs = random_words(rng, n, bits // 64)
        for r in RADII[bits]:
            queries = make_queries(rng, refs, args.queries, r)
            run_case(f"random {bits}-bit n={n}", refs, queries, [r], args, rows, results)
        del refs
        gc.collect()
    if args.realistic_images:
        real = realistic_hashes(args.seed, args.realistic_images)
        for algo, bits in (("phash", 64), ("pdq", 256)):
            every = real[f"{algo}_ref"].reshape(args.realistic_images, 5, bits // 64)
            # References: each image, its JPEG and its resized copy. Queries: its cropped
            # or brightened copy (not in the set), and copies of images not in the set.
            refs = np.ascontiguousarray(every[:, :3].reshape(-1, bits // 64))
            n_ref = len(refs)
            pick = rng.integers(0, args.realistic_images, args.queries // 2)
            seen = every[pick, rng.integers(3, 5, len(pick))]
            unseen = real[f"{algo}_unseen"][rng.permutation(len(real[f"{algo}_unseen"]))[: args.queries // 2]]
            queries = np.concatenate([seen, unseen])
            run_case(f"synthetic-image {algo} n={n_ref}", refs, queries, RADII[bits], args, rows, results)
    startup = cold_and_warm()
    print()
    print(table(rows, HEADER))
    print(f"\nnumba cold start (fresh process, kernels from the disk cache): import {startup['import_s']:.2f} s, "
          f"first build+query {startup['first_build_and_query_s']:.3f} s, warm {startup['warm_build_and_query_s']:.3f} s")
    path = write_results(args.name, record=args.record, payload={
        "machine": machine(),
        "settings": {**vars(args), "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD),
                     "numba_threads": args.threads, "faiss_threads": args.threads},
        "startup": startup,
        "rows": results,
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

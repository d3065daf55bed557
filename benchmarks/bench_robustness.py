"""Robustness: recall per transform family against all-pairs false-positive rates.

For every algorithm (ahash, dhash, phash, whash, pdq; phash and pdq also with
dihedral matching, with the query's uniform borders trimmed as an extra query
(``+trim``); pdq also quality-gated) and for combined policies of two algorithms
(either under its threshold, both under looser ones, or a combined score), on
synthetic photo-like images:

* false positives: every ordered pair (query image, other reference image) of the
  ``--negatives`` originals, counted exactly by a numba histogram of distances;
* recall: every variant of the first ``--positives`` originals under
  :func:`hashmatch.testing.transforms.standard_suite` (55 transforms, 14 families) against
  its own original;
* the threshold(s) reaching each target FPR (1e-3 … 1e-6), the recall there per family,
  ROC curves (PNG) and a markdown table;
* the same images hashed by imagehash and pdqhash (the peers), side by side.

Run: ``MALLOC_MMAP_THRESHOLD_=134217728 python benchmarks/bench_robustness.py`` (the
script pins it itself), from a source checkout; ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, results_dir, table  # noqa: E402

OURS = ("ahash", "dhash", "phash", "whash", "pdq")
BITS = {"ahash": 64, "dhash": 64, "phash": 64, "whash": 64, "pdq": 256}
TRIMMED = ("pdq", "phash")
PEERS = {"ih_ahash": "ahash", "ih_dhash": "dhash", "ih_phash": "phash", "ih_whash": "whash", "pdqhash": "pdq"}
TARGETS = (1e-3, 1e-4, 1e-5, 1e-6)
PDQ_QUALITY = 50
DATA = Path(__file__).resolve().parent / "data"
REAL_PHOTOS = Path("/work/shared/testdata/pdq/images")


# -- hashing (in worker processes) --------------------------------------------------------------
def _bits_to_int(bits: Any) -> int:
    arr = np.asarray(bits, dtype=np.uint8).ravel()
    return int.from_bytes(np.packbits(arr).tobytes(), "big")


def _hash_pixels(image: Any, source: Any, peers: bool) -> dict[str, Any]:
    """All hashes of one image: ours from ``source`` (a path or the image), peers from pixels."""
    import imagehash
    from hashmatch import compute_hashes
    from hashmatch.testing.transforms import trim_borders

    res = compute_hashes(source, OURS, dihedral=True)
    out: dict[str, Any] = {name: [r.hash.value for r in res[name]] for name in OURS}
    out["pdq_quality"] = res["pdq"][0].quality
    # The query with uniform borders cut away (most images have none: then the same hashes).
    trimmed = trim_borders(image)
    tres = res if trimmed is image else compute_hashes(trimmed, TRIMMED, dihedral=True)
    for name in TRIMMED:
        out[f"{name}_trim"] = [r.hash.value for r in tres[name]]
    out["pdq_trim_quality"] = tres["pdq"][0].quality
    if peers:
        import pdqhash

        out["ih_ahash"] = [_bits_to_int(imagehash.average_hash(image).hash)]
        out["ih_dhash"] = [_bits_to_int(imagehash.dhash(image).hash)]
        out["ih_phash"] = [_bits_to_int(imagehash.phash(image).hash)]
        out["ih_whash"] = [_bits_to_int(imagehash.whash(image).hash)]
        hashes, quality = pdqhash.compute_dihedral(np.asarray(image))
        # pdqhash's dihedral order differs from ours; a min over all eight does not care.
        out["pdqhash"] = [_bits_to_int(h) for h in hashes]
        out["pdqhash_quality"] = int(quality)
    return out


def _work(job: tuple[str, bool, int, bool]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path, positive, suite_seed, peers = job
    from PIL import Image

    from hashmatch.testing.transforms import standard_suite

    with Image.open(path) as im:
        image = im.convert("RGB")
    reference = _hash_pixels(image, path, peers)  # ours decode the file as a user's scan would
    variants = []
    if positive:
        for spec in standard_suite(seed=suite_seed):
            altered = spec.apply(image)
            variants.append(_hash_pixels(altered, altered, peers))
    return reference, variants


# -- packing ------------------------------------------------------------------------------------
def _words(values: Sequence[int], bits: int) -> np.ndarray:
    nw = (bits + 63) // 64
    mask = (1 << 64) - 1
    return np.array([[(v >> (64 * (nw - 1 - k))) & mask for k in range(nw)] for v in values], dtype=np.uint64)


def _stack(records: list[dict[str, Any]], key: str, bits: int, dihedral: bool, trim: bool = False) -> np.ndarray:
    """(n, k, words): k = 8 dihedral variants or 1 (the image as it is); twice that with the trimmed image."""
    k = 8 if dihedral else 1
    rows = [_words(r[key][:k] + (r[f"{key}_trim"][:k] if trim else []), bits) for r in records]
    return np.ascontiguousarray(np.stack(rows)) if rows else np.zeros((0, k * (2 if trim else 1), (bits + 63) // 64), np.uint64)


# -- systems and policies ---------------------------------------------------------------------------
@dataclass
class Single:
    """One hash, one threshold: an algorithm (ours or a peer's), maybe dihedral, maybe gated."""

    name: str
    key: str
    algorithm: str
    implementation: str
    dihedral: bool = False
    gate: bool = False
    bits: int = 64
    trim: bool = False
    neg_hist: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    pos_d: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    query_ok: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def kind(self) -> str:
        return "single"


@dataclass
class Pair:
    """Two algorithms combined: ``either`` under its threshold, ``both`` under theirs, or a ``score``."""

    name: str
    a: Single
    b: Single
    rule: str
    joint: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def kind(self) -> str:
        return self.rule


def _positive_distances(q: np.ndarray, r: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Least distance of each variant (over its k hashes) to its own original's reference hash."""
    x = np.bitwise_xor(q, r[owner][:, None, :])
    return np.bitwise_count(x).sum(axis=2).min(axis=1).astype(np.int64)


def _evaluate_single(s: Single, pairs: int, target: float) -> tuple[tuple[int, ...], float, int]:
    cum = np.cumsum(s.neg_hist)
    ok = np.flatnonzero(cum <= target * pairs)
    t = int(ok[-1]) if ok.size else -1
    return (t,), (cum[t] / pairs if t >= 0 else 0.0), (int(cum[t]) if t >= 0 else 0)


def _grid(policy: Pair, pos_a: np.ndarray, pos_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive counts and recall on every grid of thresholds (rule-specific)."""
    h = policy.joint.astype(np.int64)  # (ba + 2, bb + 1): row ba + 1 holds gate-refused queries
    ba, bb = policy.a.bits, policy.b.bits
    pos = np.zeros((ba + 2, bb + 2), dtype=np.int64)
    np.add.at(pos, (np.minimum(pos_a, ba + 1), np.minimum(pos_b, bb + 1)), 1)
    hh = np.zeros((ba + 2, bb + 2), dtype=np.int64)
    hh[:, : bb + 1] = h
    m = max(len(pos_a), 1)
    if policy.rule == "both":
        neg = hh.cumsum(0).cumsum(1)[: ba + 1, : bb + 1]
        rec = pos.cumsum(0).cumsum(1)[: ba + 1, : bb + 1] / m
        return neg, rec, np.zeros(0)
    if policy.rule == "either":
        suffix = hh[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]  # suffix[i, j] = sum over >= i, >= j
        suffix_p = pos[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]
        neg = hh.sum() - suffix[1 : ba + 2, 1 : bb + 2]
        rec = (pos.sum() - suffix_p[1 : ba + 2, 1 : bb + 2]) / m
        return neg, rec, np.zeros(0)
    # score: da * bb + db * ba (both normalised to a fraction of their bits), one threshold
    da, db = np.meshgrid(np.arange(ba + 1), np.arange(bb + 1), indexing="ij")
    score = (da * bb + db * ba).ravel()
    top = 2 * ba * bb
    # A refused query has no score: it never matches, so it is left out of the counts.
    neg = np.cumsum(np.bincount(score, weights=h[: ba + 1].ravel(), minlength=top + 1)).astype(np.int64)
    scored = pos_a <= ba
    ps = pos_a[scored] * bb + np.minimum(pos_b[scored], bb) * ba
    rec = np.cumsum(np.bincount(ps, minlength=top + 1)) / m
    return neg, rec, np.arange(top + 1)


def _evaluate_pair(grid: tuple[np.ndarray, np.ndarray, np.ndarray], pairs: int, target: float) -> tuple[tuple[int, ...], float, int]:
    neg, rec, _ = grid
    allowed = neg <= target * pairs
    if not allowed.any():
        return (-1,) if neg.ndim == 1 else (-1, -1), 0.0, 0
    # Best recall; ties go to the fewer false positives.
    key = np.where(allowed, rec * 1e12 - neg, -np.inf)
    flat = int(np.argmax(key))
    idx = np.unravel_index(flat, neg.shape)
    count = int(neg[idx])
    return tuple(int(i) for i in idx), count / pairs, count


def _matched_pair(policy: Pair, thresholds: tuple[int, ...], da: np.ndarray, db: np.ndarray) -> np.ndarray:
    if thresholds[0] < 0:
        return np.zeros(da.shape, dtype=bool)
    if policy.rule == "score":
        return (da <= policy.a.bits) & (da * policy.b.bits + db * policy.a.bits <= thresholds[0])
    ta, tb = thresholds
    return (da <= ta) | (db <= tb) if policy.rule == "either" else (da <= ta) & (db <= tb)


def _upper95(count: int, pairs: int) -> float:
    from hashmatch._calibrate import upper_rate_bound

    return upper_rate_bound(count, pairs)


# -- main -----------------------------------------------------------------------------------------------
def _dataset(count: int, seed: int, long_side: int, workers: int, data: Path) -> tuple[Path, list[dict[str, Any]], float]:
    from hashmatch.testing.synthetic import MANIFEST_NAME, write_dataset

    folder = data / f"synthetic-s{seed}-n{count}-l{long_side}"
    manifest = folder / MANIFEST_NAME
    start = time.perf_counter()
    if manifest.exists():
        data = json.loads(manifest.read_text())
        if data.get("count") == count and all((folder / e["file"]).exists() for e in data["images"]):
            return folder, data["images"], 0.0
    write_dataset(folder, count, seed, long_side=long_side, workers=workers)
    return folder, json.loads(manifest.read_text())["images"], time.perf_counter() - start


def _cold_warm() -> dict[str, float]:
    """numba cold start (fresh interpreter, cache on disk) and warm call of the pair kernel."""
    code = (
        "import time, numpy as np\n"
        "t0 = time.perf_counter()\n"
        "from hashmatch._calibrate_kernels import query_pair_histogram as f\n"
        "q = np.zeros((50, 8, 4), np.uint64); r = np.zeros((50, 4), np.uint64); v = np.ones(50, bool)\n"
        "t1 = time.perf_counter(); f(q, r, v, 256); t2 = time.perf_counter(); f(q, r, v, 256); t3 = time.perf_counter()\n"
        "print(t1 - t0, t2 - t1, t3 - t2)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # make sure the cache exists
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    return {"import_s": float(out[0]), "first_call_s": float(out[1]), "warm_call_s": float(out[2])}


def _real_photo_check(policies: dict[str, Any], chosen: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Pairs of the PDQ reference photos that the chosen thresholds would match (they include true variants)."""
    from PIL import Image

    from hashmatch import compute_hashes
    from hashmatch.errors import HashmatchError
    from hashmatch.testing.transforms import trim_borders

    if not REAL_PHOTOS.is_dir():
        return {"available": False}
    files = sorted(p for p in REAL_PHOTOS.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    hashes = {}
    for p in files:
        try:
            res = dict(compute_hashes(p, OURS, dihedral=True))
            with Image.open(p) as im:
                trimmed = trim_borders(im.convert("RGB"))
            tres = compute_hashes(trimmed, TRIMMED, dihedral=True)
        except (HashmatchError, OSError):
            continue
        for name in TRIMMED:
            res[f"{name}_trim"] = tres[name]
        hashes[p] = res
    names = list(hashes)
    out: dict[str, Any] = {"available": True, "images": len(names), "pairs": len(names) * (len(names) - 1) // 2, "matches": {}}
    for system, thresholds in chosen.items():
        spec = policies[system]
        found = []
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                if _match_one(spec, thresholds, hashes[names[i]], hashes[names[j]]):
                    found.append(f"{names[i].name} ~ {names[j].name}")
        out["matches"][system] = {"count": len(found), "pairs": found[:40]}
    return out


def _dist_one(s: Single, q: Any, r: Any) -> int:
    qs = list(q[s.algorithm] if s.dihedral else q[s.algorithm][:1])
    if s.trim:
        qs += list(q[f"{s.algorithm}_trim"])
    d = min(h.hash - r[s.algorithm][0].hash for h in qs)
    if s.gate and q["pdq"][0].quality < PDQ_QUALITY:
        return s.bits + 1
    return d


def _match_one(policy: Any, thresholds: tuple[int, ...], q: Any, r: Any) -> bool:
    if thresholds[0] < 0:
        return False
    if isinstance(policy, Single):
        return min(_dist_one(policy, q, r), _dist_one(policy, r, q)) <= thresholds[0]
    da = min(_dist_one(policy.a, q, r), _dist_one(policy.a, r, q))
    db = min(_dist_one(policy.b, q, r), _dist_one(policy.b, r, q))
    return bool(_matched_pair(policy, thresholds, np.array([da]), np.array([db]))[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (the suite uses it too)")
    parser.add_argument("--negatives", type=int, default=5000, help="originals whose pairs measure false positives")
    parser.add_argument("--positives", type=int, default=200, help="originals whose variants measure recall")
    parser.add_argument("--long-side", type=int, default=512, help="pixels on the long side of every original")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-peers", action="store_true", help="skip imagehash and pdqhash")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 120 negatives, 3 positives, no real-photo check")
    parser.add_argument("--data", type=Path, default=DATA, help="where the synthetic originals are cached")
    parser.add_argument("--out", type=Path, help="folder for robustness.{json,md,png} (default: see --record)")
    parser.add_argument("--render", type=Path, default=None, metavar="JSON",
                        help="only re-render robustness.md and the plots from a results JSON")
    add_record_option(parser)
    args = parser.parse_args(argv)
    args.out = args.out or results_dir(args.record)
    if args.render is not None:
        payload = _compact(json.loads(args.render.read_text()))
        args.out.mkdir(parents=True, exist_ok=True)
        _write(args.out / "robustness.json", payload)
        (args.out / "robustness.md").write_text(_markdown(payload))
        if not args.no_plots:
            _plots(payload, args.out)
        print(_markdown(payload))
        return 0
    if args.quick:
        args.negatives, args.positives = min(args.negatives, 120), min(args.positives, 3)
    if args.positives > args.negatives:
        parser.error("--positives must not exceed --negatives (positives are the first originals)")
    pin_malloc()
    t_start = time.perf_counter()
    peers = not args.no_peers

    from hashmatch._calibrate_kernels import joint_query_pair_histogram, query_pair_histogram
    from hashmatch.testing.transforms import FAMILIES, standard_suite

    folder, images, t_gen = _dataset(args.negatives, args.seed, args.long_side, args.workers, args.data)
    suite = standard_suite(seed=args.seed)
    jobs = [(str(folder / e["file"]), i < args.positives, args.seed, peers) for i, e in enumerate(images)]
    t0 = time.perf_counter()
    refs: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    owner: list[int] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        # Positive originals first (they are slow), then the rest in bigger chunks.
        for i, (ref, vs) in enumerate(pool.map(_work, jobs, chunksize=1 if args.positives else 8)):
            refs.append(ref)
            variants.extend(vs)
            owner.extend([i] * len(vs))
            if (i + 1) % 500 == 0:
                print(f"  hashed {i + 1}/{len(jobs)} originals ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    t_hash = time.perf_counter() - t0
    n, m = len(refs), len(variants)
    owner_arr = np.array(owner, dtype=np.int64)
    spec_idx = np.tile(np.arange(len(suite)), args.positives)
    family_of = np.array([FAMILIES.index(s.family) for s in suite])[spec_idx] if m else np.zeros(0, int)
    ordered_pairs = n * (n - 1)
    distinct_pairs = ordered_pairs // 2

    # Systems: ours, ours with dihedral and quality gate, peers.
    singles: dict[str, Single] = {}
    for a in OURS:
        singles[a] = Single(a, a, a, "hashmatch", bits=BITS[a])
    singles["phash+dihedral"] = Single("phash+dihedral", "phash", "phash", "hashmatch", dihedral=True)
    singles["pdq+dihedral"] = Single("pdq+dihedral", "pdq", "pdq", "hashmatch", dihedral=True, bits=256)
    singles["pdq q>=50"] = Single("pdq q>=50", "pdq", "pdq", "hashmatch", gate=True, bits=256)
    singles["pdq+dihedral q>=50"] = Single("pdq+dihedral q>=50", "pdq", "pdq", "hashmatch", dihedral=True, gate=True, bits=256)
    singles["phash+dihedral+trim"] = Single("phash+dihedral+trim", "phash", "phash", "hashmatch", dihedral=True, trim=True)
    singles["pdq+dihedral+trim"] = Single("pdq+dihedral+trim", "pdq", "pdq", "hashmatch", dihedral=True, trim=True, bits=256)
    singles["pdq+dihedral+trim q>=50"] = Single("pdq+dihedral+trim q>=50", "pdq", "pdq", "hashmatch", dihedral=True, trim=True, gate=True, bits=256)
    if peers:
        for key, alg in PEERS.items():
            label = f"imagehash {alg}" if key.startswith("ih_") else "pdqhash pdq"
            singles[label] = Single(label, key, alg, "imagehash" if key.startswith("ih_") else "pdqhash", bits=BITS[alg])
        singles["pdqhash pdq+dihedral"] = Single("pdqhash pdq+dihedral", "pdqhash", "pdq", "pdqhash", dihedral=True, bits=256)

    t0 = time.perf_counter()
    arrays: dict[tuple[str, bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for s in singles.values():
        if (s.key, s.dihedral, s.trim) not in arrays:
            q_neg = _stack(refs, s.key, s.bits, s.dihedral, s.trim)
            r_neg = np.ascontiguousarray(q_neg[:, 0, :])  # the reference list holds the image as it is
            q_pos = _stack(variants, s.key, s.bits, s.dihedral, s.trim)
            arrays[(s.key, s.dihedral, s.trim)] = (q_neg, r_neg, q_pos)
        q_neg, r_neg, q_pos = arrays[(s.key, s.dihedral, s.trim)]
        quality_key = "pdqhash_quality" if s.key == "pdqhash" else "pdq_quality"
        # (with trimming, the gate reads the untrimmed query's quality)
        # The gate refuses low-quality *queries*, as the Matcher's min_quality does.
        s.query_ok = np.array([(r[quality_key] >= PDQ_QUALITY) if s.gate else True for r in refs], dtype=np.bool_)
        s.neg_hist = query_pair_histogram(q_neg, r_neg, s.query_ok, s.bits)
        s.pos_d = _positive_distances(q_pos, r_neg, owner_arr) if m else np.zeros(0, np.int64)
        if s.gate and m:
            vq = np.array([v[quality_key] >= PDQ_QUALITY for v in variants])
            s.pos_d = np.where(vq, s.pos_d, s.bits + 1)
    combos = [("pdq+dihedral", "phash+dihedral"), ("pdq+dihedral q>=50", "phash+dihedral"),
              ("pdq+dihedral", "dhash"), ("phash+dihedral", "dhash"),
              ("pdq+dihedral+trim", "phash+dihedral+trim"), ("pdq+dihedral+trim q>=50", "phash+dihedral+trim")]
    pairs_: dict[str, Pair] = {}
    for a_name, b_name in combos:
        a, b = singles[a_name], singles[b_name]
        qa, ra, _ = arrays[(a.key, a.dihedral, a.trim)]
        qb, rb, _ = arrays[(b.key, b.dihedral, b.trim)]
        joint = joint_query_pair_histogram(qa, ra, a.bits, a.query_ok, qb, rb, b.bits)
        for rule in ("either", "both", "score"):
            name = f"{a_name} {rule} {b_name}"
            pairs_[name] = Pair(name, a, b, rule, joint)
    t_pairs = time.perf_counter() - t0

    # Evaluate every system at every target, overall and per family.
    results: dict[str, Any] = {}
    chosen_1e6: dict[str, tuple[int, ...]] = {}
    roc_targets = np.logspace(-7, -1, 37)
    for name, s in {**singles, **pairs_}.items():
        if isinstance(s, Single):
            bits = s.bits
            cum = np.cumsum(s.neg_hist)
            per_t = {
                "fpr": (cum / ordered_pairs).tolist(),
                "recall": [float((s.pos_d <= t).mean()) if m else 0.0 for t in range(bits + 1)],
                "recall_by_family": {
                    f: [float((s.pos_d[family_of == k] <= t).mean()) for t in range(bits + 1)]
                    for k, f in enumerate(FAMILIES)
                    if (family_of == k).any()
                },
            }
            evaluate = lambda target, s=s: _evaluate_single(s, ordered_pairs, target)  # noqa: E731
            matched = lambda th, s=s: (s.pos_d <= th[0]) if th[0] >= 0 else np.zeros(m, bool)  # noqa: E731
            neg_hist = s.neg_hist
            entry: dict[str, Any] = {"kind": "single", "algorithm": s.algorithm, "implementation": s.implementation,
                                     "dihedral": s.dihedral, "trim_borders": s.trim,
                                     "quality_gate": PDQ_QUALITY if s.gate else None, "bits": bits}
        else:
            da, db = s.a.pos_d, s.b.pos_d
            grid = _grid(s, da, db)
            evaluate = lambda target, grid=grid: _evaluate_pair(grid, ordered_pairs, target)  # noqa: E731
            matched = lambda th, s=s, da=da, db=db: _matched_pair(s, th, da, db)  # noqa: E731
            per_t = None
            neg_hist = None
            entry = {"kind": s.rule, "algorithms": [s.a.name, s.b.name], "implementation": "hashmatch", "bits": [s.a.bits, s.b.bits]}
        at: dict[str, Any] = {}
        for target in TARGETS:
            th, fpr, count = evaluate(target)
            hit = matched(th)
            at[f"{target:g}"] = {
                "thresholds": list(th),
                "fpr": fpr,
                "false_positive_pairs": count,
                "fpr_upper95": _upper95(count // (1 if isinstance(s, Pair) or s.dihedral else 2), distinct_pairs if not (isinstance(s, Pair) or s.dihedral) else ordered_pairs),
                "recall": float(hit.mean()) if m else 0.0,
                "recall_by_family": {f: float(hit[family_of == k].mean()) for k, f in enumerate(FAMILIES) if (family_of == k).any()},
                "recall_by_transform": {suite[j].label: float(hit[spec_idx == j].mean()) for j in range(len(suite))} if m else {},
            }
            if target == 1e-6:
                chosen_1e6[name] = th
        roc = []
        for target in roc_targets:
            th, fpr, _ = evaluate(float(target))
            hit = matched(th)
            roc.append({"target": float(target), "fpr": fpr, "recall": float(hit.mean()) if m else 0.0,
                        "by_family": {f: float(hit[family_of == k].mean()) for k, f in enumerate(FAMILIES) if (family_of == k).any()}})
        entry["at"] = at
        entry["roc"] = roc
        if per_t is not None:
            entry["per_threshold"] = per_t
            c = np.cumsum(neg_hist)
            entry["negative_distances"] = {
                "min": int(np.flatnonzero(neg_hist)[0]) if c[-1] else None,
                "p1e-6": int(np.searchsorted(c, 1e-6 * c[-1])),
                "p1e-4": int(np.searchsorted(c, 1e-4 * c[-1])),
                "median": int(np.searchsorted(c, 0.5 * c[-1])),
                "histogram": neg_hist.tolist(),
            }
        results[name] = entry

    # Agreement of our hashes with the peers' on identical inputs.
    agreement = {}
    if peers:
        for key, alg in PEERS.items():
            ours_ref = np.array([r[alg][0] == r[key][0] for r in refs])
            ours_var = np.array([v[alg][0] == v[key][0] for v in variants]) if m else np.zeros(0, bool)
            agreement[alg] = {"references_identical": float(ours_ref.mean()), "variants_identical": float(ours_var.mean()) if m else None}

    # The default: best recall at 1e-6 among policies that find every rotation by 90 degrees and mirror image.
    def score(name: str) -> tuple[float, float]:
        a = results[name]["at"]["1e-06"]
        full = min(a["recall_by_family"].get("rotate90", 0), a["recall_by_family"].get("mirror", 0))
        return (full, a["recall"])

    ours_names = [k for k, v in results.items() if v["implementation"] == "hashmatch"]
    best = max(ours_names, key=score) if m else None

    cold = _cold_warm()
    real = {} if args.quick else _real_photo_check({**singles, **pairs_}, {k: chosen_1e6[k] for k in ("pdq", "pdq+dihedral", "phash+dihedral", "pdq+dihedral+trim", best) if k in chosen_1e6}) if best else {}
    total = time.perf_counter() - t_start
    payload = {
        "benchmark": "robustness",
        "machine": machine(),
        "settings": {
            "seed": args.seed, "negatives": n, "positives": args.positives, "long_side": args.long_side,
            "variants": m, "transforms": [s.label for s in suite], "families": list(FAMILIES),
            "ordered_negative_pairs": ordered_pairs, "distinct_negative_pairs": distinct_pairs,
            "targets": list(TARGETS), "pdq_quality_gate": PDQ_QUALITY, "workers": args.workers, "peers": peers,
            "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_"), "dataset": str(folder),
        },
        "timings_s": {"generate": t_gen, "hash": t_hash, "pair_histograms": t_pairs, "total": total},
        "numba_pair_kernel": cold,
        "default_policy": best,
        "agreement_with_peers": agreement,
        "real_photos": real,
        "systems": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    payload = _compact(payload)
    json_path = _write(args.out / "robustness.json", payload)
    md = _markdown(payload)
    (args.out / "robustness.md").write_text(md)
    if not args.no_plots:
        _plots(payload, args.out)
    print(md)
    print(f"\nwrote {json_path} and {args.out / 'robustness.md'} in {total:.0f} s", file=sys.stderr)
    return 0


def _compact(value: Any) -> Any:
    """Floats to 5 significant digits, so that the results file stays small."""
    if isinstance(value, float):
        return float(f"{value:.5g}")
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_compact(v) for v in value]
    return value


def _write(path: Path, payload: dict[str, Any]) -> Path:
    # One line, no indentation: ~1 MB of per-threshold curves would otherwise be ~3 MB.
    path.write_text(json.dumps(payload, separators=(",", ":"), default=str) + "\n")
    return path


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _markdown(p: dict[str, Any]) -> str:
    st = p["settings"]
    fams = st["families"]
    lines = [
        "# Robustness: recall against measured false-positive rates",
        "",
        f"Synthetic originals: {st['negatives']} (long side {st['long_side']} px, JPEG q90, seed {st['seed']}); "
        f"false positives over {st['ordered_negative_pairs']:,} ordered (query, other reference) pairs "
        f"({st['distinct_negative_pairs']:,} distinct image pairs). Positives: {st['variants']:,} variants "
        f"of the first {st['positives']} originals, {len(st['transforms'])} transforms in {len(fams)} families. "
        f"Thresholds are the largest whose measured rate is at most the target; recall in %.",
        "",
        f"Machine: {p['machine']['cpu']}, {p['machine']['cores']} cores; MALLOC_MMAP_THRESHOLD_={st['MALLOC_MMAP_THRESHOLD_']}; "
        f"total {p['timings_s']['total']:.0f} s (hashing {p['timings_s']['hash']:.0f} s, pair histograms "
        f"{p['timings_s']['pair_histograms']:.1f} s). Regenerate: "
        f"`python benchmarks/bench_robustness.py --seed {st['seed']} --negatives {st['negatives']} --positives {st['positives']}`.",
        "",
        f"**Default policy (best recall at FPR 1e-6 among those finding every 90° rotation and mirror image): `{p['default_policy']}`**",
        "",
        "## Summary",
        "",
    ]
    rows = []

    def th(r: dict[str, Any], target: str) -> str:
        ts = r["at"][target]["thresholds"]
        if r["kind"] == "score":  # da/bits_a + db/bits_b <= s, shown as s
            ba, bb = r.get("bits") or [BITS[n.split("+")[0].split()[0]] for n in r["algorithms"]]
            return "none" if ts[0] < 0 else f"s<={ts[0] / (ba * bb):.3f}"
        return "/".join("none" if t < 0 else str(t) for t in ts)

    for name, r in p["systems"].items():
        a4, a6 = r["at"]["0.0001"], r["at"]["1e-06"]
        rows.append([
            name, r["implementation"], th(r, "0.001"), th(r, "0.0001"), th(r, "1e-05"), th(r, "1e-06"),
            _pct(r["at"]["0.001"]["recall"]), _pct(a4["recall"]), _pct(a6["recall"]),
            f"{a6['fpr']:.2g}", f"{a6['fpr_upper95']:.2g}",
        ])
    lines.append(table(rows, ["system", "impl", "t@1e-3", "t@1e-4", "t@1e-5", "t@1e-6", "recall@1e-3", "recall@1e-4", "recall@1e-6", "FPR@t(1e-6)", "95% upper"]))
    for target, label in (("0.0001", "1e-4"), ("1e-06", "1e-6")):
        lines += ["", f"## Recall (%) per transform family at FPR {label}", ""]
        rows = [[name] + [_pct(r["at"][target]["recall_by_family"].get(f, float("nan"))) for f in fams] for name, r in p["systems"].items()]
        lines.append(table(rows, ["system"] + fams))
    picks = ["crop(fraction=0.05)", "crop(fraction=0.05, x=0, y=0)", "crop(fraction=0.2)", "rotate(degrees=4)",
             "rotate(degrees=-8)", "pad(fraction=0.05)", "jpeg(quality=10)", "screenshot(fill=0.8, seed=%d)" % st["seed"]]
    first = next(iter(p["systems"].values()))["at"]["1e-06"]["recall_by_transform"]
    picks = [k for k in picks if k in first]
    if picks:
        lines += ["", "## Recall (%) on selected transforms at FPR 1e-6 (Thorn's anchors: PDQ 9 % on 5 % crops, 54.5 % on 4° rotations)", ""]
        rows = [[name] + [_pct(r["at"]["1e-06"]["recall_by_transform"][k]) for k in picks] for name, r in p["systems"].items()]
        lines.append(table(rows, ["system"] + picks))
    if p["agreement_with_peers"]:
        lines += ["", "## Cross-check with the peers on the same images", "",
                  "Identical hashes (%): references are decoded from the JPEG file by each library (ours may use a "
                  "reduced-scale decode), variants are the same in-memory pixels.", ""]
        rows = []
        for alg, ag in p["agreement_with_peers"].items():
            peer = "pdqhash pdq" if alg == "pdq" else f"imagehash {alg}"
            o, q = p["systems"][alg]["at"], p["systems"][peer]["at"]
            rows.append([alg, _pct(ag["references_identical"]), _pct(ag["variants_identical"] or 0),
                         _pct(o["0.0001"]["recall"]), _pct(q["0.0001"]["recall"]), _pct(o["1e-06"]["recall"]), _pct(q["1e-06"]["recall"])])
        if "pdqhash pdq+dihedral" in p["systems"]:
            o, q = p["systems"]["pdq+dihedral"]["at"], p["systems"]["pdqhash pdq+dihedral"]["at"]
            rows.append(["pdq+dihedral", "", "", _pct(o["0.0001"]["recall"]), _pct(q["0.0001"]["recall"]), _pct(o["1e-06"]["recall"]), _pct(q["1e-06"]["recall"])])
        lines.append(table(rows, ["algorithm", "same hash refs", "same hash variants", "ours@1e-4", "peer@1e-4", "ours@1e-6", "peer@1e-6"]))
    lines += ["", "## Distances between unrelated images", ""]
    rows = [[n, r["negative_distances"]["min"], r["negative_distances"]["p1e-6"], r["negative_distances"]["p1e-4"], r["negative_distances"]["median"]]
            for n, r in p["systems"].items() if "negative_distances" in r]
    lines.append(table(rows, ["system", "min", "1e-6 quantile", "1e-4 quantile", "median"]))
    real = p.get("real_photos") or {}
    if real.get("available"):
        lines += ["", f"## Real photos ({real['images']} PDQ reference images, {real['pairs']} pairs; several are true variants of each other)", ""]
        rows = [[k, v["count"], "; ".join(v["pairs"][:6])] for k, v in real["matches"].items()]
        lines.append(table(rows, ["system (1e-6 thresholds)", "pairs matched", "first pairs"]))
    k = p["numba_pair_kernel"]
    lines += ["", f"numba pair kernel: import {k['import_s']:.2f} s, first call (cache load) {k['first_call_s']:.3f} s, warm call {k['warm_call_s'] * 1e3:.2f} ms (50 images)."]
    return "\n".join(lines) + "\n"


def _plots(p: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: pip install 'hashmatch[plot]' for the ROC plots", file=sys.stderr)
        return
    shown = [n for n in ("ahash", "dhash", "phash", "whash", "pdq", "phash+dihedral", "pdq+dihedral", "pdq+dihedral+trim",
                          "imagehash phash", "pdqhash pdq", p["default_policy"]) if n in p["systems"]]
    shown = list(dict.fromkeys(shown))
    colours = {name: plt.get_cmap("tab20")(k % 20) for k, name in enumerate(shown)}
    fig, ax = plt.subplots(figsize=(7, 5), dpi=90)
    for name in shown:
        roc = p["systems"][name]["roc"]
        style = "--" if p["systems"][name]["implementation"] != "hashmatch" else "-"
        width = 2.5 if name == p["default_policy"] else 1.2
        ax.plot([max(r["fpr"], 1e-8) for r in roc], [r["recall"] for r in roc], style, label=name,
                drawstyle="steps-post", color=colours[name], lw=width)
    ax.set_xscale("log")
    ax.set_xlim(1e-7, 1e-1)
    ax.set_xlabel("false-positive rate (pairs of unrelated images)")
    ax.set_ylabel("recall over the transform suite")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "robustness_roc.png")
    plt.close(fig)
    fams = p["settings"]["families"]
    cols = 4
    rows = math.ceil(len(fams) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), dpi=70, sharex=True, sharey=True)
    for k, fam in enumerate(fams):
        ax = axes.flat[k]
        for name in shown:
            roc = p["systems"][name]["roc"]
            if fam not in roc[0]["by_family"]:
                continue
            ax.plot([max(r["fpr"], 1e-8) for r in roc], [r["by_family"][fam] for r in roc], label=name,
                    drawstyle="steps-post", lw=2 if name == p["default_policy"] else 1, color=colours[name])
        ax.set_title(fam, fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(1e-7, 1e-1)
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(fams):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "robustness_roc_families.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

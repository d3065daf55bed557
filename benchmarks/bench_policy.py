"""The global stage's policy (issue 12): false pairs and recall per family, offline and exact.

Every image is hashed once the way the Matcher hashes it (references: PDQ and pHash with
a full decode; uploads: both algorithms, eight dihedral variants, the border-trimmed view
when the upload has borders), and the hashes are cached (``--data``). Policies are then
evaluated on those arrays, so every policy is compared on the same pixels in the same run:

* **False pairs**: ``--negatives`` synthetic originals (long side 512), each queried as it
  is *and* altered by one hard transform (issue 12's families, in turn), against every
  other original: ``2 n (n - 1)`` ordered pairs. Plus every real photo found offline
  (scikit-image's data and its 200 LFW faces, matplotlib's sample photo, the PDQ test
  images), queried as is and altered, against every reference that is not itself, and
  every synthetic query against every real reference.
* **Recall**: the first ``--positives`` originals under the robustness benchmark's 55
  transforms (``standard_suite``) and issue 12's 29 hard transforms (``hard_suite``),
  each against its own original.

A pair under a policy matches when ``hashmatch._calibrate.policy_matches`` says so (the
rule the Matcher applies; the pairs come from the calibration kernel, every pair compared). Rates
come with their one-sided 95 % upper bound.

Run: ``python benchmarks/bench_policy.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, pin_malloc, results_dir, table  # noqa: E402

VIEWS = 16  # two views x eight dihedral variants; a missing trimmed view repeats the first


def _query_arrays(img: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pdq words (16, 4), pdq quality (16,), phash words (16, 1)) of one upload."""
    from hashmatch.hashers import compute_query_hashes
    from hashmatch.hashes import HashBatch

    views = compute_query_hashes(img, ["pdq", "phash"], fast=True, dihedral=True, trim_borders=True)
    views = (views + views)[:2]
    pdq = [r for v in views for r in v["pdq"]]
    ph = [r for v in views for r in v["phash"]]
    return (HashBatch.from_hashes([r.hash for r in pdq]).words, np.array([r.quality for r in pdq], np.int16),
            HashBatch.from_hashes([r.hash for r in ph]).words)


def _ref_arrays(img: Any) -> tuple[np.ndarray, int, np.ndarray]:
    from hashmatch.hashers import compute_hashes

    res = compute_hashes(img, ["pdq", "phash"], fast=False)
    return res["pdq"][0].hash.to_words(), int(res["pdq"][0].quality), res["phash"][0].hash.to_words()


def _negative(job: tuple[int, int]) -> tuple[Any, ...]:
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    seed, i = job
    img = generate_image(image_seed(seed, i), long_side=512)
    suite = hard_suite(seed=seed)
    altered = apply_chain(img, suite[i % len(suite)][1])
    return (_ref_arrays(img), _query_arrays(img), _query_arrays(altered))


def _positive(job: tuple[int, int]) -> list[tuple[Any, ...]]:
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite, standard_suite

    seed, i = job
    img = generate_image(image_seed(seed, i), long_side=512)
    out = [_query_arrays(spec.apply(img)) for spec in standard_suite(seed=seed)]
    out += [_query_arrays(apply_chain(img, spec)) for _, spec in hard_suite(seed=seed)]
    return out


def real_images() -> list[tuple[str, Any]]:
    """Every real photo found offline: bench_local's set plus scikit-image's LFW faces."""
    from PIL import Image

    from bench_local import real_photos

    out = real_photos()
    try:
        import skimage

        faces = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy", allow_pickle=False)
        for k, face in enumerate(faces):  # 200 grey 25x25 faces in [0, 1], brought to 128 px
            pixels = np.clip(face * 255 + 0.5, 0, 255).astype(np.uint8)
            out.append((f"skimage/lfw_subset/{k}", Image.fromarray(pixels).convert("RGB").resize((128, 128), Image.BICUBIC)))
    except (ImportError, OSError):
        print("scikit-image's LFW subset not found: fewer real photos", file=sys.stderr)
    return out


def _real(job: tuple[int, Any]) -> tuple[Any, ...]:
    from hashmatch.testing.transforms import apply_chain, hard_suite

    k, img = job
    suite = hard_suite(seed=0)
    return (_ref_arrays(img), _query_arrays(img), _query_arrays(apply_chain(img, suite[k % len(suite)][1])))


def _stack_refs(rows: list[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    return {"ref_pdq": np.stack([r[0] for r in rows]), "ref_q": np.array([r[1] for r in rows], np.int16),
            "ref_ph": np.stack([r[2] for r in rows])}


def _stack_queries(rows: list[tuple[Any, ...]], prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}_pdq": np.ascontiguousarray(np.stack([r[0] for r in rows])),
            f"{prefix}_q": np.stack([r[1] for r in rows]),
            f"{prefix}_ph": np.ascontiguousarray(np.stack([r[2] for r in rows]))}


def build_data(args: argparse.Namespace, path: Path) -> dict[str, np.ndarray]:
    from hashmatch.testing.transforms import hard_suite, standard_suite

    t0 = time.perf_counter()
    with Pool(args.workers) as pool:
        neg = pool.map(_negative, [(args.seed, i) for i in range(args.negatives)], chunksize=16)
        pos = pool.map(_positive, [(args.seed, i) for i in range(args.positives)], chunksize=1)
        real = [] if args.no_real else real_images()
        real_rows = pool.map(_real, list(enumerate(img for _, img in real)), chunksize=8)
    data: dict[str, np.ndarray] = {}
    data.update(_stack_refs([r[0] for r in neg]))
    data.update(_stack_queries([r[1] for r in neg], "neg"))
    data.update(_stack_queries([r[2] for r in neg], "negalt"))
    data.update(_stack_queries([q for rows in pos for q in rows], "pos"))
    per = len(standard_suite(seed=args.seed)) + len(hard_suite(seed=args.seed))
    data["pos_owner"] = np.repeat(np.arange(args.positives), per)
    data["pos_transform"] = np.tile(np.arange(per), args.positives)
    if real_rows:
        data.update({f"real_{k}": v for k, v in _stack_refs([r[0] for r in real_rows]).items()})
        data.update(_stack_queries([r[1] for r in real_rows], "realq"))
        data.update(_stack_queries([r[2] for r in real_rows], "realalt"))
    data["real_names"] = np.array([n for n, _ in real])
    data["hash_seconds"] = np.array(time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return data


def _hashes(data: dict[str, np.ndarray], refs: str, queries: str) -> Any:
    from hashmatch._calibrate_policy import PolicyHashes

    return PolicyHashes(np.ascontiguousarray(data[f"{refs}pdq"], np.uint64), np.ascontiguousarray(data[f"{refs}ph"], np.uint64),
                        np.ascontiguousarray(data[f"{queries}_pdq"], np.uint64),
                        np.ascontiguousarray(data[f"{queries}_ph"], np.uint64), data[f"{queries}_q"])


def _concat(a: Any, b: Any) -> Any:
    from hashmatch._calibrate_policy import PolicyHashes

    return PolicyHashes(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                          ("ref_pdq", "ref_phash", "query_pdq", "query_phash", "query_quality")))


def policies(grid: bool) -> dict[str, Any]:
    """Today's policy, pHash 9 alone, this branch's default, and (``grid``) its neighbours."""
    from hashmatch import DEFAULT_CONFIRMATIONS, Confirmation, QuerySpec

    def spec(pdq: int, ph: int, bands: tuple[tuple[int, int | None], ...] = (), content: int | None = 25) -> Any:
        return QuerySpec(algorithms=("pdq", "phash"), thresholds={"pdq": pdq, "phash": ph}, phash_content=content,
                         confirmations=tuple(Confirmation("phash", u, None if w is None else "pdq", w or 0) for u, w in bands))

    out = {"today (PDQ 31 / pHash 10)": spec(31, 10, content=None), "pHash 9": spec(31, 9, content=None),
           "pHash 9, 10 as is": spec(31, 9, ((10, None),)),
           "default (this branch)": QuerySpec(algorithms=("pdq", "phash"))}
    if grid:
        default = tuple((c.up_to, None if c.by is None else c.within) for c in DEFAULT_CONFIRMATIONS)
        out["default without the as-is band"] = spec(31, 9, tuple(b for b in default if b[1] is not None))
        out["default without pHash's content gate"] = spec(31, 9, default, content=None)
        out["default, content gate at 50"] = spec(31, 9, default, content=50)
        for x10, x12, x14 in ((84, 0, 0), (104, 0, 0), (96, 90, 0), (96, 90, 76), (92, 88, 0), (100, 88, 76), (92, 92, 76),
                              (92, 88, 80), (88, 88, 76)):
            bands = ((10, None), (10, x10), (12, x12)) + (((14, x14),) if x14 else ())
            out[f"pHash 9, 10 as is, 10/12/14 if PDQ <= {x10}/{x12}/{x14}"] = spec(31, 9, bands)
    return out


def evaluate(args: argparse.Namespace, data: dict[str, np.ndarray]) -> dict[str, Any]:
    from hashmatch._calibrate import upper_rate_bound
    from hashmatch._calibrate_policy import PairFeatures, calibrate_policy, policy_matches, policy_pair_features
    from hashmatch.testing.transforms import hard_suite, standard_suite

    t0 = time.perf_counter()
    n = data["ref_pdq"].shape[0]
    own = np.arange(n)

    def features(gates: Any) -> tuple[dict[str, Any], Any]:
        """Every unrelated pair set and the positives, under one spec's gates."""
        sets: dict[str, Any] = {
            "synthetic as is": policy_pair_features(_hashes(data, "ref_", "neg"), _hashes(data, "ref_", "neg"), own, spec=gates),
            "synthetic altered": policy_pair_features(_hashes(data, "ref_", "negalt"), _hashes(data, "ref_", "negalt"), own, spec=gates),
        }
        if "real_ref_pdq" in data and len(data["real_ref_pdq"]):
            m = data["real_ref_pdq"].shape[0]
            both = _concat(_hashes(data, "ref_", "neg"), _hashes(data, "real_ref_", "realq"))
            parts = [policy_pair_features(_hashes(data, "real_ref_", q), both, n + np.arange(m), spec=gates) for q in ("realq", "realalt")]
            parts += [policy_pair_features(_hashes(data, "ref_", q), _hashes(data, "real_ref_", "realq"), spec=gates) for q in ("neg", "negalt")]
            sets["real photos (as query or reference)"] = PairFeatures.concat(parts)
        pos = policy_pair_features(_hashes(data, "ref_", "pos"), _hashes(data, "ref_", "pos"), data["pos_owner"], only_owner=True, spec=gates)
        return sets, pos

    by_gates: dict[tuple[Any, Any], tuple[dict[str, Any], Any]] = {}
    for spec in policies(grid=True).values():
        key = (spec.min_quality, spec.phash_content)
        if key not in by_gates:
            by_gates[key] = features(spec)
    default = policies(grid=False)["default (this branch)"]
    sets, pos = by_gates[(default.min_quality, default.phash_content)]
    t_pairs = time.perf_counter() - t0
    suites = [(spec.family, spec.label) for spec in standard_suite(seed=args.seed)]
    suites += [("hard " + fam, spec.label if not isinstance(spec, tuple) else " + ".join(x.label for x in spec))
               for fam, spec in hard_suite(seed=args.seed)]
    fam_of = np.array([f for f, _ in suites])[data["pos_transform"]]
    found_rows = np.zeros(len(data["pos_owner"]), bool)
    results = {}
    total_pairs = sum(f.pairs for f in sets.values())
    for name, spec in policies(grid=True).items():
        sets, pos = by_gates[(spec.min_quality, spec.phash_content)]
        false = {k: int(policy_matches(f, spec).sum()) for k, f in sets.items()}
        found = found_rows.copy()
        hit = policy_matches(pos, spec)
        found[pos.query[hit]] = True
        fams = {fam: float(found[fam_of == fam].mean()) for fam in dict.fromkeys(fam_of)}
        total = sum(false.values())
        results[name] = {"false_pairs": false, "false_total": total, "pairs": total_pairs,
                         "rate": total / total_pairs, "upper95": upper_rate_bound(total, total_pairs),
                         "recall": float(found.mean()), "recall_by_family": fams}
    sets, pos = by_gates[(default.min_quality, default.phash_content)]
    all_features = PairFeatures.concat(list(sets.values()))
    cal = calibrate_policy(all_features, 1e-6)
    rows = []
    fams = list(next(iter(results.values()))["recall_by_family"])
    for name, r in results.items():
        rows.append([name, r["false_total"], *(r["false_pairs"].values()), f"{r['upper95']:.2g}", f"{100 * r['recall']:.1f}",
                     *(f"{100 * r['recall_by_family'][f]:.1f}" for f in fams)])
    md = "\n".join([
        "# Global policy (issue 12): false pairs and recall, one run, same hashes",
        "",
        f"Pairs: {', '.join(f'{k} {f.pairs:,}' for k, f in sets.items())}; total {total_pairs:,}. "
        f"Positives: {args.positives} originals x {len(suites)} transforms. Pair counting {t_pairs:.0f} s.",
        "",
        table(rows, ["policy", "false", *sets, "95% upper", "recall", *fams]),
        "",
        "calibrate_policy (all pairs, target 1e-6):",
        "",
        "```",
        cal.summary(),
        "```",
    ])
    return {"benchmark": "policy", "settings": {"seed": args.seed, "negatives": n, "positives": args.positives,
            "real_photos": [str(x) for x in data["real_names"]]}, "pairs": {k: f.pairs for k, f in sets.items()},
            "policies": results, "calibration": cal.to_dict(), "pair_seconds": t_pairs, "markdown": md}


_REAL: list[Any] = []


def _local_queries(job: tuple[int, int, int, int]) -> tuple[int, list[Any]]:
    """One bench_local query, hashed as the Matcher hashes uploads (views of hashes)."""
    from hashmatch import QuerySpec
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import apply_chain, hard_suite

    from bench_local import real_photos

    seed, original, j, negative = job
    suite = hard_suite(seed=seed)
    if negative >= 0:
        img = generate_image(image_seed(seed + 1000, negative), long_side=512)
    elif original >= 0:
        img = generate_image(image_seed(seed, original), long_side=512)
    else:
        if not _REAL:  # once per worker process
            _REAL.extend(img for _, img in real_photos())
        img = _REAL[-original - 1]
    return j, QuerySpec(algorithms=("pdq", "phash")).hash(apply_chain(img, suite[j][1]))


def local_global(args: argparse.Namespace) -> dict[str, Any]:
    """bench_local.py's global column, exactly its references and queries (seed, 2,000
    synthetic references plus the real photos, 60 positives per hard transform, 1,000
    unrelated altered queries), through the real Matcher under today's and this branch's
    policy, in the same run on the same hashes."""
    from hashmatch import Matcher
    from hashmatch.testing.synthetic import generate_image, image_seed
    from hashmatch.testing.transforms import hard_suite

    from bench_local import global_hashes, real_photos

    suite = hard_suite(seed=args.seed)
    fam_names = list(dict.fromkeys(f for f, _ in suite))
    real = real_photos()
    synth = [generate_image(image_seed(args.seed, i), long_side=512) for i in range(args.local_refs)]
    originals = synth + [img for _, img in real]
    n_ref = len(originals)
    hashes, ids, exts = [], [], []
    for i, img in enumerate(originals):
        for k, h in enumerate(global_hashes(img)):
            hashes.append(h.hash), ids.append(i if k == 0 else n_ref + i), exts.append(str(i))
    del synth, originals
    pos_orig = list(range(min(args.local_positives, args.local_refs))) + list(range(args.local_refs, n_ref))
    jobs, meta = [], []
    for k, o in enumerate(pos_orig):
        for j in range(len(suite)):
            jobs.append((args.seed, o if o < args.local_refs else -(o - args.local_refs) - 1, j, -1))
            meta.append((o, fam_names.index(suite[j][0]), k % 2))
    for k in range(args.local_negatives):
        jobs.append((args.seed, -1, k % len(suite), k))
        meta.append((-1, fam_names.index(suite[k % len(suite)][0]), k % 2))
    with Pool(args.workers) as pool:
        views = pool.map(_local_queries, jobs, chunksize=8)
    meta_a = np.array(meta)
    out = {}
    for name, kwargs in (("today (PDQ 31 / pHash 10)", {"thresholds": {"pdq": 31, "phash": 10}, "confirmations": (), "phash_content": None}),
                         ("default (this branch)", {})):
        m = Matcher.from_hashes(hashes, ids=ids, external_ids=exts, **kwargs)
        t0 = time.perf_counter()
        got = [{x.entry_id % n_ref for x in m.match_views(v)} for _, v in views]
        seconds = time.perf_counter() - t0
        found = np.array([o >= 0 and o in g for (o, _, _), g in zip(meta, got)])
        false = np.array([len(g - {o}) for (o, _, _), g in zip(meta, got)])
        pos = meta_a[:, 0] >= 0
        out[name] = {
            "false_pairs": {"calibration": int(false[meta_a[:, 2] == 0].sum()), "report": int(false[meta_a[:, 2] == 1].sum())},
            "recall_by_family_report": {f: float(found[pos & (meta_a[:, 1] == i) & (meta_a[:, 2] == 1)].mean()) for i, f in enumerate(fam_names)},
            "recall_by_family_all": {f: float(found[pos & (meta_a[:, 1] == i)].mean()) for i, f in enumerate(fam_names)},
            "recall_report": float(found[pos & (meta_a[:, 2] == 1)].mean()), "match_views_seconds": seconds}
    pairs = {s: int(((meta_a[:, 2] == s) * (n_ref - (meta_a[:, 0] >= 0))).sum()) for s in (0, 1)}
    return {"pairs": pairs, "references": n_ref, "queries": len(meta), "policies": out}


def lookup_latency(sizes: list[int], uploads: int = 300, repeats: int = 5) -> dict[str, Any]:
    """pHash lookup time per upload (16 variants: 8 orientations x 2 views) under today's
    policy (index searched at 10) and this branch's (searched at 14, the last band), on
    the same random references and uploads, interleaved; plus hashing one 1024 x 768
    JPEG upload (PDQ + pHash, all variants), the rest of the global stage's cost."""
    from PIL import Image

    from hashmatch import Matcher, QuerySpec
    from hashmatch.hashers import HashResult
    from hashmatch.hashes import HashBatch
    from hashmatch.testing.synthetic import generate_image

    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for n in sizes:
        words = rng.integers(0, 2**63, size=(n, 1), dtype=np.uint64) | (rng.integers(0, 2, size=(n, 1), dtype=np.uint64) << np.uint64(63))
        refs = HashBatch(words, algorithm="phash", bits=64)
        matchers = {"today": Matcher.from_hashes(refs, thresholds={"phash": 10}, confirmations=(), phash_content=None),
                    "default": Matcher.from_hashes(refs)}
        views = []
        for _ in range(uploads):
            w = HashBatch(rng.integers(0, 2**63, size=(8, 1), dtype=np.uint64), algorithm="phash", bits=64)
            views.append([{"phash": [HashResult(h) for h in w]}] * 2)
        times: dict[str, list[float]] = {k: [] for k in matchers}
        for m in matchers.values():
            m.match_views(views[0])
        for _ in range(repeats):
            for name, m in matchers.items():
                t0 = time.perf_counter()
                for v in views:
                    m.match_views(v)
                times[name].append((time.perf_counter() - t0) / uploads)
        out[str(n)] = {"index": {k: type(m.index("phash")).__name__ for k, m in matchers.items()},
                       "ms_per_upload": {k: 1e3 * min(v) for k, v in times.items()},
                       "ratio_default_to_today": min(times["default"]) / min(times["today"])}
    import io

    buf = io.BytesIO()
    generate_image(7, size=(1024, 768)).save(buf, "JPEG", quality=90)
    spec = QuerySpec(algorithms=("pdq", "phash"))
    spec.hash(Image.open(io.BytesIO(buf.getvalue())))
    hash_times = []
    for _ in range(20):
        t0 = time.perf_counter()
        spec.hash(io.BytesIO(buf.getvalue()))
        hash_times.append(time.perf_counter() - t0)
    out["hash_one_upload_ms"] = 1e3 * float(np.median(hash_times))
    return out


def main(argv: list[str] | None = None) -> int:
    pin_malloc()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--negatives", type=int, default=5000)
    ap.add_argument("--positives", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 60 negatives, 2 positives, no real photos")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parent / "data",
                    help="where the hashes are cached")
    ap.add_argument("--hash-only", action="store_true", help="hash and cache, evaluate nothing")
    ap.add_argument("--local-global", action="store_true",
                    help="instead: bench_local.py's global column under today's and this policy (real Matcher)")
    ap.add_argument("--latency", type=int, nargs="*", default=None, metavar="REFS",
                    help="instead: pHash lookup time, today's policy vs this one, at these reference counts")
    ap.add_argument("--local-refs", type=int, default=2000)
    ap.add_argument("--local-positives", type=int, default=60)
    ap.add_argument("--local-negatives", type=int, default=1000)
    ap.add_argument("--out", type=Path, help="folder for policy.{json,md} (default: see --record)")
    add_record_option(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.negatives, args.positives, args.no_real = 60, 2, True
    args.out = args.out or results_dir(args.record)
    if args.latency is not None:
        payload = {"latency": lookup_latency(args.latency or [100_000, 1_000_000]), "machine": machine()}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "policy-latency.json").write_text(json.dumps(payload, indent=1))
        print(json.dumps(payload["latency"], indent=1))
        return 0
    if args.local_global:
        if args.quick:
            args.local_refs, args.local_positives, args.local_negatives = 40, 2, 20
        payload = local_global(args)
        payload["machine"] = machine()
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "policy-local-global.json").write_text(json.dumps(payload, indent=1))
        for name, r in payload["policies"].items():
            print(name, r["false_pairs"], f"{100 * r['recall_report']:.1f}",
                  {k: round(100 * v, 1) for k, v in r["recall_by_family_report"].items()})
        return 0
    path = args.data / f"policy-s{args.seed}-n{args.negatives}-p{args.positives}{'-noreal' if args.no_real else ''}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    else:
        data = build_data(args, path)
    print(f"hashes in {path} ({float(data['hash_seconds']):.0f} s to hash)", file=sys.stderr)
    if args.hash_only:
        return 0
    payload = evaluate(args, data)
    payload["machine"] = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policy.json").write_text(json.dumps(payload, indent=1))
    print(payload["markdown"])
    (args.out / "policy.md").write_text(payload["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""PDQ speed and fast-decode drift: hashmatch against pdqhash (the C++ core), same run.

    python benchmarks/bench_pdq.py [--count 200] [--seed 7] [--sizes 1024x768] [--rounds 5]

One process, one thread; the allocator is pinned (MALLOC_MMAP_THRESHOLD_, see
_common.pin_malloc). Images: photo-like JPEGs (quality 90) from hashmatch.testing.synthetic
when it is importable, else a small seeded generator here; kept in memory. Peers run
interleaved, round after round, so that machine noise hits them alike: each ratio is
taken within a round, and the table gives the median over rounds and its spread. Speed
is reported both as wall-clock and as process CPU time (less sensitive to other load).
Writes benchmarks/results/pdq.json.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import MMAP_THRESHOLD, add_record_option, cold_start, machine, pin_malloc, table, write_results  # noqa: E402

DRAFT_SIDES = (384, 192, 96)  # draft_min_side values: 1/2, 1/4, 1/8 scale for 1024x768
TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "pdq" / "images"


def _photo(seed: int, size: tuple[int, int]):  # type: ignore[no-untyped-def]
    """A photo-like image: hashmatch.testing.synthetic if present, else gradients, blobs, grain."""
    import numpy as np
    from PIL import Image

    try:
        from hashmatch.testing import synthetic

        return synthetic.generate_image(seed, size=size)
    except ImportError:
        pass
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(coarse).astype(np.int16) + rng.integers(-6, 7, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _jpegs(count: int, seed: int, size: tuple[int, int]) -> list[bytes]:
    out = []
    for i in range(count):
        buf = io.BytesIO()
        _photo(seed * 1_000_003 + i, size).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _interleaved(peers: dict[str, tuple[Callable[[Any], Any], list[Any]]], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per peer and round: items per second by wall clock and by process CPU time."""
    for fn, items in peers.values():  # warm-up: numba cache load, first-call costs
        fn(items[0])
    out: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in peers}
    for _ in range(rounds):
        for name, (fn, items) in peers.items():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for item in items:
                fn(item)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            out[name]["wall"].append(len(items) / wall)
            out[name]["cpu"].append(len(items) / max(cpu, 1e-9))
    return out


def _ratio_rows(rates: dict[str, dict[str, list[float]]], base: str) -> list[list[Any]]:
    rows = []
    for name, r in rates.items():
        wall_ratios = [a / b for a, b in zip(r["wall"], rates[base]["wall"])]
        cpu_ratios = [a / b for a, b in zip(r["cpu"], rates[base]["cpu"])]
        rows.append(
            [
                name,
                statistics.median(r["wall"]),
                statistics.median(r["cpu"]),
                statistics.median(wall_ratios),
                f"{min(wall_ratios):.3g}-{max(wall_ratios):.3g}",
                statistics.median(cpu_ratios),
            ]
        )
    return rows


def _drift(a: list[Any], b: list[Any]) -> dict[str, float]:
    import numpy as np

    d = np.array([x.hash - y.hash for x, y in zip(a, b)])
    return {
        "mean": float(d.mean()),
        "p50": float(np.percentile(d, 50)),
        "p95": float(np.percentile(d, 95)),
        "max": int(d.max()),
        "identical": float((d == 0).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="JPEGs per size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sizes", default="1024x768", help="comma-separated WxH")
    parser.add_argument("--rounds", type=int, default=5)
    add_record_option(parser)
    args = parser.parse_args(argv)
    pin_malloc()

    import numpy as np
    import pdqhash
    from PIL import Image

    from hashmatch.hashers import HashResult, compute_hashes
    from hashmatch.hashes import Hash
    from hashmatch.hashers.pdq import pdq_dihedral_from_array, pdq_from_array, warmup

    warmup()
    results: dict[str, Any] = {}
    for size_text in args.sizes.split(","):
        size = tuple(int(v) for v in size_text.split("x"))
        files = _jpegs(args.count, args.seed, size)  # type: ignore[arg-type]
        arrays = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files]
        print(f"\n== {len(files)} JPEGs of {size_text} (quality 90, mean {np.mean([len(f) for f in files]) / 1024:.0f} KiB)")

        # bit-exactness on this data, before any timing
        theirs = [pdqhash.compute(a) for a in arrays]
        ours = [pdq_from_array(a) for a in arrays]
        mismatched = sum(
            (o.hash.to_bool_array() != t[0].astype(bool)).any() or o.quality != t[1] for o, t in zip(ours, theirs)
        )
        print(f"bit-exact with pdqhash on decoded arrays: {len(arrays) - mismatched}/{len(arrays)} (hash and quality)")

        def pdqhash_half(data: bytes) -> Any:
            img = Image.open(io.BytesIO(data))
            img.draft("RGB", (img.width // 2, img.height // 2))
            return pdqhash.compute(np.asarray(img.convert("RGB")))

        def ours_file(data: bytes, side: int = 0) -> Any:
            return compute_hashes(data, ("pdq",), options={"pdq": {"draft_min_side": side}})["pdq"][0]

        decoded_rates = _interleaved(
            {
                "pdqhash.compute (C++)": (pdqhash.compute, arrays),
                "hashmatch pdq_from_array": (pdq_from_array, arrays),
                "pdqhash.compute_dihedral (C++)": (pdqhash.compute_dihedral, arrays),
                "hashmatch pdq_dihedral_from_array": (pdq_dihedral_from_array, arrays),
                "hashmatch compute_hashes(array) (via PIL)": (lambda a: compute_hashes(a, ("pdq",)), arrays),
            },
            args.rounds,
        )
        rows = _ratio_rows(decoded_rates, "pdqhash.compute (C++)")
        print("\nFrom decoded RGB arrays (images/s, one thread; ratios vs pdqhash.compute within each round)")
        print(table(rows, ["path", "img/s wall", "img/s cpu", "x pdqhash (wall)", "wall range", "x pdqhash (cpu)"]))

        def decode_only(data: bytes) -> None:
            img = Image.open(io.BytesIO(data))
            img.draft("RGB", (img.width // 8, img.height // 8))
            img.load()

        file_peers: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
            "decode 1/8 only, no hash: ceiling": (decode_only, files),
            "decode full + pdqhash": (lambda d: pdqhash.compute(np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))), files),
            "decode 1/2 (draft) + pdqhash": (pdqhash_half, files),
            "hashmatch exact (full decode)": (ours_file, files),
        }
        for side in DRAFT_SIDES:
            file_peers[f"hashmatch draft_min_side={side}"] = (lambda d, s=side: ours_file(d, s), files)
        file_rates = _interleaved(file_peers, args.rounds)
        rows = _ratio_rows(file_rates, "decode full + pdqhash")
        print("\nFrom JPEG bytes, decode included (images/s, one thread; ratios vs decode full + pdqhash)")
        print(table(rows, ["path", "img/s wall", "img/s cpu", "x pdqhash (wall)", "wall range", "x pdqhash (cpu)"]))

        # drift against the full-resolution hash, same files
        full = [ours_file(f) for f in files]
        scales = {}
        drift = {}
        half = []
        for f in files:
            vec, q = pdqhash_half(f)
            half.append(HashResult(Hash.from_bool_array(vec.astype(bool), algorithm="pdq"), int(q)))
        drift["decode 1/2 (draft) + pdqhash"] = _drift(half, full)
        for side in DRAFT_SIDES:
            fast = [ours_file(f, side) for f in files]
            probe = Image.open(io.BytesIO(files[0]))
            probe.draft("RGB", (side, side))
            scales[side] = f"{probe.size[0]}x{probe.size[1]}"
            drift[f"hashmatch draft_min_side={side}"] = _drift(fast, full)
        drift_rows = [
            [name, scales.get(int(name.split("=")[1]), "") if "=" in name else "", *d.values()] for name, d in drift.items()
        ]
        print("\nDrift from the full-resolution hash (bits of 256, same files)")
        print(table(drift_rows, ["path", "decoded size", "mean", "p50", "p95", "max", "share identical"]))
        results[size_text] = {
            "count": len(files),
            "bit_exact_arrays": len(arrays) - mismatched,
            "from_decoded": decoded_rates,
            "from_files": file_rates,
            "drift": drift,
            "draft_sizes": scales,
        }

    # reference photos: drift of reduced decoding on real JPEGs
    real = sorted(p for p in TESTDATA.glob("**/*.jpg") if "labelme" not in str(p)) if TESTDATA.is_dir() else []
    if real:
        real_rows = []
        real_drift = {}
        full = [compute_hashes(p, ("pdq",), options={"pdq": {"draft_min_side": 0}})["pdq"][0] for p in real]
        for side in DRAFT_SIDES:
            fast = [compute_hashes(p, ("pdq",), options={"pdq": {"draft_min_side": side}})["pdq"][0] for p in real]
            keep = [i for i, r in enumerate(full) if r.quality >= 50]
            real_drift[side] = _drift([fast[i] for i in keep], [full[i] for i in keep])
            real_rows.append([side, len(keep), *real_drift[side].values()])
        print("\nDrift on the shared PDQ reference JPEGs (quality >= 50, all sizes)")
        print(table(real_rows, ["draft_min_side", "images", "mean", "p50", "p95", "max", "share identical"]))
        results["reference_jpegs_drift"] = real_drift

    sample = "import numpy as np; a = np.random.default_rng(0).integers(0, 256, (768, 1024, 3), dtype=np.uint8)"
    cold = {
        "import hashmatch.hashers": cold_start("import hashmatch.hashers"),
        "import + first pdq_from_array (numba cache warm)": cold_start(
            f"{sample}; from hashmatch.hashers.pdq import pdq_from_array; pdq_from_array(a)"
        ),
        "import + pdqhash.compute (peer)": cold_start(f"{sample}; import pdqhash; pdqhash.compute(a)"),
        "numpy array setup only (subtract from both)": cold_start(sample),
    }
    print("\nCold start (seconds, fresh interpreter, one 1024x768 array)")
    print(table([[k, v] for k, v in cold.items()], ["what", "seconds"]))

    path = write_results(
        "pdq",
        record=args.record,
        payload={
            "machine": machine(),
            "settings": {
                "count": args.count,
                "sizes": args.sizes,
                "seed": args.seed,
                "rounds": args.rounds,
                "jpeg_quality": 90,
                "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD,
                "threads": 1,
            },
            "results": results,
            "cold_start_seconds": cold,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

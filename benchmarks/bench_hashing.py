"""Hashing throughput and fast-decode drift: hashmatch against imagehash, same run, same files.

    python benchmarks/bench_hashing.py [--count 300] [--seed 7] [--size 1024x768]

One process, one thread. The allocator is pinned (MALLOC_MMAP_THRESHOLD_, see
_common.pin_malloc). Images: hashmatch.testing.synthetic JPEGs (quality 90), written once
under benchmarks/data/. Writes benchmarks/results/hashing.json.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_record_option, cold_start, machine, pin_malloc, rates_interleaved, table, write_results  # noqa: E402


def _images(count: int, seed: int, size: tuple[int, int]) -> list[Path]:
    from hashmatch.testing import synthetic

    folder = Path(__file__).resolve().parent / "data" / f"synthetic-{size[0]}x{size[1]}-s{seed}-n{count}"
    if not (folder / "manifest.json").exists() and not any(folder.glob("*.jpg")):
        synthetic.write_dataset(folder, count, seed, size=size)
    return sorted(folder.glob("*.jpg"))[:count]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", default="1024x768")
    parser.add_argument("--repeats", type=int, default=3)
    add_record_option(parser)
    args = parser.parse_args(argv)
    pin_malloc()

    import imagehash
    import numpy as np
    from PIL import Image

    import hashmatch
    from hashmatch.hashers import compute_query_hashes

    size = tuple(int(v) for v in args.size.split("x"))
    paths = _images(args.count, args.seed, size)  # type: ignore[arg-type]
    files = [p.read_bytes() for p in paths]
    print(f"{len(files)} JPEG files of {args.size}, mean {np.mean([len(f) for f in files]) / 1024:.0f} KiB")

    def decode(data: bytes) -> None:
        Image.open(io.BytesIO(data)).load()

    def decode_reduced(data: bytes) -> None:
        img = Image.open(io.BytesIO(data))
        img.draft("L", (64, 64))
        img.load()

    peers = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash, "phash": imagehash.phash, "whash": imagehash.whash}
    r = args.repeats
    files_rates = rates_interleaved(
        {
            "decode only (full)": decode,
            "decode only (reduced scale, grey): ceiling": decode_reduced,
            "imagehash phash": lambda d: peers["phash"](Image.open(io.BytesIO(d))),
            "hashmatch phash exact": lambda d: hashmatch.hash_image(d, "phash", fast=False),
            "hashmatch phash fast": lambda d: hashmatch.hash_image(d, "phash"),
            "hashmatch phash fast, 8 dihedral variants": lambda d: hashmatch.compute_hashes(d, ["phash"], dihedral=True),
            "hashmatch phash fast, dihedral + trimmed view (Matcher's default)": lambda d: compute_query_hashes(
                d, ["phash"], dihedral=True, trim_borders=True
            ),
        },
        files,
        r,
    )
    base = files_rates["imagehash phash"]
    ceiling = files_rates["decode only (reduced scale, grey): ceiling"]
    rows = [[name, v, v / base, v / ceiling] for name, v in files_rates.items()]
    print("\nFrom JPEG files (images/s, one thread)")
    print(table(rows, ["path", "images/s", "x imagehash phash", "x ceiling"]))

    decoded = [Image.open(io.BytesIO(d)).convert("RGB") for d in files[:60]]
    decoded_rows = []
    for name, peer in peers.items():
        pair = rates_interleaved(
            {"imagehash": lambda im, peer=peer: peer(im), "hashmatch": lambda im, name=name: hashmatch.hash_image(im, name)},
            decoded,
            max(r, 5),
        )
        decoded_rows.append([name, pair["imagehash"], pair["hashmatch"], pair["hashmatch"] / pair["imagehash"]])
    print("\nFrom decoded RGB images (images/s, one thread)")
    print(table(decoded_rows, ["algorithm", "imagehash", "hashmatch", "ratio"]))

    drift_rows = []
    drift: dict[str, dict[str, float]] = {}
    for name in ("ahash", "dhash", "phash"):
        d = np.array([hashmatch.hash_image(f, name, fast=False) - hashmatch.hash_image(f, name) for f in files])
        drift[name] = {
            "mean": float(d.mean()),
            "p50": float(np.percentile(d, 50)),
            "p95": float(np.percentile(d, 95)),
            "max": int(d.max()),
            "identical": float((d == 0).mean()),
        }
        drift_rows.append([name, *drift[name].values()])
    print("\nFast-decode drift from exact (bits of 64, same files)")
    print(table(drift_rows, ["algorithm", "mean", "p50", "p95", "max", "share identical"]))

    sample = str(paths[0])
    cold = {
        "import hashmatch": cold_start("import hashmatch"),
        "import + first phash (numba cache warm)": cold_start(
            f"import hashmatch; hashmatch.hash_image({sample!r}, 'phash')"
        ),
        "CLI: hashmatch hash FILE": cold_start(
            f"from hashmatch.cli import main; main(['hash', {sample!r}])"
        ),
    }
    print("\nCold start (seconds, fresh interpreter)")
    print(table([[k, v] for k, v in cold.items()], ["what", "seconds"]))

    path = write_results(
        "hashing",
        record=args.record,
        payload={
            "machine": machine(),
            "settings": {"count": len(files), "size": args.size, "seed": args.seed, "jpeg_quality": 90, "repeats": r},
            "from_files": files_rates,
            "from_decoded": {row[0]: {"imagehash": row[1], "hashmatch": row[2]} for row in decoded_rows},
            "drift": drift,
            "cold_start_seconds": cold,
        },
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

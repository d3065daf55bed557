"""Where PDQ-from-JPEG time goes: decoders at 1/8 and 1/4 scale against hashmatch's DC decoder.

    PYTHONPATH=src python benchmarks/bench_pdq_jpeg.py [--count 20] [--rounds 3] [--seed 7]

One thread, allocator pinned. Synthetic 1024x768 JPEGs (quality 90, 4:2:0), in memory.
Every decoder takes turns in each round, at each of several heap layouts
(``_common.times_over_layouts``); the table gives each decoder's thread CPU time (ms per
image, best round at its median layout; on a shared machine wall time mostly measures
the neighbours) and its speed-up over the peer "Pillow full decode + pdqhash", at the
peer's median and at its fastest layout. Optional
decoders (simplejpeg, OpenCV) are measured when installed. Writes
benchmarks/scratch/pdq_jpeg.json (benchmarks/results/ with --record).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_record_option, cpu_label, machine, pin_malloc, table, times_over_layouts, write_results  # noqa: E402


def _decoders() -> dict[str, Callable[[bytes], Any]]:
    import numpy as np
    import pdqhash
    from PIL import Image

    from hashmatch._jpeg import decode_dc
    from hashmatch.hashers import compute_hashes
    from hashmatch.hashers.pdq import PDQ_FAST_OPTIONS

    def pillow_draft(mode: str, scale: int) -> Callable[[bytes], Any]:
        def run(data: bytes) -> Any:
            img = Image.open(io.BytesIO(data))
            img.draft(mode, (img.width // scale, img.height // scale))
            img.load()
            return img

        return run

    out: dict[str, Callable[[bytes], Any]] = {
        "peer: Pillow full decode + pdqhash.compute": lambda d: pdqhash.compute(
            np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))),
        "Pillow full decode (RGB)": lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")),
        "Pillow draft RGB 1/8": pillow_draft("RGB", 8),
        "Pillow draft L 1/8": pillow_draft("L", 8),
        "Pillow draft L 1/4": pillow_draft("L", 4),
    }
    try:
        import simplejpeg

        out["simplejpeg GRAY 1/8"] = lambda d: simplejpeg.decode_jpeg(d, colorspace="GRAY", min_width=128, min_height=96)
        out["simplejpeg GRAY 1/4"] = lambda d: simplejpeg.decode_jpeg(d, colorspace="GRAY", min_width=256, min_height=192)
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        out["OpenCV IMREAD_REDUCED_GRAYSCALE_8"] = lambda d: cv2.imdecode(
            np.frombuffer(d, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        out["OpenCV IMREAD_REDUCED_GRAYSCALE_4"] = lambda d: cv2.imdecode(
            np.frombuffer(d, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_4)
    except ImportError:
        pass
    out["hashmatch DC decoder (1/8 + low coefficients)"] = decode_dc
    out["hashmatch PDQ fast path (decode + hash)"] = lambda d: compute_hashes(
        d, ("pdq",), options={"pdq": dict(PDQ_FAST_OPTIONS)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    add_record_option(parser)
    args = parser.parse_args(argv)
    pin_malloc()

    from hashmatch.testing.synthetic import generate_image

    files = []
    for i in range(args.count):
        buf = io.BytesIO()
        generate_image(args.seed * 1_000_003 + i, size=(1024, 768)).save(buf, format="JPEG", quality=90)
        files.append(buf.getvalue())
    decoders = _decoders()
    times = times_over_layouts(decoders, files, rounds=args.rounds)
    # Each decoder at its median heap layout; the peer also at its fastest (its speed
    # hangs on where its buffers land: _common.times_over_layouts).
    peer_name = "peer: Pillow full decode + pdqhash.compute"
    best = {name: statistics.median(t["cpu"]) for name, t in times.items()}
    peer_fast = min(times[peer_name]["cpu"])
    rows = [[name, ms * 1e3, best[peer_name] / ms, peer_fast / ms] for name, ms in best.items()]
    print(f"{args.count} JPEGs 1024x768 q90, thread CPU, best of {args.rounds} rounds at each of "
          f"{len(times[peer_name]['cpu'])} heap layouts, median layout; {cpu_label()}")
    print(table(rows, ["decoder", "ms / image", "x peer (median layout)", "x peer (its fastest layout)"]))
    write_results("pdq_jpeg", {"machine": machine(), "settings": vars(args),
                               "rows": [{"decoder": r[0], "ms": r[1], "x_peer": r[2], "x_peer_fastest_layout": r[3]}
                                        for r in rows], "layout_seconds": times},
                  record=args.record)
    return 0


if __name__ == "__main__":
    sys.exit(main())

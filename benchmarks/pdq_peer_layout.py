"""Why the peer's speed moves: pdqhash.compute against where its two float buffers land.

    PYTHONPATH=src python benchmarks/pdq_peer_layout.py [--layouts 6] [--calls 7]

pdqhash's binding (``bindings.pyx``) makes a float32 luma image and ``np.zeros_like`` of
it, and the C++ Jarosz filter passes between the two. Per heap layout (a spacer block
allocated before each call, as ``_common.times_over_layouts`` does) this prints the
median thread-CPU time of ``pdqhash.compute`` on one 1024x768 image and the offset
between the two buffers within a 4 KiB page, read from the same allocations made just
before the timed calls (so the same free-list state). Allocator pinned, one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import _layout_spacer, cpu_label, pin_malloc  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", type=int, default=6)
    parser.add_argument("--calls", type=int, default=7)
    args = parser.parse_args(argv)
    pin_malloc()
    import numpy as np
    import pdqhash

    from hashmatch.testing.synthetic import generate_image

    rgb = np.asarray(generate_image(3, size=(1024, 768)).convert("RGB"))
    pdqhash.compute(rgb)
    print(f"pdqhash.compute, 1024x768, thread CPU, median of {args.calls} calls; {cpu_label()}")
    for layout in range(args.layouts):
        spacer = _layout_spacer(layout)
        gray = (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114).astype("float32")
        other = np.zeros_like(gray)
        offset = (other.ctypes.data - gray.ctypes.data) % 4096
        del gray, other, spacer
        times = []
        for _ in range(args.calls):
            spacer = _layout_spacer(layout)
            start = time.thread_time()
            pdqhash.compute(rgb)
            times.append(time.thread_time() - start)
            del spacer
        print(f"layout {layout}: {1e3 * statistics.median(times):6.2f} ms, second buffer at +{offset} B "
              f"within a page of the first")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Direct ``MultiIndexHash.load`` timing (issue 13, notes/issue-13.md "Snapshot tables persisted").

Loads a saved index twice from the main thread (numba-parallel table builds for version 1
files) and twice from a worker thread (serial, as ``hashmatch serve`` loads), then times
SHA-256 over the file's bytes in memory (the checksum every load verifies). Compare a
version 1 and a version 2 file of the same rows in one session:

    python benchmarks/bench_index_load.py /tmp/hashmatch-bench-mihsnap/v1.hmidx /tmp/hashmatch-bench-mihsnap/v2.hmidx
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time

from hashmatch.index import MultiIndexHash, warmup


def timed_load(path: str) -> float:
    start = time.perf_counter()
    MultiIndexHash.load(path)
    return time.perf_counter() - start


def main(paths: list[str]) -> None:
    warmup((256,))  # kernel compilation is not load time
    for path in paths:
        for where in ("main", "worker"):
            for _ in range(2):
                if where == "main":
                    seconds = timed_load(path)
                else:
                    box: list[float] = []
                    worker = threading.Thread(target=lambda: box.append(timed_load(path)))
                    worker.start()
                    worker.join()
                    seconds = box[0]
                print(f"{path}: load from the {where} thread {seconds:.2f} s", flush=True)
        with open(path, "rb") as f:
            data = f.read()
        start = time.perf_counter()
        hashlib.sha256(data).digest()
        seconds = time.perf_counter() - start
        print(f"{path}: SHA-256 of {len(data) / 1e9:.2f} GB in memory {seconds:.2f} s ({len(data) / seconds / 1e9:.2f} GB/s)")


if __name__ == "__main__":
    main(sys.argv[1:])

"""What the store's integrity checks cost (issue 10): opening with ``PRAGMA quick_check``
against a bare SQLite open, ``quick_check`` against ``integrity_check``, and
``read_active`` with its index cross-check against the same read without it.

    python benchmarks/bench_store_checks.py --sizes 200000 --seed 0

Ratios come from one run on one store (peers timed interleaved, best of three).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_record_option, machine, table, write_results  # noqa: E402

from hashmatch._store import NewEntry, ReferenceStore  # noqa: E402
from hashmatch.hashes import Hash  # noqa: E402


def best(fns: dict[str, Callable[[], Any]], repeats: int = 3) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def run(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "refs.db"
        with ReferenceStore(path) as store:
            store.add_entries("L", (NewEntry(Hash(int.from_bytes(rng.bytes(32), "big"), "pdq", 256)) for _ in range(n)),
                              return_ids=False)
            store.add_entries("L", (NewEntry(Hash(int(v), "phash", 64)) for v in rng.integers(0, 2**63, n)),
                              return_ids=False)
        size_mb = path.stat().st_size / 1e6
        raw = sqlite3.connect(path)

        def bare_open() -> None:
            conn = sqlite3.connect(path)
            conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()
            conn.close()

        rows: list[dict[str, Any]] = []
        t = best({"bare open": bare_open, "ReferenceStore open": lambda: ReferenceStore(path, create=False).close(),
                  "quick_check": lambda: raw.execute("PRAGMA quick_check").fetchall(),
                  "integrity_check": lambda: raw.execute("PRAGMA integrity_check").fetchall()})
        rows.append({"what": "open", "n_per_algorithm": n, "store_mb": round(size_mb, 1), **{k: round(v, 4) for k, v in t.items()},
                     "integrity/quick": round(t["integrity_check"] / t["quick_check"], 2)})
        with ReferenceStore(path, create=False) as store:
            for algorithm, bits in (("pdq", 256), ("phash", 64)):
                def without(algorithm: str = algorithm, bits: int = bits) -> None:
                    with store._consistent_read() as (conn, _):
                        found = conn.execute(
                            "SELECT id, hash FROM entries WHERE algorithm = ? AND retracted IS NULL ORDER BY id",
                            (algorithm,),
                        ).fetchall()
                    store._batch(found, algorithm, bits)

                t = best({"read without cross-check": without, "read_active": lambda a=algorithm: store.read_active(a)})
                rows.append({"what": f"read_active {algorithm}", "n_per_algorithm": n, **{k: round(v, 4) for k, v in t.items()},
                             "with/without": round(t["read_active"] / t["read without cross-check"], 2)})
        raw.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000])
    parser.add_argument("--seed", type=int, default=0)
    add_record_option(parser)
    args = parser.parse_args()
    results = [row for n in args.sizes for row in run(n, args.seed)]
    for row in results:
        print(table([[k, v] for k, v in row.items()], ["field", "value"]))
        print()
    print("written", write_results("store_checks", {"machine": machine(), "results": results}, record=args.record))


if __name__ == "__main__":
    main()

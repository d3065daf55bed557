"""Run every benchmark with the settings behind the README's figures (``make bench``).

Each script pins the allocator, states the machine and writes its JSON to
benchmarks/scratch/, or with ``--record`` to benchmarks/results/ (the recorded figures). On a 2-core machine the whole set takes well over an hour,
most of it in bench_robustness (hashing ~13,000 images) and bench_match's 10M-row store.
``--only NAME[,NAME]`` runs a subset.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> arguments: the exact settings quoted in README.md and the issues' closing notes.
RUNS: dict[str, list[str]] = {
    "hashing": ["--count", "300", "--seed", "7"],
    "pdq": ["--count", "200", "--rounds", "5", "--seed", "7", "--sizes", "1024x768"],
    "index": ["--realistic-images", "1500", "--repeats", "5"],
    "match": ["--seed", "0", "--sizes", "1000000", "--big", "10000000", "--reps", "300", "--load-repeats", "3"],
    "scan": ["--count", "2000", "--workers", "2", "--seed", "7"],
    "robustness": ["--seed", "0", "--negatives", "5000", "--positives", "150"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(RUNS), help="comma-separated subset of: " + ", ".join(RUNS))
    parser.add_argument("--record", action="store_true", help="replace the recorded figures in benchmarks/results/")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    failed = []
    for name in names:
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *RUNS[name], *(["--record"] if args.record else [])]
        print(f"\n=== {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Hostile inputs through every entry point: a result or a project error, in bounded time and
memory (issue 10, "keep it so").

Each class of cases runs in one child process (``tests/_hostile_child.py``) under an
address-space limit (``BUDGET_BYTES`` above the child's size once warmed up) and a
timeout; a hang is the timeout, a crash is any exception that is not a HashmatchError
(or, for the CLI - hash, match, refs add, scan - a traceback or an exit code outside the
contract: match and scan must not say "matched"), a wrong verdict is a match against
unrelated random references or a batch that lost its last, good image. ``python tests/test_hostile_inputs.py`` prints the figures per
class (cases, calls, errors, crashes, hangs, wrong verdicts, slowest call, peak RSS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

try:
    from . import _hostile_cases as cases_mod
except ImportError:  # run as a script
    sys.path.insert(0, str(Path(__file__).parent))
    import _hostile_cases as cases_mod  # type: ignore[no-redef]

BUDGET_BYTES = 2 << 30
TIMEOUT_SECONDS = 300
CHILD = Path(__file__).with_name("_hostile_child.py")


def _store(path: Path) -> None:
    from hashmatch._store import NewEntry, ReferenceStore
    from hashmatch.hashes import Hash

    rng = np.random.default_rng(8)
    with ReferenceStore(path) as store:
        entries = [NewEntry(Hash(int(v), "phash", 64)) for v in rng.integers(0, 2**63, 30)]
        entries += [NewEntry(Hash(int.from_bytes(rng.bytes(32), "big"), "pdq", 256), quality=100) for _ in range(30)]
        store.add_entries("random", entries, return_ids=False)


def run_class(name: str, workdir: Path) -> dict[str, Any]:
    """Run one class of cases in a child; returns its records and a summary."""
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "special":
        listed = cases_mod.special_paths(workdir / "cases")
    else:
        listed = cases_mod.write_cases(workdir / "cases", cases_mod.CLASSES[name]())
    good = workdir / "good.png"
    good.write_bytes(cases_mod.encoded("PNG", seed=99, width=96, height=80))
    _store(workdir / "refs.db")
    spec = {
        "cases": listed, "good": str(good), "store": str(workdir / "refs.db"),
        "add_store": str(workdir / "added.db"), "budget_bytes": BUDGET_BYTES,
        "folder": str(workdir / "cases"), "report": str(workdir / "scan.jsonl"),
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
           # as make test and the benchmarks pin them: big decodes without a fault per page
           "MALLOC_MMAP_THRESHOLD_": "134217728", "MALLOC_TRIM_THRESHOLD_": "268435456"}
    try:
        proc = subprocess.run(
            [sys.executable, str(CHILD), str(workdir / "spec.json")],
            capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env=env,
        )
        stdout, stderr, hung = proc.stdout, proc.stderr, False
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr, hung = "", True
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return {"name": name, "cases": len(listed), "records": records, "hung": hung, "stderr": stderr,
            "summary": summarise(name, len(listed), records, hung)}


def summarise(name: str, n_cases: int, records: list[dict[str, Any]], hung: bool) -> dict[str, Any]:
    ends = [r for r in records if r.get("event") == "end"]
    crashes = [r for r in ends if r["outcome"] == "crash"]
    cli_bad = [
        r for r in ends if r["entry"].startswith("cli:")
        and (r.get("traceback") or r.get("exit") not in ({0, 2} if r["entry"] in ("cli:match", "cli:scan") else {0, 1, 2}))
    ]
    wrong = [r for r in records if r.get("event") == "wrong"]
    limit = next((r for r in records if r.get("event") == "limit"), {})
    last_start = next((r for r in reversed(records) if r.get("event") == "start"), None)
    slowest = max(ends, key=lambda r: r["seconds"], default=None)
    return {
        "class": name, "cases": n_cases, "calls": len(ends),
        "errors": sum(r["outcome"] == "error" for r in ends),
        "crashes": len(crashes) + len(cli_bad), "hangs": int(hung),
        "wrong": len(wrong), "done": any(r.get("event") == "done" for r in records),
        "slowest_call": None if slowest is None else f"{slowest['case']} {slowest['entry']} {slowest['seconds']}s",
        "peak_rss_mb": round(max((r.get("maxrss_kb", 0) for r in records), default=0) / 1024),
        "baseline_vm_mb": round(limit.get("baseline", 0) / 2**20),
        "hung_in": None if not hung or last_start is None else f"{last_start['case']} {last_start['entry']}",
        "crash_examples": [f"{r['case']} {r['entry']}: {r.get('detail') or r.get('stderr_tail')}"
                           for r in (crashes + cli_bad)[:5]],
        "wrong_examples": [f"{r['case']} {r['entry']}: {r['detail']}" for r in wrong[:5]],
    }


CLASS_NAMES = [*cases_mod.CLASSES, "special"]


@pytest.mark.parametrize("name", CLASS_NAMES)
def test_hostile_inputs_give_results_or_project_errors(name: str, tmp_path: Path) -> None:
    outcome = run_class(name, tmp_path)
    summary = outcome["summary"]
    assert not outcome["hung"], f"hang in {summary['hung_in']}"
    assert summary["done"], f"child died: {outcome['stderr'][-2000:]}"
    assert summary["crashes"] == 0, summary["crash_examples"]
    assert summary["wrong"] == 0, summary["wrong_examples"]
    # Every case went through every per-case entry point.
    per_case = {r["case"] for r in outcome["records"] if r.get("event") == "end" and r["entry"] == "Matcher.match"}
    assert len(per_case) == outcome["cases"]


def main() -> None:
    totals: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in CLASS_NAMES:
            totals.append(run_class(name, Path(tmp) / name)["summary"])
    keys = ["class", "cases", "calls", "errors", "crashes", "hangs", "wrong", "peak_rss_mb", "baseline_vm_mb",
            "slowest_call"]
    print(" | ".join(keys))
    for row in totals:
        print(" | ".join(str(row[k]) for k in keys))


if __name__ == "__main__":
    main()

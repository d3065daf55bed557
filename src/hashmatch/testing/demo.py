"""The whole story on synthetic data: ``python -m hashmatch.testing.demo OUT_DIR`` (``make demo``).

1. Make photo-like originals; put some of them on a reference list in a store.
2. Make altered copies of listed originals (resized, recompressed, rotated, mirrored,
   cropped, brighter, captioned) and take originals that are on no list.
3. Match everything with a Matcher built from the store and print which file matched,
   which entry, at what distance and in which orientation.
4. Retract one entry, refresh the Matcher, and show that its copies no longer match.

No hash values are printed: entries are named by id and label.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from PIL import Image

from hashmatch import ALGORITHMS, Matcher, NewEntry, ReferenceStore, compute_hashes

from .synthetic import generate_image
from .transforms import apply_transform

LISTED, UNLISTED = 6, 6

# Alterations of listed originals: (transform name, its parameters).
_ALTERATIONS: list[tuple[str, dict[str, object]]] = [
    ("resize", {"scale": 0.5}),
    ("jpeg", {"quality": 40}),
    ("turn", {"quarter_turns": 1}),
    ("mirror", {"axis": "horizontal"}),
    ("crop", {"fraction": 0.05}),
    ("brightness", {"factor": 1.25}),
    ("caption", {"text": "DEMO"}),
]


def _alter(image: Image.Image, name: str, params: dict[str, object]) -> Image.Image:
    return apply_transform(image, name, **params)


def run(out_dir: Path, *, seed: int = 2026) -> int:
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    algorithms = [a for a in ("pdq", "phash") if a in ALGORITHMS]
    originals = out_dir / "originals"
    uploads = out_dir / "uploads"
    originals.mkdir(exist_ok=True)
    uploads.mkdir(exist_ok=True)
    store_path = out_dir / "refs.db"
    for stale in [store_path, *out_dir.glob("refs.db*")]:
        if stale.is_file():
            stale.unlink()
        elif stale.is_dir():
            for f in stale.iterdir():
                f.unlink()
            stale.rmdir()

    print(f"1. {LISTED + UNLISTED} synthetic originals in {originals}/; the first {LISTED} go on list 'demo-known'")
    images = []
    for i in range(LISTED + UNLISTED):
        image = generate_image(seed + i, size=(640, 480))
        path = originals / f"original-{i:02d}.png"
        image.save(path)
        images.append(image)
    with ReferenceStore(store_path) as store:
        store.create_list("demo-known", source="hashmatch demo", description="synthetic originals 0-5")
        entries = []
        for i in range(LISTED):
            results = compute_hashes(images[i], algorithms)
            for name in algorithms:
                r = results[name][0]
                entries.append(NewEntry(r.hash, r.quality, label=f"original-{i:02d}", external_id=f"case-{100 + i}"))
        report = store.add_entries("demo-known", entries)
        print(f"   store {store_path}: {report}; algorithms {', '.join(algorithms)}")

        print("2. uploads: altered copies of listed originals, and unlisted originals")
        expected: dict[str, str | None] = {}
        for k, (name, params) in enumerate(_ALTERATIONS):
            i = k % LISTED
            path = uploads / f"copy-{i:02d}-{name}.jpg"
            _alter(images[i], name, params).convert("RGB").save(path, quality=90)
            expected[path.name] = f"original-{i:02d}"
        for i in range(LISTED, LISTED + UNLISTED):
            path = uploads / f"unrelated-{i:02d}.jpg"
            images[i].save(path, quality=90)
            expected[path.name] = None

        matcher = Matcher.from_store(store)
        print(f"3. {matcher!r}; thresholds {dict(matcher.thresholds)}")
        print(f"   {'upload':<28} {'expected':<12} {'result':<8} {'entry':>5}  {'label':<12} {'alg':<6} {'dist':>4}  orientation")
        right = 0
        for fname, want in expected.items():
            matches = matcher.match(uploads / fname)
            got = matches[0] if matches else None
            ok = (got is not None and got.label == want) or (got is None and want is None)
            right += ok
            if got is None:
                print(f"   {fname:<28} {want or '-':<12} {'no match':<8}")
            else:
                # The same original through every algorithm that found it.
                others = ", ".join(
                    f"{m.algorithm} {m.distance}" for m in matches[1:] if m.label == got.label
                )
                line = (
                    f"   {fname:<28} {want or '-':<12} {'MATCH':<8} {got.entry_id:>5}  {got.label or '':<12} "
                    f"{got.algorithm:<6} {got.distance:>4}  {got.orientation or '-':<11}"
                    + (f" (also {others})" if others else "")
                    + ("" if ok else "   <- unexpected")
                )
                print(line.rstrip())
        print(f"   {right}/{len(expected)} as expected")

        victim = next(e for e in store.entries() if e.label == "original-00")
        store.retract([e.entry_id for e in store.entries() if e.label == "original-00"], reason="demo: appeal upheld")
        changed = matcher.refresh()
        still = [m for m in matcher.match(uploads / "copy-00-resize.jpg") if m.label == "original-00"]
        print(
            f"4. retracted the entries of original-00 (e.g. entry {victim.entry_id}); refresh() -> {changed}; "
            f"copy-00-resize.jpg now matches it: {bool(still)}"
        )
        matcher.close()
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0 if right == len(expected) else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "demo-out")
    return run(out)


if __name__ == "__main__":
    sys.exit(main())

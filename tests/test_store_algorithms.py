"""``ReferenceStore.algorithms()`` (a skip-scan of the index since issue 13) against a naive scan."""

from __future__ import annotations

from hashmatch import Hash, ReferenceStore

BITS = {"ahash": 64, "dhash": 64, "pdq": 256, "phash": 64, "whash": 64}


def _naive(store: ReferenceStore) -> list[str]:
    return sorted({e.hash.algorithm for e in store.entries()})


def test_algorithms_lists_those_with_an_active_entry(tmp_path, rng):
    with ReferenceStore(tmp_path / "refs.db") as store:
        assert store.algorithms() == [] == _naive(store)
        ids: dict[str, list[int]] = {}
        for name in ("whash", "pdq", "ahash", "phash"):
            for _ in range(3):
                h = Hash(int(rng.integers(1, 2**62)), name, BITS[name])
                ids.setdefault(name, []).append(store.add("l", h))  # type: ignore[arg-type]
        assert store.algorithms() == _naive(store) == ["ahash", "pdq", "phash", "whash"]
        store.retract(ids["pdq"])  # every pdq entry retracted: pdq is gone
        store.retract(ids["ahash"][:2])  # one ahash entry left, after two retracted ones
        assert store.algorithms() == _naive(store) == ["ahash", "phash", "whash"]
        store.retract(ids["whash"] + ids["ahash"])
        assert store.algorithms() == _naive(store) == ["phash"]

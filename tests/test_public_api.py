"""The public surface is deliberate: this pins it, so a change to it is a decision."""

from __future__ import annotations

import importlib.metadata

import hashmatch
import hashmatch.errors as errors


def test_top_level_all_is_pinned():
    assert sorted(hashmatch.__all__) == sorted(
        [
            "ALGORITHMS", "AddResult", "Confirmation", "DEFAULT_CONFIRMATIONS", "DEFAULT_THRESHOLDS", "ERROR_KINDS", "Hash", "HashBatch", "HashResult",
            "HashmatchError", "ImageError", "ImageLimits", "ImageTooLargeError", "Match", "Matcher",
            "NewEntry", "QuerySpec", "ReferenceStore", "ScanResult", "ScanRun", "ScanSummary", "StoreError",
            "UnknownAlgorithmError", "UnreadableImageError", "UsageError", "__version__", "add_images",
            "compute_hashes", "compute_query_hashes", "hash_image", "hash_images", "scan", "trim_borders", "warmup",
        ]
    )
    for name in hashmatch.__all__:
        assert hasattr(hashmatch, name), name


def test_version_comes_from_package_metadata():
    assert hashmatch.__version__ == importlib.metadata.version("hashmatch")


def test_registry_holds_every_algorithm():
    assert set(hashmatch.ALGORITHMS) == {"ahash", "dhash", "phash", "whash", "pdq"}


def test_every_error_descends_from_the_root_and_a_builtin():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.HashmatchError), name
        if cls is not errors.HashmatchError:
            assert issubclass(cls, (ValueError, OSError, ImportError)), name
        assert name in errors.__doc__, f"{name} is missing from the tree in errors.py's docstring"


def test_warmup_runs_and_hashing_still_agrees_afterwards(rng):
    from .conftest import photo_like

    arr = photo_like(rng, 64, 48)
    before = hashmatch.hash_image(arr, "pdq")
    hashmatch.warmup()
    assert hashmatch.hash_image(arr, "pdq") == before

"""Synthetic images: determinism, unrelated hashes across seeds, sizes, manifest, CLI."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from hashmatch import hash_image
from hashmatch.cli import main
from hashmatch.testing.synthetic import MANIFEST_NAME, generate_image, image_seed, write_dataset


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_generate_image_same_seed_same_pixels() -> None:
    a, b = generate_image(7, size=(200, 150)), generate_image(7, size=(200, 150))
    assert _png(a) == _png(b)


def test_generate_image_different_seeds_differ() -> None:
    a, b = generate_image(7, size=(200, 150)), generate_image(8, size=(200, 150))
    assert _png(a) != _png(b)


def test_generate_image_phash_distances_centre_near_half_the_bits(rng) -> None:
    seeds = rng.integers(0, 2**62, 60)
    hashes = [hash_image(generate_image(int(s), size=(160, 120)), "phash") for s in seeds]
    dists = np.array([hashes[i] - hashes[j] for i in range(len(hashes)) for j in range(i)])
    assert 29.0 <= dists.mean() <= 35.0
    assert np.median(dists) >= 28
    # Unrelated images: nothing should come near the usual match thresholds.
    assert dists.min() > 8


def test_generate_image_honours_size() -> None:
    image = generate_image(1, size=(123, 77))
    assert image.size == (123, 77) and image.mode == "RGB"


def test_generate_image_default_sizes_vary_in_aspect() -> None:
    sizes = {generate_image(s).size for s in range(12)}
    assert len(sizes) >= 4
    assert any(w > h for w, h in sizes) and any(h > w for w, h in sizes)
    assert all(320 <= max(w, h) <= 1024 for w, h in sizes)


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_generate_image_rejects_out_of_range_seed(seed: int) -> None:
    with pytest.raises(ValueError):
        generate_image(seed)


@pytest.mark.parametrize("size", [(0, 10), (10, 10**5), (10,), "10x10", (1.5, 20)])
def test_generate_image_rejects_bad_size(size) -> None:
    with pytest.raises((ValueError, TypeError)):
        generate_image(1, size=size)


def test_image_seed_is_stable_and_distinct() -> None:
    seeds = [image_seed(5, i) for i in range(1000)]
    assert len(set(seeds)) == 1000
    assert seeds[0] == image_seed(5, 0) != image_seed(6, 0)


def test_write_dataset_same_seed_same_bytes(tmp_path) -> None:
    m1 = write_dataset(tmp_path / "a", 4, seed=11, size=(96, 64))
    m2 = write_dataset(tmp_path / "b", 4, seed=11, size=(96, 64))
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert m1.read_bytes() == m2.read_bytes()


def test_write_dataset_manifest_describes_each_file(tmp_path) -> None:
    path = write_dataset(tmp_path, 3, seed=2, format="png")
    assert path == tmp_path / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    assert manifest["count"] == 3 and manifest["seed"] == 2 and manifest["format"] == "png"
    for index, entry in enumerate(manifest["images"]):
        data = (tmp_path / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["seed"] == image_seed(2, index)
        regenerated = generate_image(entry["seed"])
        assert regenerated.size == (entry["width"], entry["height"])
        assert _png(regenerated) == data  # png at the same settings is the same encoding


def test_write_dataset_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError):
        write_dataset(tmp_path, -1, seed=1)
    with pytest.raises(ValueError):
        write_dataset(tmp_path, 1, seed=1, format="gif")
    with pytest.raises(ValueError):
        write_dataset(tmp_path, 1, seed=1, quality=0)


def test_synth_cli_writes_count_images_and_manifest(tmp_path, capsys) -> None:
    code = main(["synth", "--out", str(tmp_path), "--count", "3", "--seed", "4", "--size", "64x48"])
    assert code == 0
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert [e["file"] for e in manifest["images"]] == ["synth_000000.jpg", "synth_000001.jpg", "synth_000002.jpg"]
    assert all((e["width"], e["height"]) == (64, 48) for e in manifest["images"])
    assert "wrote 3 images" in capsys.readouterr().out


def test_synth_cli_rejects_bad_size(tmp_path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path), "--count", "1", "--size", "big"]) == 2
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_generate_image_long_side_keeps_seed_aspect() -> None:
    free = generate_image(21)
    fixed = generate_image(21, long_side=256)
    assert max(fixed.size) == 256
    assert (fixed.width >= fixed.height) == (free.width >= free.height)
    assert abs(fixed.width / fixed.height - free.width / free.height) < 0.02


def test_write_dataset_workers_give_the_same_files(tmp_path) -> None:
    one = write_dataset(tmp_path / "one", 20, seed=8, long_side=64)
    two = write_dataset(tmp_path / "two", 20, seed=8, long_side=64, workers=2)
    assert one.read_text() == two.read_text()
    with pytest.raises(ValueError):
        write_dataset(tmp_path, 1, seed=1, workers=0)

"""The reference-statistics cache is keyed by the reference's bytes, not its file metadata."""

from __future__ import annotations

import os

import numpy as np
import pytest
from metrics_helpers import rng_images, write_sample_set
from PIL import Image

import hvqeval.metrics.evaluation as evaluation_module
from hvqeval.errors import SampleSetError
from hvqeval.inputs import open_images
from hvqeval.metrics.evaluation import EvalSettings, evaluate
from hvqeval.metrics.reference_cache import content_sha256


def write_bmp_folder(path, n: int, size: int = 16):
    """Uncompressed BMPs: changing a pixel keeps the file size, so only the bytes differ."""
    path.mkdir(parents=True)
    for i, image in enumerate(rng_images(n, size, seed=7)):
        Image.fromarray(image).save(path / f"{i:03d}.bmp")
    return path


def change_one_pixel_keeping_name_size_and_mtime(file):
    before = os.stat(file)
    image = np.array(Image.open(file))
    image[0, 0, 0] ^= 0xFF
    Image.fromarray(image).save(file)
    os.utime(file, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(file)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_a_changed_pixel_with_the_same_name_size_and_mtime_misses(
    tmp_path, domain_weights, monkeypatch
):
    samples = write_sample_set(tmp_path / "s", 20, size=16)
    reference = write_bmp_folder(tmp_path / "r", 20)
    settings = EvalSettings(
        metrics=("fid",),
        extractor="domain",
        weights=str(domain_weights),
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )
    extracted = []
    real_images_to_features = evaluation_module.images_to_features

    def counting(source, *args, **kwargs):  # records which inputs went through the network
        extracted.append(source.spec)
        return real_images_to_features(source, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "images_to_features", counting)
    first = evaluate(str(samples), str(reference), settings)
    again = evaluate(str(samples), str(reference), settings)
    assert (first.reference_cache, again.reference_cache) == ("miss", "hit")
    assert extracted.count(str(reference)) == 1

    change_one_pixel_keeping_name_size_and_mtime(reference / "007.bmp")
    changed = evaluate(str(samples), str(reference), settings)
    assert changed.reference_cache == "miss"
    assert extracted.count(str(reference)) == 2
    assert changed.rows[0].value != first.rows[0].value  # the new pixels were used


def test_content_hash_ignores_metadata_and_follows_bytes(tmp_path):
    reference = write_bmp_folder(tmp_path / "r", 3)
    key = content_sha256(open_images(str(reference)))
    os.utime(reference / "001.bmp", ns=(1, 1))  # touched only: same bytes, same key
    assert content_sha256(open_images(str(reference))) == key
    change_one_pixel_keeping_name_size_and_mtime(reference / "001.bmp")
    assert content_sha256(open_images(str(reference))) != key


def test_sample_set_files_are_checked_against_the_manifest_hashes(tmp_path):
    samples = write_sample_set(tmp_path / "s", 4, size=8)
    content_sha256(open_images(str(samples)))  # intact: no error
    victim = sorted(samples.glob("*.png"))[2]
    image = np.array(Image.open(victim))
    image[0, 0, 0] ^= 0xFF
    Image.fromarray(image).save(victim)
    with pytest.raises(SampleSetError, match=f"{victim.name} does not match the sha256"):
        content_sha256(open_images(str(samples)))

"""Sample-set format: write, resume, load, and every way a set can be broken."""

import json

import numpy as np
import pytest

from hvqeval.errors import SampleSetError
from hvqeval.sample_set import MANIFEST_NAME, SampleSet, SampleSetWriter


def _images(n, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _write(path, n=5, **meta):
    meta = {"model": "tiny_ff", "image_size": 8, "temperature": 1.0, "seed": 0, **meta}
    writer = SampleSetWriter(path, **meta)
    for i, img in enumerate(_images(n)):
        writer.add(img, class_id=i % 2, class_name=f"class {i % 2}")
    return writer.close()


def test_round_trip_is_lossless(tmp_path):
    sample_set = _write(tmp_path / "set")
    assert len(sample_set) == 5
    assert sample_set.class_ids() == [0, 1]
    original = _images(5)
    for i in range(5):
        np.testing.assert_array_equal(sample_set.uint8(i), original[i])
    batches = list(sample_set.iter_uint8(batch_size=2))
    assert [b[0].shape for b in batches] == [(2, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert batches[2][1].tolist() == [0]
    sample_set.verify()


def test_resume_extends_and_refuses_other_settings(tmp_path):
    path = tmp_path / "set"
    writer = SampleSetWriter(path, model="m", image_size=8, seed=1)
    writer.add(_images(1)[0], 0, "a")
    writer.flush()  # an interrupted run keeps what was flushed
    again = SampleSetWriter(path, model="m", image_size=8, seed=1)
    assert len(again) == 1
    again.add(_images(2)[1], 1, "b")
    assert len(again.close()) == 2
    with pytest.raises(SampleSetError, match="different settings \\(seed\\)"):
        SampleSetWriter(path, model="m", image_size=8, seed=2)


def test_missing_file_and_changed_file_are_named(tmp_path):
    sample_set = _write(tmp_path / "set")
    (sample_set.path / "000001.png").write_bytes((sample_set.path / "000002.png").read_bytes())
    with pytest.raises(SampleSetError, match="000001.png does not match the sha256"):
        SampleSet.load(sample_set.path).verify()
    (sample_set.path / "000003.png").unlink()
    with pytest.raises(SampleSetError, match="lists 000003.png but the file is missing"):
        SampleSet.load(sample_set.path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.pop("files"), "missing key\\(s\\) files"),
        (lambda m: m.update(format_version=99), "format_version 99 is not supported"),
        (lambda m: m["files"][0].update(file="../x.png"), "invalid file name"),
        (lambda m: m["files"][1].update(file=m["files"][0]["file"]), "listed twice"),
        (lambda m: m["files"][0].update(class_id="3"), "class_id must be an integer"),
    ],
)
def test_bad_manifests_fail_with_one_clear_message(tmp_path, mutate, message):
    sample_set = _write(tmp_path / "set")
    manifest = json.loads((sample_set.path / MANIFEST_NAME).read_text())
    mutate(manifest)
    (sample_set.path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(SampleSetError, match=message):
        SampleSet.load(sample_set.path)


def test_not_a_sample_set(tmp_path):
    with pytest.raises(SampleSetError, match="does not exist"):
        SampleSet.load(tmp_path / "nope")
    with pytest.raises(SampleSetError, match="manifest.json is missing"):
        SampleSet.load(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(SampleSetError, match="not valid JSON"):
        SampleSet.load(tmp_path)


def test_wrong_image_size_is_refused(tmp_path):
    sample_set = _write(tmp_path / "set")
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(sample_set.path / "000000.png")
    with pytest.raises(SampleSetError, match="is 4x4, manifest says image_size 8"):
        SampleSet.load(sample_set.path).uint8(0)

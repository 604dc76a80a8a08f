"""``hvqeval samples import`` / ``from-dataset``: any image set becomes a sample set whose
pixels and classes are those of the source; every bad input is one line and writes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hvqeval.cli import cli
from hvqeval.sample_set import SampleSet, sha256_file
from models import open_dataset


def _samples(*args):
    return CliRunner().invoke(cli, ["samples", *map(str, args)])


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _images(n, size=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [
        line for line in result.output.splitlines() if line.strip() and "img/s" not in line
    ]  # not tqdm
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_flat_folder_keeps_pixels_and_records_sha256(tmp_path):
    images = _images(3)
    for i, image in enumerate(images):
        _png(tmp_path / "flat" / f"img{i}.png", image)
    result = _samples(
        "import",
        tmp_path / "flat",
        "--model",
        "BigGAN",
        "--out",
        tmp_path / "set",
        "--classes-of",
        "shapes",
        "--class-id",
        7,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[-1])["classes"] == {"7": 3}
    s = SampleSet.load(tmp_path / "set")
    s.verify()
    assert s.model == "BigGAN" and s.image_size == 12 and s.manifest["resize"] is None
    assert [f.class_id for f in s.files] == [7, 7, 7] and s.files[0].class_name == "triangle (7)"
    assert all(f.sha256 == sha256_file(s.path / f.file) for f in s.files)
    assert all(np.array_equal(s.uint8(i), images[i]) for i in range(3))


@pytest.mark.parametrize(
    "umask, folder_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)]
)
def test_a_sample_set_has_the_modes_the_umask_gives(tmp_path, umask, folder_mode, file_mode):
    """A study server running as another user, or a colleague on a shared file system, reads
    sample sets: they were owner-only (0700 / 0600, tempfile's modes) whatever the umask."""
    import os
    import stat

    for i, image in enumerate(_images(2)):
        _png(tmp_path / "flat" / f"img{i}.png", image)
    before = os.umask(umask)
    try:
        result = _samples(
            "import", tmp_path / "flat", "--model", "m", "--out", tmp_path / "set", "--class-id", 1
        )
    finally:
        os.umask(before)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "set").stat().st_mode) == folder_mode
    files = list((tmp_path / "set").iterdir())
    assert {f.name for f in files} >= {"manifest.json", "000000.png"}
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {file_mode}


def test_class_folders_by_id_name_and_wnid(tmp_path):
    images = _images(3)
    _png(tmp_path / "ids" / "3" / "a.png", images[0])
    _png(tmp_path / "ids" / "two_discs" / "b.png", images[1])
    _png(tmp_path / "ids" / "Triangle" / "c.png", images[2])
    result = _samples(
        "import",
        tmp_path / "ids",
        "--model",
        "m",
        "--out",
        tmp_path / "s1",
        "--classes-of",
        "shapes",
    )
    assert result.exit_code == 0, result.output
    by_class = {f.class_id: i for i, f in enumerate(SampleSet.load(tmp_path / "s1").files)}
    s1 = SampleSet.load(tmp_path / "s1")
    assert sorted(by_class) == [1, 3, 7]
    assert np.array_equal(s1.uint8(by_class[3]), images[0]) and np.array_equal(
        s1.uint8(by_class[1]), images[1]
    )

    _png(tmp_path / "wnids" / "n03743016" / "a.png", images[0])  # megalith
    _png(tmp_path / "wnids" / "n01440764" / "b.png", images[1])  # tench
    result = _samples("import", tmp_path / "wnids", "--model", "m", "--out", tmp_path / "s2")
    assert result.exit_code == 0, result.output
    names = {f.class_id: f.class_name for f in SampleSet.load(tmp_path / "s2").files}
    assert names == {649: "megalith (649)", 0: "tench (0)"}


def test_class_map_csv(tmp_path):
    _png(tmp_path / "src" / "cats" / "a.png", _images(1)[0])
    _png(tmp_path / "src" / "dogs" / "b.png", _images(1, seed=1)[0])
    (tmp_path / "map.csv").write_text("folder,class_id\ncats,281\ndogs,207\n")
    result = _samples(
        "import",
        tmp_path / "src",
        "--model",
        "m",
        "--out",
        tmp_path / "s",
        "--class-map",
        tmp_path / "map.csv",
    )
    assert result.exit_code == 0, result.output
    assert sorted(f.class_id for f in SampleSet.load(tmp_path / "s").files) == [207, 281]
    (tmp_path / "map.csv").write_text("cats,281\n")
    line = _error(
        _samples(
            "import",
            tmp_path / "src",
            "--model",
            "m",
            "--out",
            tmp_path / "s2",
            "--class-map",
            tmp_path / "map.csv",
        )
    )
    assert "dogs" in line and "--class-map" in line and not (tmp_path / "s2").exists()


def test_npz_with_labels(tmp_path):
    images = _images(4)
    np.savez(tmp_path / "x.npz", images, labels=np.array([3, 3, 5, 9]))
    result = _samples(
        "import",
        tmp_path / "x.npz",
        "--model",
        "m",
        "--out",
        tmp_path / "s",
        "--classes-of",
        "shapes",
    )
    assert result.exit_code == 0, result.output
    s = SampleSet.load(tmp_path / "s")
    assert [f.class_id for f in s.files] == [3, 3, 5, 9]
    assert all(np.array_equal(s.uint8(i), images[i]) for i in range(4))
    np.savez(tmp_path / "bad.npz", images, labels=np.array([3, 3, 10, 9]))
    line = _error(
        _samples(
            "import",
            tmp_path / "bad.npz",
            "--model",
            "m",
            "--out",
            tmp_path / "s3",
            "--classes-of",
            "shapes",
        )
    )
    assert "bad.npz" in line and "image 2" in line and "label 10" in line


def test_mixed_sizes_refused_unless_resize_which_the_manifest_states(tmp_path):
    _png(tmp_path / "src" / "a.png", _images(1, size=12)[0])
    _png(tmp_path / "src" / "b.png", _images(1, size=20)[0])
    line = _error(
        _samples(
            "import", tmp_path / "src", "--model", "m", "--out", tmp_path / "s", "--class-id", 0
        )
    )
    assert "b.png" in line and "--resize SIZE" in line and not (tmp_path / "s").exists()
    result = _samples(
        "import",
        tmp_path / "src",
        "--model",
        "m",
        "--out",
        tmp_path / "s",
        "--class-id",
        0,
        "--resize",
        8,
    )
    assert result.exit_code == 0, result.output
    s = SampleSet.load(tmp_path / "s")
    assert s.image_size == 8 and s.uint8(1).shape == (8, 8, 3)
    assert "antialiased bilinear" in s.manifest["resize"] and "8" in s.manifest["resize"]


@pytest.mark.parametrize(
    "case", ["corrupt", "corrupt-resized", "unknown-folder", "no-labels", "out-exists", "missing"]
)
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, case):
    src = tmp_path / "src"
    _png(src / "3" / "a.png", _images(1)[0])
    args = ["--classes-of", "shapes"]
    expect = ""
    if case.startswith("corrupt"):
        (src / "3" / "broken.png").write_bytes(b"\x89PNG not really")
        expect = "broken.png"
        if (
            case == "corrupt-resized"
        ):  # found while writing (headers are not read first): cleaned up
            args += ["--resize", 8]
    elif case == "unknown-folder":
        _png(src / "spaceships" / "b.png", _images(1)[0])
        expect = "spaceships"
    elif case == "no-labels":
        src = src / "3"
        expect = "--class-id"
    elif case == "out-exists":
        (tmp_path / "out").mkdir()
        expect = "already exists"
    else:
        src = tmp_path / "nowhere"
        expect = "does not exist"
    line = _error(_samples("import", src, "--model", "m", "--out", tmp_path / "out", *args))
    assert expect in line
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("src", "out")]
    assert leftovers == []
    if case != "out-exists":
        assert not (tmp_path / "out").exists()


def test_from_dataset_writes_real_images_marked_real(tmp_path):
    result = _samples(
        "from-dataset",
        "shapes",
        "--split",
        "val",
        "--per-class",
        2,
        "--classes",
        "3,5",
        "--image-size",
        16,
        "--out",
        tmp_path / "real",
        "--json",
    )
    assert result.exit_code == 0, result.output
    s = SampleSet.load(tmp_path / "real")
    s.verify()
    assert (
        s.manifest["real"] is True
        and s.manifest["dataset"] == "shapes"
        and s.manifest["split"] == "val"
    )
    assert sorted(f.class_id for f in s.files) == [3, 3, 5, 5] and s.image_size == 16
    # every image is the dataset item the manifest names, of the class it says
    dataset = open_dataset("shapes", "val", image_size=16)
    indices = [entry["source_index"] for entry in s.manifest["files"]]
    assert len(set(indices)) == 4
    for i, (f, index) in enumerate(zip(s.files, indices)):
        image, class_id = dataset[index]
        assert class_id == f.class_id and np.array_equal(image.permute(1, 2, 0).numpy(), s.uint8(i))
    line = _error(
        _samples(
            "from-dataset",
            "shapes",
            "--per-class",
            2,
            "--classes",
            "3,12",
            "--out",
            tmp_path / "bad",
        )
    )
    assert "12" in line and not (tmp_path / "bad").exists()


def test_ctrl_c_says_whether_a_rerun_continues_or_starts_again(tmp_path, monkeypatch):
    """`samples import` keeps nothing of an interrupted import (it said "finished work is kept:
    rerun the same command to continue"); `metrics batch` keeps its stored jobs."""
    import hvqeval.image_import
    import hvqeval.metrics.batch

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(hvqeval.image_import, "import_images", interrupted)
    monkeypatch.setattr(hvqeval.metrics.batch, "run_batch", interrupted)
    for i, image in enumerate(_images(2)):
        _png(tmp_path / "flat" / f"img{i}.png", image)
    imported = _samples("import", tmp_path / "flat", "--model", "m", "--out", tmp_path / "set")
    assert imported.exit_code == 130
    assert "Interrupted; nothing half-written is left; rerun the command to start again." in (
        imported.stderr
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[[evaluation]]\nsamples = "{tmp_path / "flat"}"\nmetrics = ["isc"]\n')
    batch = CliRunner().invoke(cli, ["metrics", "batch", str(spec)])
    assert batch.exit_code == 130
    assert "Interrupted; finished work is kept: rerun the same command to continue." in (
        batch.stderr
    )

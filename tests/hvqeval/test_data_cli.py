"""``hvqeval data check`` on every supported format, written as small fixtures here."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hvqeval.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, ["data", "check", *map(str, args)])
    return result


def report(*args):
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def save(path, size, colour=(10, 20, 30), fmt=None, noise=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if noise:  # incompressible pixels: the JPEG header is then a small part of the file
        pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, format=fmt)
    else:
        Image.new("RGB", size, colour).save(path, format=fmt)


@pytest.fixture
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    save(root / "train/n03743016/a.JPEG", (64, 48), fmt="JPEG", noise=True)
    save(root / "train/n03743016/b.JPEG", (64, 48), fmt="JPEG")
    save(root / "train/n07697313/c.JPEG", (80, 80), fmt="JPEG")
    save(root / "val/n07697313/d.JPEG", (32, 32), fmt="JPEG")
    return root


def test_check_imagenet_folders(imagenet):
    r = report(imagenet)
    assert (r["format"], r["split"], r["images"], r["num_classes"]) == (
        "imagenet-folders",
        "train",
        3,
        1000,
    )
    assert r["class_counts"] == {"649": 2, "933": 1} and r["classes_present"] == 2
    assert r["image_sizes"] == {"64x48": 2, "80x80": 1} and r["ok"] and r["checked"] == "pixels"
    text = run(imagenet, "--split", "val").output
    assert "images:      1" in text and "cheeseburger (933)" in text and "status:      ok" in text


def test_check_missing_split_folder(imagenet):
    result = run(imagenet, "--split", "test")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --split: {imagenet}: missing split folder 'test/' (found train/, val/); "
        f"choose split 'train' or add {imagenet / 'test'}"
    )


def test_check_broken_folder_names_the_broken_file(imagenet):
    bad = imagenet / "train/n03743016/truncated.JPEG"
    good = (imagenet / "train/n03743016/a.JPEG").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # header intact, pixel data cut off
    result = run(imagenet)
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"Error: {bad}: unreadable image")
    # --all-errors keeps going: the good images are still counted and the bad one listed.
    result = run(imagenet, "--all-errors", "--json")
    assert result.exit_code == 1
    r = json.loads(result.stdout)
    assert not r["ok"] and len(r["errors"]) == 1 and str(bad) in r["errors"][0]
    assert r["class_counts"] == {"649": 2, "933": 1}
    # Headers alone look fine: the truncation only shows when the pixels are decoded.
    assert report(imagenet, "--headers-only")["image_sizes"] == {"64x48": 3, "80x80": 1}


def test_check_empty_folder(tmp_path):
    (tmp_path / "nothing").mkdir()
    result = run(tmp_path / "nothing")
    assert result.exit_code == 1 and "empty folder (no PNG/JPEG images" in result.output


def test_check_plain_folder_with_mixed_sizes(tmp_path):
    save(tmp_path / "real/1.png", (32, 32))
    save(tmp_path / "real/2.png", (16, 8))
    r = report(tmp_path / "real")
    assert r["format"] == "image-folder" and r["images"] == 2 and r["split"] is None
    assert r["image_sizes"] == {"32x32": 1, "16x8": 1}


def test_check_npz_batches(tmp_path):
    folder = tmp_path / "Imagenet32_val_npz"
    folder.mkdir()
    np.savez(
        folder / "val_data.npz", data=np.zeros((4, 3 * 32 * 32), np.uint8), labels=[1, 1, 650, 1000]
    )
    r = report(folder, "--split", "val")
    assert r["format"] == "downsampled-imagenet-npz" and r["images"] == 4
    assert r["class_counts"] == {"0": 2, "649": 1, "999": 1} and r["image_sizes"] == {"32x32": 4}


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"data": np.zeros((1, 12), np.uint8)}, "npz file has no 'labels' array"),
        ({"labels": [1]}, "npz file has no 'data' array"),
        (
            {"data": np.zeros((1, 12), np.uint8), "labels": [1001]},
            "row 0: label 1001 out of range 1..1000",
        ),
    ],
)
def test_check_broken_npz(tmp_path, arrays, message):
    np.savez(tmp_path / "batch.npz", **arrays)
    result = run(tmp_path / "batch.npz")
    assert (
        result.exit_code == 1
        and message in result.output
        and str(tmp_path / "batch.npz") in result.output
    )


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_check_idx_folder_and_label_out_of_range(tmp_path):
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 9, 9]))
    r = report(tmp_path, "--split", "test")
    assert r["format"] == "idx" and r["images"] == 3 and r["class_counts"] == {"0": 1, "9": 2}
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 12, 9]))
    result = run(tmp_path, "--split", "test")
    assert result.exit_code == 1
    assert (
        f"{tmp_path / 't10k-labels-idx1-ubyte.gz'} item 1: label 12 out of range 0..9"
        in result.output
    )


def test_check_real_fashion_mnist(fashion_mnist_dir):
    r = report(fashion_mnist_dir, "--split", "test")
    assert r["images"] == 10_000 and r["class_counts"] == {str(c): 1000 for c in range(10)}
    assert r["image_sizes"] == {"28x28": 10_000}


def test_check_shapes_and_unknown_name():
    r = report("shapes", "--length", "25", "--split", "val")
    assert (
        r["format"] == "shapes" and r["images"] == 25 and r["class_counts"]["0"] == 3
    )  # ids 0, 10, 20
    result = run("no_such_dataset")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: no_such_dataset: no such file or folder, and not a built-in "
        "dataset (shapes, fashion_mnist)"
    )

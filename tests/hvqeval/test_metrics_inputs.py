"""SET / REF arguments: sample sets, folders, arrays, datasets -- and bad input named in errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from metrics_helpers import rng_images, write_image_folder, write_sample_set
from PIL import Image

from hvqeval.errors import SampleSetError
from hvqeval.inputs import InputError, open_images


def save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_sample_set_items_are_uint8_chw_with_manifest_labels(small_sample_set):
    source = open_images(str(small_sample_set))
    manifest = json.loads((small_sample_set / "manifest.json").read_text())
    assert len(source) == 20 and source.image_size == 32
    image = source[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert source.class_ids.tolist() == [f["class_id"] for f in manifest["files"]]
    assert np.array_equal(
        image.permute(1, 2, 0).numpy(), np.asarray(Image.open(small_sample_set / "000000.png"))
    )


def test_class_folder_labels_and_flat_folder(tmp_path):
    classes = write_image_folder(tmp_path / "c", 12, size=8)
    source = open_images(str(classes))
    assert source.class_names == sorted(p.name for p in classes.iterdir())
    assert len(source) == 12 and source.class_ids is not None
    flat = write_image_folder(tmp_path / "f", 5, size=8, class_folders=False)
    assert open_images(str(flat)).class_ids is None


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        open_images(str(tmp_path / "empty"))


def test_non_image_file_is_named(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    save(folder / "a.png", rng_images(1, 8, 0)[0])
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="notes.txt is not an image file"):
        open_images(str(folder))


def test_corrupt_png_is_named(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    save(folder / "a.png", rng_images(1, 8, 0)[0])
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InputError, match=r"b\.png is not a readable image"):
        open_images(str(folder))


def test_truncated_png_is_named_when_decoded(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    save(folder / "a.png", rng_images(1, 16, 0)[0])
    data = (save(folder / "b.png", rng_images(1, 16, 1)[0])).read_bytes()
    (folder / "b.png").write_bytes(data[: len(data) // 2])  # header intact, pixel data cut
    source = open_images(str(folder))
    with pytest.raises(InputError, match=r"b\.png is not a readable image"):
        source[1]


def test_mixed_sizes_are_refused_unless_an_image_size_is_given(tmp_path, small_sample_set):
    folder = tmp_path / "imgs"
    folder.mkdir()
    save(folder / "a.png", rng_images(1, 8, 0)[0])
    save(folder / "b.png", rng_images(1, 12, 1)[0])
    with pytest.raises(InputError, match="different sizes.*--image-size"):
        open_images(str(folder)).require_uniform()
    resized = open_images(str(folder), image_size=6)
    assert resized[0].shape == resized[1].shape == (3, 6, 6)
    assert resized.preprocessing == "eval_transform(6)"


def test_mixed_sizes_name_the_files_with_their_class_folder(tmp_path):
    """The same file name is in every class folder: the message says which folder."""
    for name, size in (("megalith", 8), ("volcano", 12)):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        save(tmp_path / "imgs" / name / "0.png", rng_images(1, size, 0)[0])
    with pytest.raises(InputError) as refused:
        open_images(str(tmp_path / "imgs")).require_uniform()
    assert "megalith/0.png is 8x8, volcano/0.png is 12x12" in str(refused.value)


def test_grayscale_is_converted_and_counted_alpha_is_refused(tmp_path):
    folder = tmp_path / "grey"
    folder.mkdir()
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    save(folder / "g.png", grey)
    source = open_images(str(folder))
    image = source[0]
    assert image.shape == (3, 8, 8)
    assert all(np.array_equal(image[c].numpy(), grey) for c in range(3))  # replicated channel
    assert source.converted_to_rgb == 1
    alpha = tmp_path / "alpha"
    alpha.mkdir()
    save(alpha / "a.png", np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(InputError, match="a.png has image mode RGBA"):
        open_images(str(alpha))[0]


def test_sample_set_whose_manifest_does_not_match_its_files(tmp_path):
    path = write_sample_set(tmp_path / "s", 4, size=8)
    save(path / "extra.png", rng_images(1, 8, 0)[0])
    with pytest.raises(SampleSetError, match="extra.png not listed"):
        open_images(str(path))
    (path / "extra.png").unlink()
    (path / "000002.png").unlink()
    with pytest.raises(SampleSetError, match="000002.png but the file is missing"):
        open_images(str(path))


def test_sample_set_file_of_the_wrong_size(tmp_path):
    path = write_sample_set(tmp_path / "s", 3, size=8)
    save(path / "000001.png", rng_images(1, 10, 0)[0])
    source = open_images(str(path))
    with pytest.raises(
        SampleSetError, match="000001.png is 10x10 but the manifest says image_size 8"
    ):
        source[1]


def test_npz_and_npy_arrays(tmp_path):
    images = rng_images(6, 8, 3)
    np.savez(tmp_path / "a.npz", arr_0=images, labels=np.arange(6) % 2)
    source = open_images(str(tmp_path / "a.npz"))
    assert len(source) == 6 and source.class_ids.tolist() == [0, 1, 0, 1, 0, 1]
    assert np.array_equal(source[4].permute(1, 2, 0).numpy(), images[4])
    np.save(tmp_path / "b.npy", images)
    assert np.array_equal(
        open_images(str(tmp_path / "b.npy"))[2].permute(1, 2, 0).numpy(), images[2]
    )
    np.savez(tmp_path / "bad.npz", arr_0=images.astype(np.float32))
    with pytest.raises(InputError, match="must be uint8"):
        open_images(str(tmp_path / "bad.npz"))


def test_builtin_dataset_with_split_and_length():
    source = open_images("shapes:val:30", image_size=16)
    assert len(source) == 30 and source.image_size == 16 and source[0].shape == (3, 16, 16)
    assert source.class_ids.tolist()[:11] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert open_images("shapes:val:30", image_size=16).content_key == source.content_key
    assert open_images("shapes:test:30", image_size=16).content_key != source.content_key


def test_missing_path_is_reported(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_images(str(tmp_path / "nowhere"))


def test_fashion_mnist_reference_has_labels_and_grey_is_rgb(fashion_mnist_dir):
    source = open_images("fashion_mnist:test")
    assert (
        len(source) == 10000 and source.image_size == 28 and source.class_names[0] == "T-shirt/top"
    )
    assert source.class_ids.shape == (10000,) and set(source.class_ids.tolist()) == set(range(10))
    image = source[0]
    assert image.shape == (3, 28, 28) and torch.equal(image[0], image[2])  # grey replicated to RGB

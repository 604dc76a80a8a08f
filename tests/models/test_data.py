"""Datasets and preprocessing (models.data; paper Section 7)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from models.data import DataError, eval_transform, open_dataset, train_transform

# --------------------------------------------------------------------------- shapes


def test_shapes_items_are_uint8_chw_with_balanced_labels():
    ds = open_dataset("shapes", "train", length=20)
    assert (len(ds), ds.num_classes, ds.image_size, ds.format) == (20, 10, 32, "shapes")
    assert ds.class_names[0] == "ring" and len(set(ds.class_names)) == 10
    image, label = ds[13]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert label == 3  # class = index % 10
    assert [ds[i][1] for i in range(20)] == list(range(10)) * 2


@pytest.mark.parametrize("size", [8, 28, 64])
def test_shapes_any_image_size(size):
    ds = open_dataset("shapes", "val", image_size=size, length=3)
    assert ds.image_size == size and ds[2][0].shape == (3, size, size)


def test_shapes_is_deterministic_by_seed_and_splits_differ():
    a = open_dataset("shapes", "train", length=5, seed=7)
    b = open_dataset("shapes", "train", length=5, seed=7)
    c = open_dataset("shapes", "train", length=5, seed=8)
    val = open_dataset("shapes", "val", length=5, seed=7)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(5))
    # Same class, different seed / split -> different random instance.
    assert not any(torch.equal(a[i][0], c[i][0]) for i in range(5))
    assert not any(torch.equal(a[i][0], val[i][0]) for i in range(5))
    # Item i does not depend on the dataset length or on access order.
    longer = open_dataset("shapes", "train", length=500, seed=7)
    assert torch.equal(longer[4][0], a[4][0]) and torch.equal(a[-1][0], a[4][0])


def test_shapes_rejects_bad_arguments():
    with pytest.raises(DataError, match="splits train, val, test"):
        open_dataset("shapes", "holdout")
    with pytest.raises(DataError, match="seed"):
        open_dataset("shapes", seed=-1)
    with pytest.raises(IndexError):
        open_dataset("shapes", length=3)[3]


def _batch(ds, n):
    x, y = next(iter(DataLoader(ds, batch_size=n, shuffle=False)))
    return x.float(), y


def test_shapes_classes_differ_in_large_scale_structure_not_in_colour():
    train, y_train = _batch(open_dataset("shapes", "train", length=600), 600)
    test, y_test = _batch(open_dataset("shapes", "test", length=300), 300)

    def structure(x):
        # Grey 8x8 thumbnail, normalised per image. Foreground and background colours are
        # random, so the sign of the pattern is random too: the outer product z z^T keeps the
        # layout and drops the sign.
        g = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), 8).flatten(1)  # (N, 64)
        z = g - g.mean(1, keepdim=True)
        z = z / z.norm(dim=1, keepdim=True)
        return (z[:, :, None] * z[:, None, :]).flatten(1)  # (N, 4096)

    def mean_colour(x):
        return x.mean((2, 3))  # (N, 3)

    def nearest_class_mean_accuracy(feature):
        f_train, f_test = feature(train), feature(test)
        means = torch.stack([f_train[y_train == c].mean(0) for c in range(10)])
        return (torch.cdist(f_test, means).argmin(1) == y_test).float().mean().item()

    # Chance is 0.1. Measured: ~0.88 for the layout, ~0.1 for the colour.
    assert nearest_class_mean_accuracy(structure) > 0.6
    assert nearest_class_mean_accuracy(mean_colour) < 0.2


def test_shapes_batches_through_dataloader_with_workers():
    ds = open_dataset("shapes", "train", length=12)
    x, y = next(iter(DataLoader(ds, batch_size=6, num_workers=2)))
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 32, 32)
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.equal(x[5], ds[5][0])


def test_distributed_sampler_partitions_a_map_style_dataset():
    ds = open_dataset("shapes", "val", length=10)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        labels = [int(y) for _, ys in DataLoader(ds, batch_size=4, sampler=sampler) for y in ys]
        assert len(labels) == 5
        seen += list(sampler)
    assert sorted(seen) == list(range(10))


def test_dataset_with_transform_pickles_and_reports_transform_size():
    ds = open_dataset("shapes", "train", length=4, image_size=40, transform=train_transform(24))
    assert ds.image_size == 24 and ds[0][0].shape == (3, 24, 24)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.image_size == 24 and len(clone) == 4


# --------------------------------------------------------------------------- transforms


def _gradient_image(width, height):
    """RGB image whose red channel encodes x and green encodes y (0..255 across the image)."""
    xs = np.linspace(0, 255, width).round().astype(np.uint8)
    ys = np.linspace(0, 255, height).round().astype(np.uint8)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = xs[None, :]
    rgb[..., 1] = ys[:, None]
    return Image.fromarray(rgb)


@pytest.mark.parametrize("width,height", [(200, 100), (90, 160), (64, 64), (20, 10)])
def test_eval_transform_output_is_square_uint8(width, height):
    out = eval_transform(32)(_gradient_image(width, height))
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)


def test_eval_transform_centre_crop_picks_the_centre_and_keeps_aspect():
    # 200x100 -> shortest side 32 -> 64x32 (aspect kept) -> centre 32 columns = x in [16, 48)
    # of 64, i.e. the middle half of the original width; every row is kept.
    out = eval_transform(32)(_gradient_image(200, 100))
    red, green = out[0].float(), out[1].float()
    assert abs(red.mean().item() - 127.5) < 3  # centred horizontally
    assert (
        255 * 0.25 - 8 < red.min().item() and red.max().item() < 255 * 0.75 + 8
    )  # middle half only
    assert green[0].mean() < 8 and green[-1].mean() > 247  # full height kept
    # Aspect preserved: red grows across the 32 columns by about half the full range, the
    # same slope per pixel as green (full range over 32 rows) divided by two.
    red_slope = (red[:, -1] - red[:, 0]).mean().item() / 31
    green_slope = (green[-1] - green[0]).mean().item() / 31
    assert red_slope == pytest.approx(green_slope / 2, rel=0.1)


def test_eval_transform_accepts_tensor_grey_and_rgba_inputs():
    t = eval_transform(16)
    tensor = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    assert t(tensor).shape == (3, 16, 16)
    grey = t(Image.fromarray(np.full((20, 20), 77, np.uint8)))
    assert grey.shape == (3, 16, 16) and (grey == 77).all()
    rgba = t(Image.new("RGBA", (20, 30), (10, 20, 30, 0)))
    assert rgba[:, 0, 0].tolist() == [10, 20, 30]
    # A same-sized image passes through unchanged.
    assert torch.equal(t(tensor[:, :16, :16]), tensor[:, :16, :16])


def test_train_transform_random_crop_flip_and_jitter():
    image = _gradient_image(120, 60)  # -> 64x32 after rescale to 32
    outs = [
        train_transform(32, generator=torch.Generator().manual_seed(s))(image) for s in range(40)
    ]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs)
    # The crop position varies: the red value at the left edge differs between draws.
    assert len({int(o[0, :, 0].float().mean()) // 8 for o in outs}) > 3
    # Some draws are flipped: red decreasing from left to right.
    flipped = [o[0, 16, 0] > o[0, 16, -1] for o in outs]
    assert 5 < sum(flipped) < 35
    # Reproducible with a seeded generator.
    again = train_transform(32, generator=torch.Generator().manual_seed(3))(image)
    assert torch.equal(again, outs[3])


def test_train_transform_without_jitter_is_an_exact_crop():
    image = torch.randint(0, 256, (3, 32, 50), dtype=torch.uint8)
    t = train_transform(
        32,
        brightness=0,
        contrast=0,
        saturation=0,
        flip=False,
        generator=torch.Generator().manual_seed(0),
    )
    out = t(image)
    crops = [image[:, :, left : left + 32] for left in range(19)]
    assert any(torch.equal(out, c) for c in crops)


def test_train_transform_jitter_changes_colours_within_bounds():
    image = torch.full((3, 32, 32), 100, dtype=torch.uint8)
    image[0] = 180
    outs = torch.stack(
        [train_transform(32, generator=torch.Generator().manual_seed(s))(image) for s in range(30)]
    ).float()
    means = outs.mean((1, 2, 3))
    assert means.std() > 0.5  # brightness/contrast/saturation actually vary
    # 0.1 jitter on each of three multiplicative factors keeps the mean within ~35% of 126.7.
    assert ((means > 126.7 * 0.65) & (means < 126.7 * 1.35)).all()


# --------------------------------------------------------------------------- fixture writers


def write_image(path, size, colour, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


@pytest.fixture
def imagenet_root(tmp_path):
    """A tiny ImageNet in the standard layout: two train classes, one val class, JPEGs."""
    root = tmp_path / "imagenet"
    write_image(root / "train/n03743016/n03743016_1.JPEG", (40, 30), (200, 10, 10), "JPEG")
    write_image(root / "train/n03743016/n03743016_2.JPEG", (50, 50), (200, 10, 10), "JPEG")
    write_image(root / "train/n02510455/n02510455_7.JPEG", (30, 60), (10, 10, 200), "JPEG")
    write_image(
        root / "val/n02510455/ILSVRC2012_val_00000001.JPEG", (64, 48), (10, 10, 200), "JPEG"
    )
    return root


def write_npz_batch(path, images, labels, compressed=False):
    """images: uint8 (N, 3, S, S) -> published rows (N, 3*S*S) in CHW order; labels 1-based."""
    rows = images.reshape(len(images), -1)
    (np.savez_compressed if compressed else np.savez)(path, data=rows, labels=list(labels))


def write_idx(path, array):
    """IDX: magic 0x0000 08 NN, NN big-endian uint32 sizes, then the uint8 values; gzipped."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


# --------------------------------------------------------------------------- ImageNet folders


def test_imagenet_class_folders_map_synsets_to_the_1000_class_index(imagenet_root):
    ds = open_dataset(imagenet_root, "train")
    assert ds.format == "imagenet-folders" and ds.split == "train"
    assert len(ds) == 3 and ds.num_classes == 1000 and ds.image_size is None
    # Files sorted by class folder (n02510455 before n03743016), then by name.
    assert [ds[i][1] for i in range(3)] == [388, 649, 649]
    assert ds.class_names[649] == "megalith" and ds.class_names[388] == "giant panda"
    image, _ = ds[1]
    assert image.shape == (3, 30, 40) and image.dtype == torch.uint8
    assert (
        abs(int(image[0].float().mean()) - 200) <= 3
    )  # JPEG keeps the red fill within a few levels
    val = open_dataset(imagenet_root, "val", image_size=32)
    assert (
        len(val) == 1
        and val.image_size == 32
        and val[0][0].shape == (3, 32, 32)
        and val[0][1] == 388
    )


def test_imagenet_folders_with_transform_batch_through_dataloader(imagenet_root):
    ds = open_dataset(imagenet_root, "train", transform=train_transform(24))
    x, y = next(iter(DataLoader(ds, batch_size=3)))
    assert x.shape == (3, 3, 24, 24) and x.dtype == torch.uint8 and y.tolist() == [388, 649, 649]


def test_missing_split_folder_is_named(imagenet_root):
    with pytest.raises(DataError, match=r"missing split folder 'test/' \(found train/, val/\)"):
        open_dataset(imagenet_root, "test")


def test_folder_with_a_stray_non_synset_folder_is_rejected(imagenet_root):
    (imagenet_root / "train/holiday_photos").mkdir()
    write_image(imagenet_root / "train/holiday_photos/a.png", (8, 8), (0, 0, 0))
    with pytest.raises(
        DataError, match="holiday_photos: folder name is not one of the 1000 ImageNet"
    ):
        open_dataset(imagenet_root, "train")


def test_generic_class_folders_and_plain_folder(tmp_path):
    write_image(tmp_path / "pets/dog/1.png", (16, 16), (1, 2, 3))
    write_image(tmp_path / "pets/cat/1.jpg", (20, 10), (9, 9, 9))
    write_image(tmp_path / "pets/cat/2.PNG", (20, 10), (9, 9, 9))
    ds = open_dataset(tmp_path / "pets")
    assert ds.format == "class-folders" and ds.split is None
    assert ds.class_names == ["cat", "dog"] and [ds[i][1] for i in range(3)] == [0, 0, 1]
    assert ds[2][0][:, 0, 0].tolist() == [1, 2, 3]  # PNG is lossless
    write_image(tmp_path / "real/a.png", (12, 12), (5, 5, 5))
    (tmp_path / "real/manifest.json").write_text("{}")  # non-image files are ignored
    plain = open_dataset(tmp_path / "real")
    assert plain.format == "image-folder" and len(plain) == 1 and plain.class_names == ["real"]


def test_empty_folders_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "classes/a").mkdir(parents=True)
    with pytest.raises(DataError, match=r"classes/a: empty class folder"):
        open_dataset(tmp_path / "classes")


def test_corrupt_image_error_names_the_file(tmp_path):
    write_image(tmp_path / "broken/train/n03743016/good.JPEG", (8, 8), (0, 0, 0), "JPEG")
    bad = tmp_path / "broken/train/n03743016/bad.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    ds = open_dataset(tmp_path / "broken", "train")
    with pytest.raises(DataError, match=f"{bad}: unreadable image"):
        [ds[i] for i in range(len(ds))]


# --------------------------------------------------------------------------- npz batches


def test_npz_batches_chw_rows_and_one_based_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 3, 4, 4), dtype=np.uint8)
    folder = tmp_path / "Imagenet4_train_npz"
    folder.mkdir()
    write_npz_batch(folder / "train_data_batch_1.npz", images[:3], [1, 650, 1000])
    write_npz_batch(folder / "train_data_batch_10.npz", images[4:], [2])  # natural order: 1, 2, 10
    write_npz_batch(folder / "train_data_batch_2.npz", images[3:4], [389], compressed=True)
    ds = open_dataset(folder, "train")
    assert ds.format == "downsampled-imagenet-npz" and len(ds) == 5 and ds.image_size == 4
    assert [ds[i][1] for i in range(5)] == [0, 649, 999, 388, 1]  # label - 1
    for i in range(5):
        assert torch.equal(ds[i][0], torch.from_numpy(images[i]))  # row = R plane, G plane, B plane
    # Without the devkit class map, ids keep the published numbering and say so.
    assert ds.class_names[0] == "label 1"
    single = open_dataset(folder / "train_data_batch_2.npz")
    assert len(single) == 1 and single.split is None


def test_npz_class_map_converts_devkit_labels_to_the_class_index(tmp_path):
    from models.data import imagenet_wnid

    # A devkit-style map that numbers the classes in reverse index order: label L -> id 1000 - L.
    lines = [f"{imagenet_wnid(999 - k)} {k + 1} name_{k}" for k in range(1000)]
    (tmp_path / "map_clsloc.txt").write_text("\n".join(lines) + "\n")
    write_npz_batch(tmp_path / "val_data.npz", np.zeros((2, 3, 2, 2), np.uint8), [1, 351])
    ds = open_dataset(tmp_path, "val", class_map=tmp_path / "map_clsloc.txt")
    # label 1 -> 999 (toilet paper); label 351 -> 1000 - 351 = 649 (megalith)
    assert [ds[0][1], ds[1][1]] == [999, 649] and ds.class_names[649] == "megalith"


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "nolabels.npz", data=np.zeros((2, 12), np.uint8))
    with pytest.raises(DataError, match="npz file has no 'labels' array"):
        open_dataset(tmp_path / "nolabels.npz")
    write_npz_batch(tmp_path / "zero.npz", np.zeros((2, 3, 2, 2), np.uint8), [1, 0])
    with pytest.raises(DataError, match=r"zero.npz row 1: label 0 out of range 1..1000"):
        open_dataset(tmp_path / "zero.npz")
    np.savez(tmp_path / "odd.npz", data=np.zeros((2, 10), np.uint8), labels=[1, 2])
    with pytest.raises(DataError, match="not square RGB"):
        open_dataset(tmp_path / "odd.npz")
    folder = tmp_path / "batches"
    folder.mkdir()
    write_npz_batch(folder / "train_data_batch_1.npz", np.zeros((1, 3, 2, 2), np.uint8), [1])
    with pytest.raises(DataError, match="no npz batches for split 'val'"):
        open_dataset(folder, "val")


# --------------------------------------------------------------------------- IDX / Fashion-MNIST


def test_idx_gz_files_as_rgb_with_padding(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 251
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([7, 0, 3]))
    ds = open_dataset("fashion_mnist", "train", root=tmp_path)
    assert (len(ds), ds.image_size, ds.class_names[7]) == (3, 28, "sneaker")
    image, label = ds[2]
    assert label == 3 and image.shape == (3, 28, 28)
    assert all(
        torch.equal(image[c], torch.from_numpy(images[2].astype(np.uint8))) for c in range(3)
    )
    padded = open_dataset("fashion_mnist", "train", root=tmp_path, pad_to=32)
    p, _ = padded[2]
    assert p.shape == (3, 32, 32) and padded.image_size == 32
    assert torch.equal(p[:, 2:30, 2:30], image) and p[:, :2].sum() == 0 and p[:, :, 30:].sum() == 0
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte.gz"):
        open_dataset("fashion_mnist", "test", root=tmp_path)


def test_idx_truncated_file_is_reported(tmp_path):
    import gzip

    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2]))
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2, 4, 4)) + bytes(20))
    ds = open_dataset(tmp_path, "train")  # an IDX folder opened by path
    with pytest.raises(DataError, match="truncated"):
        ds[0]


def test_real_fashion_mnist(fashion_mnist_dir):
    test = open_dataset("fashion_mnist", "test", root=fashion_mnist_dir)
    assert len(test) == 10_000 and test.num_classes == 10 and test.image_size == 28
    image, label = test[0]
    # The first test item of Fashion-MNIST is an ankle boot (label 9), on a black background.
    assert label == 9 and test.class_names[label] == "ankle boot"
    assert (
        image.shape == (3, 28, 28) and torch.equal(image[0], image[2]) and image[:, 0, 0].sum() == 0
    )
    assert 30 < image.float().mean() < 200
    train = open_dataset("fashion_mnist", "train", root=fashion_mnist_dir, pad_to=32)
    assert len(train) == 60_000 and train[59_999][0].shape == (3, 32, 32)
    assert np.bincount(train.labels()).tolist() == [6000] * 10  # balanced, as published
    with pytest.raises(DataError, match="splits train and test"):
        open_dataset("fashion_mnist", "val", root=fashion_mnist_dir)


# --------------------------------------------------------------------------- ImageNet class table

# The 20 classes of the paper's Table 5 with the ids printed there.
TABLE5 = {
    649: "megalith",
    388: "giant panda",
    933: "cheeseburger",
    381: "Geoffroy's spider monkey",
    973: "coral reef",
    780: "schooner",
    259: "Pomeranian",
    127: "white stork",
    978: "seashore",
    327: "starfish",
    980: "volcano",
    453: "bookcase",
    948: "Granny Smith",
    323: "monarch butterfly",
    72: "yellow garden spider",
    407: "ambulance",
    567: "frying pan",
    147: "grey whale",
    292: "tiger",
    251: "Dalmatian",
}


def test_imagenet_class_table_matches_paper_table5():
    from models.data import class_label, imagenet_class_name, imagenet_class_names

    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    for class_id, name in TABLE5.items():
        assert imagenet_class_name(class_id) == name
    assert class_label(imagenet_class_name(649), 649) == "megalith (649)"


def test_imagenet_wnids_are_the_sorted_ilsvrc_synsets():
    import re

    from torchvision.datasets.imagenette import Imagenette

    from models.data import imagenet_class_id, imagenet_class_name, imagenet_wnid

    wnids = [imagenet_wnid(i) for i in range(1000)]
    # The 1000-class index numbers the synsets in sorted WordNet-id order.
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert (wnids[0], wnids[649], wnids[999]) == ("n01440764", "n03743016", "n15075141")
    assert imagenet_class_id("n02510455") == 388
    # Independent cross-check with two torchvision tables: Imagenette's (wnid -> names) and
    # the pretrained classifiers' category list (class id -> name) must agree with our ids.
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    for wnid, names in Imagenette._WNID_TO_CLASS.items():
        assert _IMAGENET_CATEGORIES[imagenet_class_id(wnid)] in names
    with pytest.raises(DataError, match="not one of the 1000"):
        imagenet_class_id("n99999999")
    with pytest.raises(DataError, match="0..999"):
        imagenet_class_name(1000)


# --------------------------------------------------------------------------- loaders and properties


def test_data_loader_is_seeded_and_uses_a_distributed_sampler_under_torch_distributed(tmp_path):
    import torch.distributed as dist

    from models.data import data_loader

    ds = open_dataset("shapes", "train", length=16, image_size=8)
    first = [y.tolist() for _, y in data_loader(ds, 4, seed=5)]
    again = [y.tolist() for _, y in data_loader(ds, 4, seed=5)]
    assert first == again and sorted(sum(first, [])) == sorted(i % 10 for i in range(16))
    assert sum(first, []) != [i % 10 for i in range(16)]  # shuffled
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        loader = data_loader(ds, 4, seed=5)
        assert isinstance(loader.sampler, DistributedSampler)
        x, y = next(iter(loader))
        assert x.shape == (4, 3, 8, 8) and x.dtype == torch.uint8
    finally:
        dist.destroy_process_group()


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 90), height=st.integers(1, 90), size=st.integers(1, 40))
def test_transforms_always_return_the_requested_square(width, height, size):
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    assert eval_transform(size)(image).shape == (3, size, size)
    out = train_transform(size, generator=torch.Generator().manual_seed(0))(image)
    assert out.shape == (3, size, size) and out.dtype == torch.uint8


@settings(max_examples=40, deadline=None)
@given(short=st.integers(1, 30), extra=st.integers(0, 30), tall=st.booleans())
def test_eval_transform_of_an_image_already_at_size_is_the_central_slice(short, extra, tall):
    # No rescale is needed when the short side already equals the size: the output must be
    # exactly the middle `short` columns (or rows), offset floor(extra / 2).
    h, w = (short + extra, short) if tall else (short, short + extra)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    out = eval_transform(short)(image)
    off = extra // 2
    expected = image[:, off : off + short, :] if tall else image[:, :, off : off + short]
    assert torch.equal(out, expected)

"""Datasets and preprocessing (models.data; paper Section 7)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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
    assert 255 * 0.25 - 8 < red.min().item() and red.max().item() < 255 * 0.75 + 8  # middle half only
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
    outs = [train_transform(32, generator=torch.Generator().manual_seed(s))(image) for s in range(40)]
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
    t = train_transform(32, brightness=0, contrast=0, saturation=0, flip=False,
                        generator=torch.Generator().manual_seed(0))
    out = t(image)
    crops = [image[:, :, left:left + 32] for left in range(19)]
    assert any(torch.equal(out, c) for c in crops)


def test_train_transform_jitter_changes_colours_within_bounds():
    image = torch.full((3, 32, 32), 100, dtype=torch.uint8)
    image[0] = 180
    outs = torch.stack([train_transform(32, generator=torch.Generator().manual_seed(s))(image)
                        for s in range(30)]).float()
    means = outs.mean((1, 2, 3))
    assert means.std() > 0.5  # brightness/contrast/saturation actually vary
    # 0.1 jitter on each of three multiplicative factors keeps the mean within ~35% of 126.7.
    assert ((means > 126.7 * 0.65) & (means < 126.7 * 1.35)).all()

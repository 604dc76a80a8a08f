"""Nearest neighbours (Appendix H): exact k-NN, the VGG-16 fc7 / ResNet-50 avgpool taps, the command."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner
from metrics_helpers import write_image_folder, write_sample_set
from PIL import Image
from seeded_weights import write_seeded_resnet50, write_seeded_vgg16
from sklearn.neighbors import NearestNeighbors
from torchvision.models.feature_extraction import create_feature_extractor

from hvqeval.cli import cli
from hvqeval.metrics.features import build_network, resolve_extractor
from hvqeval.metrics.neighbours import exact_knn
from hvqeval.metrics.resnet import resnet50_preprocess


@pytest.mark.parametrize("chunk", [37, 1000])
def test_exact_knn_equals_sklearn_brute_force(chunk):
    rng = np.random.default_rng(0)
    database = rng.normal(size=(500, 24)).astype(np.float32)
    queries = rng.normal(size=(30, 24)).astype(np.float32)
    indices, distances = exact_knn(queries, database, 7, chunk=chunk)
    brute = NearestNeighbors(n_neighbors=7, algorithm="brute").fit(database.astype(np.float64))
    expected_d, expected_i = brute.kneighbors(queries.astype(np.float64))
    assert np.array_equal(indices, expected_i)
    assert np.allclose(distances, expected_d, rtol=1e-9, atol=1e-9)


def test_exact_knn_on_uint8_pixels_with_duplicates():
    rng = np.random.default_rng(1)
    database = rng.integers(0, 256, size=(200, 48), dtype=np.uint8)
    database[50] = database[10]  # an exact tie: lower index first
    queries = database[[10, 3]].copy()
    indices, distances = exact_knn(queries, database, 3, chunk=64)
    assert indices[0, :2].tolist() == [10, 50] and distances[0, :2].tolist() == [0.0, 0.0]
    expected = NearestNeighbors(n_neighbors=3, algorithm="brute").fit(database.astype(np.float64))
    assert np.allclose(distances, expected.kneighbors(queries.astype(np.float64))[0])


@pytest.mark.slow
def test_vgg16_fc7_tap_equals_torchvision_classifier_relu(tmp_path):
    weights = write_seeded_vgg16(tmp_path / "vgg16.pth", seed=0)
    extractor = resolve_extractor("vgg16", weights)
    network = build_network(extractor, ["fc2_relu"], "cpu")
    images = torch.randint(
        0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        (ours,) = network(images)  # (2, 4096)
        model = torchvision.models.vgg16()
        model.load_state_dict(torch.load(weights, weights_only=True))
        tap = create_feature_extractor(model.eval(), {"classifier.4": "fc7"})  # fc7 after its ReLU
        theirs = tap(resnet50_preprocess(images))["fc7"]  # same resize + ImageNet normalisation
    del model
    assert ours.shape == (2, 4096)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    assert (ours >= 0).all() and ours.abs().sum() > 0


@pytest.mark.slow
def test_resnet50_avgpool_tap_equals_torchvision_flatten(tmp_path):
    weights = write_seeded_resnet50(tmp_path / "resnet50.pth", seed=0)
    extractor = resolve_extractor("resnet50", weights)
    network = build_network(extractor, ["avgpool"], "cpu")
    images = torch.randint(
        0, 256, (2, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        (ours,) = network(images)  # (2, 2048)
        model = torchvision.models.resnet50()
        model.load_state_dict(torch.load(weights, weights_only=True))
        tap = create_feature_extractor(model.eval(), {"flatten": "avgpool"})
        theirs = tap(resnet50_preprocess(images))["avgpool"]
    assert ours.shape == (2, 2048)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours[0], ours[1])


def test_weights_are_checked_by_sha256(tmp_path):
    weights = tmp_path / "resnet50.pth"
    torch.save({"x": torch.zeros(1)}, weights)
    from hvqeval.errors import WeightsError

    with pytest.raises(WeightsError, match="expected 00ff"):
        resolve_extractor("resnet50", weights, expected_sha256="00ff")
    named = tmp_path / "resnet50-0676ba61.pth"  # the published file's name, wrong content
    named.write_bytes(weights.read_bytes())
    with pytest.raises(WeightsError, match="named like the published"):
        resolve_extractor("resnet50", named)


def test_neighbours_command_pixel_space(tmp_path):
    dataset = write_image_folder(tmp_path / "train", 30, size=16, class_folders=False)
    samples = write_sample_set(tmp_path / "s", 3, size=16)
    # Make sample 1 an exact copy of dataset image 7: its first neighbour must be it, at distance 0.
    copy = np.asarray(Image.open(sorted(dataset.iterdir())[7]))
    Image.fromarray(copy).save(samples / "000001.png")
    runner = CliRunner()
    args = [
        "neighbours",
        "--samples",
        str(samples),
        "--dataset",
        str(dataset),
        "--space",
        "pixel",
        "--k",
        "4",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    result = runner.invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "computed and cached" in result.stderr
    with open(tmp_path / "out" / "neighbours.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 4
    first = [r for r in rows if r["sample"].endswith("000001.png") and r["rank"] == "1"][0]
    assert first["dataset_index"] == "7" and float(first["distance"]) == 0.0
    assert first["dataset_path"].endswith("00007.png")
    for sample in {r["sample"] for r in rows}:
        ranked = [float(r["distance"]) for r in rows if r["sample"] == sample]
        assert ranked == sorted(ranked)
    figures = sorted((tmp_path / "out").glob("sample_*_pixel.png"))
    assert len(figures) == 3
    figure = Image.open(figures[0])
    # 1 + 4 tiles -> ceil(sqrt(5)) = 3 columns x 2 rows of 16 px tiles enlarged x6 (96 px) with 4 px gaps:
    # 3 * (96 + 4) + 4 = 304 wide, 2 * (96 + 4) + 4 = 204 high; the sample is the top-left tile.
    assert figure.size == (304, 204)
    top_left = np.asarray(figure)[4:100, 4:100][::6, ::6]
    assert np.array_equal(top_left, np.asarray(Image.open(samples / "000000.png")))
    again = runner.invoke(cli, args, catch_exceptions=False)
    assert "reused" in again.stderr
    # a run over fewer samples leaves only its own figures beside its CSV (figures of another
    # space stay: they are not this run's to judge)
    other_space = tmp_path / "out" / "sample_000002_vgg16-fc7.png"
    other_space.write_bytes(b"kept")
    fewer = runner.invoke(cli, [*args, "--limit", "1"], catch_exceptions=False)
    assert fewer.exit_code == 0, fewer.output
    figures = sorted(p.name for p in (tmp_path / "out").glob("sample_*_pixel.png"))
    assert figures == ["sample_000000_pixel.png"] and other_space.read_bytes() == b"kept"
    with open(tmp_path / "out" / "neighbours.csv") as fh:
        assert {r["sample"] for r in csv.DictReader(fh)} == {f"{samples}/000000.png"}

"""hvqeval's IS / FID / KID equal torch-fidelity's on the same inputs; the reference cache works."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch_fidelity
from metrics_helpers import scipy_fid, write_image_folder, write_sample_set
from PIL import Image

import hvqeval.metrics.evaluation as evaluation_module
from hvqeval.errors import HvqevalError
from hvqeval.inputs import open_images
from hvqeval.metrics import fidelity
from hvqeval.metrics.evaluation import EvalSettings, evaluate
from hvqeval.metrics.features import register_with_torch_fidelity


def by_metric(rows):
    return {r.metric: r for r in rows}


def test_domain_extractor_is_fid_kid_equal_torch_fidelity_and_scipy(tmp_path, domain_weights):
    samples_path = write_sample_set(tmp_path / "s", 60, size=16)
    reference_path = write_image_folder(tmp_path / "r", 50, size=16)
    settings = EvalSettings(
        metrics=("isc", "fid", "kid"),
        extractor="domain",
        weights=str(domain_weights),
        splits=3,
        seed=2,
        kid_subsets=5,
        kid_subset_size=40,
        batch_size=16,
        progress=False,
    )
    rows = by_metric(evaluate(str(samples_path), str(reference_path), settings).rows)
    assert rows["fid"].feature_extractor == "domain:shapes"
    assert rows["isc"].value > 1.05 and rows["fid"].value > 1e-2  # non-degenerate features

    register_with_torch_fidelity()
    samples, reference = open_images(str(samples_path)), open_images(str(reference_path))
    direct = torch_fidelity.calculate_metrics(
        input1=samples,
        input2=reference,
        isc=True,
        fid=True,
        kid=True,
        cuda=False,
        batch_size=16,
        feature_extractor="hvqeval-domain",
        feature_extractor_weights_path=str(domain_weights),
        feature_layer_isc="logits",
        feature_layer_fid="pool",
        feature_layer_kid="pool",
        isc_splits=3,
        rng_seed=2,
        kid_subsets=5,
        kid_subset_size=40,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
    )
    # n = 60 > D = 24: both FID paths are well conditioned and agree to round-off.
    assert rows["fid"].value == pytest.approx(direct["frechet_inception_distance"], rel=1e-6)
    assert rows["isc"].value == pytest.approx(direct["inception_score_mean"], rel=1e-9)
    assert rows["kid"].value == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-6)

    # ... and equal an independent scipy FID on the same features.
    from hvqeval.metrics.domain import load_weights

    net = load_weights(domain_weights).build()
    with torch.no_grad():
        f1 = net.features(torch.stack([samples[i] for i in range(len(samples))]))[0].numpy()
        f2 = net.features(torch.stack([reference[i] for i in range(len(reference))]))[0].numpy()
    assert rows["fid"].value == pytest.approx(
        scipy_fid(f1.astype(np.float64), f2.astype(np.float64)), rel=1e-5
    )


def test_rows_carry_every_setting(tmp_path, domain_weights, small_sample_set):
    reference = write_image_folder(tmp_path / "r", 30, size=32)
    settings = EvalSettings(
        metrics=("isc", "fid", "prc"),
        extractor="domain",
        weights=str(domain_weights),
        splits=2,
        per_class=False,
        progress=False,
    )
    rows = evaluate(str(small_sample_set), str(reference), settings).rows
    row = rows[0].to_dict()
    manifest = json.loads((small_sample_set / "manifest.json").read_text())
    assert row["model"] == manifest["model"] == "tiny_ff"
    assert (
        row["n"] == 20 and row["n_reference"] == 30 and row["seed"] == 2020
    )  # torch-fidelity's default
    assert len(row["weights_sha256"]) == 64 and row["tf32"] is False
    assert set(row["versions"]) >= {"hvqeval", "torch", "torch_fidelity"}
    assert row["resize"].startswith("samples=none; reference=none")
    assert {r.metric for r in rows} == {"isc", "fid", "precision", "recall"}
    assert all(0.0 <= r.value <= 1.0 for r in rows if r.metric in ("precision", "recall"))


def test_per_class_fid_and_mean(tmp_path, domain_weights):
    samples = write_sample_set(tmp_path / "s", 40, size=16)  # 4 per class
    reference = write_image_folder(tmp_path / "r", 40, size=16)  # class folders c0..c9
    settings = EvalSettings(
        metrics=("fid",),
        extractor="domain",
        weights=str(domain_weights),
        per_class=True,
        progress=False,
    )
    rows = evaluate(str(samples), str(reference), settings).rows
    per_class = [r for r in rows if r.metric == "fid_class"]
    assert sorted(r.extra["class_id"] for r in per_class) == list(range(10))
    assert all(r.n == 4 and r.n_reference == 4 for r in per_class)  # the class's, not all 40
    mean = next(r for r in rows if r.metric == "fid_class_mean")
    assert mean.value == pytest.approx(np.mean([r.value for r in per_class]))
    # Class-conditional FID of a class against itself would be 0; different classes differ.
    assert all(r.value > 0 for r in per_class)


def test_reference_cache_hit_and_invalidation(tmp_path, domain_weights, monkeypatch):
    samples = write_sample_set(tmp_path / "s", 20, size=16)
    reference = write_image_folder(tmp_path / "r", 20, size=16, class_folders=False)
    extracted = []
    real = evaluation_module.images_to_features

    def counting(source, *args, **kwargs):  # the real extraction, recording which side ran
        extracted.append(kwargs.get("desc"))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "images_to_features", counting)
    settings = EvalSettings(
        metrics=("fid",),
        extractor="domain",
        weights=str(domain_weights),
        cache_dir=str(tmp_path / "cache"),
        progress=False,
    )
    first = evaluate(str(samples), str(reference), settings)
    assert first.reference_cache == "miss" and extracted == [
        "sample features",
        "reference features",
    ]

    extracted.clear()
    second = evaluate(str(samples), str(reference), settings)
    assert second.reference_cache == "hit" and extracted == [
        "sample features"
    ]  # only the sample side
    assert second.rows[0].value == pytest.approx(first.rows[0].value, rel=1e-12)

    # Changing one reference image (content, size and mtime) invalidates the entry.
    target = sorted(reference.iterdir())[0]
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(target)
    os.utime(target, ns=(1, 1))
    extracted.clear()
    third = evaluate(str(samples), str(reference), settings)
    assert third.reference_cache == "miss" and extracted == [
        "sample features",
        "reference features",
    ]
    assert third.rows[0].value != pytest.approx(first.rows[0].value, rel=1e-9)

    # Another preprocessing (here an explicit --image-size) is another key, too.
    extracted.clear()
    resized = evaluate(
        str(samples),
        str(reference),
        EvalSettings(
            metrics=("fid",),
            extractor="domain",
            weights=str(domain_weights),
            cache_dir=str(tmp_path / "cache"),
            image_size=12,
            progress=False,
        ),
    )
    assert resized.reference_cache == "miss"


def test_metric_argument_errors(small_sample_set, domain_weights):
    with pytest.raises(HvqevalError, match="need"):
        evaluate(
            str(small_sample_set),
            None,
            EvalSettings(metrics=("fid",), extractor="domain", weights=str(domain_weights)),
        )
    with pytest.raises(HvqevalError, match="unknown metric"):
        EvalSettings(metrics=("fidd",))
    with pytest.raises(HvqevalError, match="splits needs at least 30"):
        evaluate(
            str(small_sample_set),
            None,
            EvalSettings(
                metrics=("isc",), extractor="domain", splits=30, weights=str(domain_weights)
            ),
        )


def test_isc_only_needs_no_reference(small_sample_set, domain_weights):
    rows = evaluate(
        str(small_sample_set),
        None,
        EvalSettings(
            metrics=("isc",),
            extractor="domain",
            splits=2,
            weights=str(domain_weights),
            progress=False,
        ),
    ).rows
    assert [r.metric for r in rows] == ["isc"] and rows[0].reference is None
    assert rows[0].value >= 1.0


def test_features_are_the_ones_torch_fidelity_extracts(small_sample_set, domain_weights, tmp_path):
    from torch_fidelity.utils import get_featuresdict_from_dataset

    from hvqeval.metrics.features import build_network, images_to_features, resolve_extractor

    extractor = resolve_extractor("domain", domain_weights)
    network = build_network(extractor, ["pool", "logits"], "cpu")
    source = open_images(str(small_sample_set))
    ours = images_to_features(
        source, network, ["pool", "logits"], tmp_path / "f", batch_size=8, progress=False
    )
    theirs = get_featuresdict_from_dataset(source, network, 8, False, True, False)
    for layer in ("pool", "logits"):
        assert np.array_equal(np.asarray(ours[layer]), theirs[layer].numpy())
    assert fidelity.features_to_statistics(ours["pool"]).n == 20


def test_fid_of_a_sample_set_against_itself_is_zero(small_sample_set, domain_weights):
    settings = EvalSettings(
        metrics=("fid",),
        extractor="domain",
        weights=str(domain_weights),
        use_cache=False,
        progress=False,
    )
    (row,) = evaluate(str(small_sample_set), str(small_sample_set), settings).rows
    assert abs(row.value) < 1e-6 and row.reference == str(small_sample_set)

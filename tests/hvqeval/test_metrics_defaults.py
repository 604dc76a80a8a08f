"""`hvqeval metrics` at its defaults gives torch-fidelity's numbers at its defaults.

A user who compares with published torch-fidelity numbers must get the same IS, KID,
precision/recall and FID without passing a seed or split count. The defaults are checked
against ``torch_fidelity.defaults.DEFAULTS`` and the numbers against
``torch_fidelity.calculate_metrics`` on the same image folders and the same weights file:
IS, KID and PRC to 1e-6 relative; FID to 1e-5 relative when n > D (both covariances have
full rank). Below that, hvqeval's symmetric square root deliberately differs and the row
says so.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch
import torch_fidelity
from click.testing import CliRunner
from metrics_helpers import write_image_folder
from torch_fidelity.defaults import DEFAULTS

from hvqeval.cli import cli
from hvqeval.commands.metrics import command as metrics_command
from hvqeval.metrics import fidelity
from hvqeval.metrics.domain import DomainClassifier, save_weights
from hvqeval.metrics.evaluation import EvalSettings
from hvqeval.metrics.features import register_with_torch_fidelity

# hvqeval name -> torch-fidelity's key in DEFAULTS
SAME_DEFAULTS = {
    "seed": "rng_seed",
    "splits": "isc_splits",
    "kid_subsets": "kid_subsets",
    "kid_subset_size": "kid_subset_size",
    "prc_neighbourhood": "prc_neighborhood",
    "batch_size": "batch_size",
}


def metrics_json(args, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "metrics",
            *args,
            "--results",
            str(tmp_path / "results.jsonl"),
            "--device",
            "cpu",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return {row["metric"]: row for row in json.loads(result.stdout)}


def test_every_shared_default_equals_torch_fidelity():
    settings = EvalSettings()
    cli_defaults = {p.name: p.default for p in metrics_command.params}
    for ours, theirs in SAME_DEFAULTS.items():
        assert getattr(settings, ours) == DEFAULTS[theirs], ours
        assert cli_defaults[ours] == DEFAULTS[theirs], f"--{ours.replace('_', '-')}"
    assert DEFAULTS["samples_shuffle"] is True  # IS splits of shuffled samples, as hvqeval does
    for function, names in (
        (fidelity.logits_to_isc, {"seed": "rng_seed", "splits": "isc_splits"}),
        (
            fidelity.features_to_kid,
            {"seed": "rng_seed", "subsets": "kid_subsets", "subset_size": "kid_subset_size"},
        ),
        (
            fidelity.features_to_prc,
            {"neighbourhood": "prc_neighborhood", "batch_size": "prc_batch_size"},
        ),
    ):
        parameters = inspect.signature(function).parameters
        for ours, theirs in names.items():
            assert parameters[ours].default == DEFAULTS[theirs], f"{function.__name__}({ours})"


@pytest.mark.slow
def test_inception_is_kid_prc_at_defaults_equal_calculate_metrics(tmp_path, inception_weights):
    # 12 + 12 images: InceptionV3 runs at 299x299 whatever the input size (~0.2-0.5 s an image
    # on two CPU cores). KID's subset size is the one setting that must shrink to fit 12 images;
    # it is passed to both sides alike.
    samples = write_image_folder(tmp_path / "samples", 12, size=16, seed=3, class_folders=False)
    reference = write_image_folder(tmp_path / "reference", 12, size=16, seed=4, class_folders=False)
    rows = metrics_json(
        [
            "--samples",
            str(samples),
            "--reference",
            str(reference),
            "--metrics",
            "isc,fid,kid,prc",
            "--inception-weights",
            str(inception_weights),
            "--kid-subset-size",
            "12",
        ],
        tmp_path,
    )
    # torch-fidelity computes PRC with VGG-16 unless told otherwise (and refuses two extractors in
    # one call), so it is given the InceptionV3 hvqeval uses for every metric; the rows say so.
    direct = torch_fidelity.calculate_metrics(
        input1=str(samples),
        input2=str(reference),
        isc=True,
        fid=True,
        kid=True,
        prc=True,
        cuda=False,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(inception_weights),
        kid_subset_size=12,
        cache=False,
        verbose=False,
    )
    assert rows["isc"]["seed"] == 2020 and rows["isc"]["splits"] == 10
    assert rows["isc"]["value"] == pytest.approx(direct["inception_score_mean"], rel=1e-6)
    assert rows["isc"]["std"] == pytest.approx(direct["inception_score_std"], rel=1e-6)
    assert rows["kid"]["value"] == pytest.approx(direct["kernel_inception_distance_mean"], rel=1e-6)
    assert rows["kid"]["std"] == pytest.approx(direct["kernel_inception_distance_std"], rel=1e-6)
    assert rows["kid"]["extra"]["subsets"] == 100
    assert rows["precision"]["value"] == pytest.approx(direct["precision"], rel=1e-6)
    assert rows["recall"]["value"] == pytest.approx(direct["recall"], rel=1e-6)
    assert rows["precision"]["extra"]["neighbourhood"] == 3
    assert "VGG-16" in rows["precision"]["extra"]["differs_from_torch_fidelity"]
    assert (
        rows["isc"]["value"] > 1.05
    )  # the seeded network separates images (IS = 1 would hide bugs)
    # n = 12 <= D = 2048: the deliberate difference is named in the row.
    fid = rows["fid"]["extra"]
    assert fid["fid_sqrt"] == fidelity.FID_SQRT and fid["feature_dim"] == 2048
    assert "singular" in fid["differs_from_torch_fidelity"]


@pytest.fixture(scope="module")
def wide_domain_weights(tmp_path_factory):
    """A seeded domain classifier with a 2048-d pooled feature (InceptionV3's width), cheap enough
    to push n > 2048 images through it on a CPU: inputs are resized to 4x4, so the 2048-channel
    convolutions run on a 1x1 map."""
    torch.manual_seed(1)
    model = DomainClassifier(10, image_size=4, widths=(16, 32, 2048))
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
            module.running_mean.normal_(0, 0.1)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    path = tmp_path_factory.mktemp("weights") / "domain-2048.pt"
    save_weights(path, model, dataset="shapes", class_names=[str(i) for i in range(10)], meta={})
    return path


@pytest.mark.slow
def test_fid_above_2048_equals_calculate_metrics(tmp_path, wide_domain_weights):
    n = 2100  # > D = 2048, so both covariances have full rank
    samples = write_image_folder(tmp_path / "samples", n, size=8, seed=5, class_folders=False)
    reference = write_image_folder(tmp_path / "reference", n, size=8, seed=6, class_folders=False)
    rows = metrics_json(
        [
            "--samples",
            str(samples),
            "--reference",
            str(reference),
            "--metrics",
            "fid",
            "--extractor",
            "domain",
            "--weights",
            str(wide_domain_weights),
        ],
        tmp_path,
    )
    register_with_torch_fidelity()
    direct = torch_fidelity.calculate_metrics(
        input1=str(samples),
        input2=str(reference),
        fid=True,
        cuda=False,
        feature_extractor="hvqeval-domain",
        feature_extractor_weights_path=str(wide_domain_weights),
        feature_layer_fid="pool",
        cache=False,
        verbose=False,
    )
    assert rows["fid"]["extra"]["feature_dim"] == 2048 and rows["fid"]["n"] == n
    assert rows["fid"]["value"] > 0
    assert rows["fid"]["value"] == pytest.approx(direct["frechet_inception_distance"], rel=1e-5)
    assert rows["fid"]["extra"]["differs_from_torch_fidelity"] is None

"""Fixtures of the evaluation-suite tests: seeded weights of the real networks, small inputs.

Everything is offline: InceptionV3 runs torch-fidelity's real graph with a weights file of
the right architecture filled with seeded values (written once per session), and the
domain classifier gets a seeded, untrained weights file. Image counts stay small because
InceptionV3 on two CPU cores takes ~0.15 s per image.
"""

from __future__ import annotations

import pytest
import torch
from metrics_helpers import write_image_folder, write_sample_set
from seeded_weights import write_seeded_inception

from hvqeval.metrics.domain import DomainClassifier, save_weights

SHAPES_CLASSES = 10


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    return write_seeded_inception(
        tmp_path_factory.mktemp("weights") / "inception-seeded.pth", seed=0
    )


@pytest.fixture(scope="session")
def domain_weights(tmp_path_factory):
    """An untrained (seeded) domain classifier at 16x16 with a 24-d pooled feature."""
    torch.manual_seed(0)
    model = DomainClassifier(SHAPES_CLASSES, image_size=16, widths=(8, 16, 24))
    # Non-trivial BN statistics so features differ between images.
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):  # He init keeps the scale through 6 layers
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
            module.running_mean.normal_(0, 0.1)
    torch.nn.init.normal_(model.head.weight, std=20.0)  # logits that differ between images: IS > 1
    path = tmp_path_factory.mktemp("weights") / "domain.pt"
    save_weights(
        path,
        model,
        dataset="shapes",
        class_names=[str(i) for i in range(SHAPES_CLASSES)],
        meta={"val_accuracy": None},
    )
    return path


@pytest.fixture(scope="session")
def small_sample_set(tmp_path_factory):
    return write_sample_set(tmp_path_factory.mktemp("samples") / "tiny_ff", 20)


@pytest.fixture(scope="session")
def small_reference(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("reference") / "ref", 20)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own reference cache and no Inception weights from the environment."""
    monkeypatch.setenv("HVQEVAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HVQEVAL_INCEPTION_WEIGHTS", raising=False)

"""The domain feature extractor: trained by `hvqeval features train`, then used offline by metrics."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from hvqeval.cli import cli
from hvqeval.metrics.domain import load_weights
from hvqeval.metrics.features import resolve_extractor
from hvqeval.results import ResultsStore


def test_train_writes_weights_that_metrics_use_offline(tmp_path, small_sample_set):
    out = tmp_path / "weights" / "shapes_classifier.pt"
    runner = CliRunner()
    trained = runner.invoke(
        cli,
        [
            "features",
            "train",
            "--data",
            "shapes",
            "--out",
            str(out),
            "--steps",
            "8",
            "--batch-size",
            "16",
            "--image-size",
            "16",
            "--widths",
            "4,8,8",
            "--val-size",
            "40",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert (
        summary["steps"] == 8
        and summary["val_size"] == 40
        and 0.0 <= summary["val_accuracy"] <= 1.0
    )
    weights = load_weights(out)
    assert (
        weights.dataset == "shapes" and weights.image_size == 16 and len(weights.class_names) == 10
    )
    assert weights.class_names[0] == "ring"
    # The file rebuilds the network it was written from (10 classes at 16x16).
    net = weights.build()
    images = torch.stack([torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8) for _ in range(4)])
    assert net(images).shape == (4, 10)

    extractor = resolve_extractor("domain", out)
    assert extractor.label == "domain:shapes" and extractor.weights_sha256 == summary["sha256"]

    results = tmp_path / "results.jsonl"
    run = runner.invoke(
        cli,
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--reference",
            "shapes:val:30",
            "--extractor",
            "domain",
            "--weights",
            str(out),
            "--splits",
            "2",
            "--results",
            str(results),
        ],
        catch_exceptions=False,
    )
    assert run.exit_code == 0, run.output
    rows = ResultsStore(results).read()
    assert {r["metric"] for r in rows} == {"isc", "fid"}
    assert all(
        r["feature_extractor"] == "domain:shapes" and r["weights_sha256"] == summary["sha256"]
        for r in rows
    )
    assert rows[0]["resize"].startswith("samples=none; reference=shapes-render(32)")


def test_domain_extractor_without_weights_says_how_to_train(tmp_path, small_sample_set):
    result = CliRunner().invoke(
        cli,
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--metrics",
            "isc",
            "--extractor",
            "domain",
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert result.exit_code == 1 and "hvqeval features train --data shapes" in result.stderr
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": 1}, bogus)
    result = CliRunner().invoke(
        cli,
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--metrics",
            "isc",
            "--extractor",
            "domain",
            "--weights",
            str(bogus),
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert result.exit_code == 1 and "not a domain classifier" in result.stderr

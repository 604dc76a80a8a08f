"""``hvqeval nll``: per-term joint NLL in bits/dim, standard errors, results rows, errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hvqeval.cli import cli
from hvqeval.nll import nats_to_bits_per_dim, summarise

sys.path.insert(0, str(Path(__file__).parent))
from run_helpers import IMAGE_SIZE, build_tiny_run, copy_without, one_thread, tiny_card  # noqa: E402,F401

DIMS = IMAGE_SIZE * IMAGE_SIZE * 3  # 8 x 8 x 3 = 192 pixel sub-dimensions


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.getbasetemp())


def _nll(*args):
    return CliRunner().invoke(cli, ["nll", *map(str, args)])


def test_bits_per_dim_normalisation_by_hand():
    ln2 = math.log(2)
    assert nats_to_bits_per_dim(DIMS * ln2, DIMS) == pytest.approx(1.0)
    # Two images: level1 = 2 and 4 bits/dim, prior = 1 bit/dim each (nats = bits * 192 * ln 2).
    result = summarise(
        {"level1": np.array([2, 4]) * DIMS * ln2, "prior": np.array([1, 1]) * DIMS * ln2},
        tiny_card(),
    )
    level1, prior = result.term("level1"), result.term("prior")
    # level1: mean 3; sample std of (2, 4) = sqrt(2) -> standard error sqrt(2) / sqrt(2) = 1
    assert (level1.bpd, level1.stderr) == (pytest.approx(3.0), pytest.approx(1.0))
    assert (prior.bpd, prior.stderr) == (pytest.approx(1.0), pytest.approx(0.0))
    # total per image (3, 5): mean 4, standard error 1
    assert (result.total.bpd, result.total.stderr, result.n, result.dims) == (
        pytest.approx(4.0),
        pytest.approx(1.0),
        2,
        DIMS,
    )
    # The prior models 2 x 2 x 1 codes: 1 bit per pixel sub-dim = 192 bits / 4 codes = 48 bits per code.
    assert prior.bits_per_own_dim == pytest.approx(48.0)


def test_terms_match_hierarchy_nll_terms_and_sum_to_the_total(run, tmp_path):
    from models import load_run, open_dataset

    results = tmp_path / "results.jsonl"
    out = _nll(
        "--run",
        run,
        "--data",
        "shapes",
        "--limit",
        5,
        "--batch-size",
        5,
        "--json",
        "--results",
        results,
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    # By hand: the first five validation images in one batch (as above: an untrained codebook has
    # near-ties that batch-size-dependent float rounding could flip), nats -> bits / 192.
    dataset = open_dataset("shapes", "val", image_size=IMAGE_SIZE)
    x = torch.stack([dataset[i][0] for i in range(5)])  # (5, 3, 8, 8)
    y = torch.tensor([dataset[i][1] for i in range(5)])
    terms = load_run(run).nll_terms(x, y)
    per_image = {k: v.double().numpy() / (DIMS * math.log(2)) for k, v in terms.items()}
    assert (
        set(report["terms"]) == {"level1", "prior"} and report["n"] == 5 and report["dims"] == DIMS
    )
    for name, values in per_image.items():
        assert report["terms"][name]["bpd"] == pytest.approx(values.mean(), rel=1e-6)
        assert report["terms"][name]["stderr"] == pytest.approx(
            values.std(ddof=1) / math.sqrt(5), rel=1e-3
        )
    total = per_image["level1"] + per_image["prior"]
    assert report["total"]["bpd"] == pytest.approx(
        sum(t["bpd"] for t in report["terms"].values()), rel=1e-9
    )
    assert report["total"]["stderr"] == pytest.approx(total.std(ddof=1) / math.sqrt(5), rel=1e-3)
    # Results store: total + one row per term, std = standard error; Table 1 reads the total.
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["metric"] for r in rows] == ["nll_bpd", "nll_bpd_level1", "nll_bpd_prior"]
    assert rows[0]["value"] == pytest.approx(report["total"]["bpd"]) and rows[0]["n"] == 5
    assert rows[0]["reference"] == "shapes:val" and rows[1]["std"] == pytest.approx(
        report["terms"]["level1"]["stderr"]
    )
    from analysis.results import load_results, table1

    table, _ = table1(load_results(results))
    assert table.loc[0, "nll_bpd"] == pytest.approx(report["total"]["bpd"])


def test_text_output_lists_every_term(run, tmp_path):
    out = _nll("--run", run, "--limit", 2, "--no-results")
    assert out.exit_code == 0, out.output
    assert "level1" in out.stdout and "prior" in out.stdout and "upper bound" in out.stdout
    assert not (tmp_path / "results").exists()


def test_wrong_image_size_and_missing_prior_fail_with_one_line(run, tmp_path):
    # A Downsampled-ImageNet-style npz batch of 16x16 images (rows in CHW order, 1-based labels).
    npz = tmp_path / "val_data.npz"
    np.savez(npz, data=np.zeros((3, 3 * 16 * 16), dtype=np.uint8), labels=np.array([1, 2, 3]))
    out = _nll("--run", run, "--data", npz, "--no-results")
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert "16x16 images but card 'tiny_ff' expects 8x8" in out.output
    partial = copy_without(run, tmp_path / "partial", "prior")
    out = _nll("--run", partial, "--no-results")
    assert (
        out.exit_code == 1
        and f"hvqeval train --config tiny_ff --out {partial} --prior" in out.output
    )


def test_a_sample_set_is_scored_with_its_own_class_ids(run, tmp_path):
    """Samples of a class-conditional model are scored under the classes they were drawn for
    (the manifest's), not as unlabelled class-0 images; a class the model lacks is refused."""
    from hvqeval.sample_set import SampleSetWriter
    from models import open_dataset

    shapes = open_dataset("shapes", "val", image_size=IMAGE_SIZE)
    images = [shapes[i] for i in range(6)]
    assert len({int(label) for _image, label in images}) > 1  # the labels matter here
    with SampleSetWriter(tmp_path / "set", model="tiny_ff", image_size=IMAGE_SIZE) as writer:
        for image, label in images:
            writer.add(image.permute(1, 2, 0).numpy(), int(label), f"class {int(label)}")
    as_set = _nll("--run", run, "--data", tmp_path / "set", "--json", "--no-results")
    as_data = _nll("--run", run, "--data", "shapes", "--limit", 6, "--json", "--no-results")
    assert as_set.exit_code == 0 and as_data.exit_code == 0, as_set.output + as_data.output
    scored, expected = json.loads(as_set.stdout), json.loads(as_data.stdout)
    exact = pytest.approx(expected["total"]["bpd"], rel=1e-9, abs=0)
    assert scored["n"] == 6 and scored["total"]["bpd"] == exact
    # the same images all of class 0 (what the folder read as unlabelled images gave) differ
    with SampleSetWriter(tmp_path / "zero", model="tiny_ff", image_size=IMAGE_SIZE) as writer:
        for image, _label in images:
            writer.add(image.permute(1, 2, 0).numpy(), 0, "class 0")
    as_zero = _nll("--run", run, "--data", tmp_path / "zero", "--json", "--no-results")
    assert json.loads(as_zero.stdout)["total"]["bpd"] != exact
    assert scored["data"] == str(tmp_path / "set")  # no ":val": a sample set has no split

    with SampleSetWriter(tmp_path / "far", model="tiny_ff", image_size=IMAGE_SIZE) as writer:
        writer.add(images[0][0].permute(1, 2, 0).numpy(), 500, "class 500")
    out = _nll("--run", run, "--data", tmp_path / "far", "--no-results")
    assert out.exit_code == 1 and "class(es) [500] but the model knows classes" in out.output


# ---------------------------------------------------------------------------------------
# Code predictability (Figure 5)


def test_small_prior_separates_predictable_from_random_codes():
    from hvqeval.predictability import PredictabilityConfig, train_and_validate

    rng = np.random.default_rng(0)
    config = PredictabilityConfig(
        layers=2, hidden=8, kernel_size=3, steps=60, batch_size=8, learning_rate=0.03
    )
    constant = [(torch.full((1, 3, 3), 5, dtype=torch.long), 0)] * 16
    noise = [(torch.from_numpy(rng.integers(0, 16, (1, 3, 3))), 0) for _ in range(64)]
    easy = train_and_validate(constant[:12], constant[12:], 1, 16, 1, config, progress=False)
    hard = train_and_validate(noise[:48], noise[48:], 1, 16, 1, config, progress=False)
    # Uniform codes over 16 values carry log2(16) = 4 bits each: no model predicts them much better.
    assert hard[0] > 3.5
    # A constant map costs (nearly) nothing once learnt; it starts near 4 bits from a random init.
    assert easy[0] < 1.0 and easy[2] < 1.0
    assert (easy[3], easy[4], hard[3], hard[4]) == (12, 4, 48, 16)


def test_predictability_command_reports_and_stores(run, tmp_path):
    results, figure = tmp_path / "results.jsonl", tmp_path / "fig5.png"
    out = CliRunner().invoke(
        cli,
        [
            "predictability",
            "--run",
            str(run),
            "--level",
            "1",
            "--layers",
            "1",
            "--hidden",
            "8",
            "--kernel-size",
            "3",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--results",
            str(results),
            "--figure",
            str(figure),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    (report,) = json.loads(out.stdout)
    assert report["aux_decoder"] == "feedforward, 1 layers" and report["code_shape"] == [1, 2, 2]
    assert report["code_values"] == 16 and report["n_val"] == 4  # the run's 4 validation code maps
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["metric"] == "code_nll_bpd" and row["value"] == pytest.approx(report["val_bpd"])
    assert row["std"] == pytest.approx(report["val_stderr"]) and row["extra"]["level"] == 1
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = CliRunner().invoke(
        cli, ["predictability", "--run", str(run), "--level", "2", "--no-results"]
    )
    assert out.exit_code == 1 and "has level(s) 1..1; got --level 2" in out.output


@pytest.mark.slow
def test_two_level_hierarchy_has_three_terms_that_sum(tmp_path_factory):
    from models import load_run, open_dataset

    run = build_tiny_run(tmp_path_factory.getbasetemp(), "imagenet256_msp", image_size=16)
    out = _nll("--run", run, "--limit", 3, "--batch-size", 3, "--json", "--no-results")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert list(report["terms"]) == ["level1", "level2", "prior"] and report["dims"] == 16 * 16 * 3
    dataset = open_dataset("shapes", "val", image_size=16)
    x = torch.stack([dataset[i][0] for i in range(3)])
    terms = load_run(run).nll_terms(x, torch.tensor([dataset[i][1] for i in range(3)]))
    for name, nats in terms.items():  # every term over the same 16 x 16 x 3 = 768 pixel sub-dims
        assert report["terms"][name]["bpd"] == pytest.approx(
            float(nats.double().mean()) / (768 * math.log(2)), rel=1e-6
        )
    assert report["total"]["bpd"] == pytest.approx(
        sum(t["bpd"] for t in report["terms"].values()), rel=1e-9
    )
    # level2 models 3 x 4 x 4 = 48 code sub-dims: bits per own dim = bpd * 768 / 48
    assert report["terms"]["level2"]["bits_per_own_dim"] == pytest.approx(
        report["terms"]["level2"]["bpd"] * 16
    )


def test_small_prior_training_resumes_exactly(tmp_path):
    from hvqeval.predictability import PredictabilityConfig, train_and_validate

    rng = np.random.default_rng(1)
    codes = [(torch.from_numpy(rng.integers(0, 4, (1, 3, 3))), 0) for _ in range(20)]
    config = PredictabilityConfig(
        layers=1, hidden=8, kernel_size=3, steps=6, batch_size=4, learning_rate=0.01
    )
    straight = train_and_validate(codes[:16], codes[16:], 1, 4, 1, config, progress=False)

    def stop(step):
        if step == 3:
            raise KeyboardInterrupt

    state = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        train_and_validate(
            codes[:16], codes[16:], 1, 4, 1, config, progress=False, checkpoint=state, on_step=stop
        )
    assert torch.load(state, weights_only=True)["step"] == 3
    resumed = train_and_validate(
        codes[:16], codes[16:], 1, 4, 1, config, progress=False, checkpoint=state
    )
    assert resumed == straight

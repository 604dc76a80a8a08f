"""`hvqeval metrics` and `hvqeval metrics batch`: results store rows, resumable batches, one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from metrics_helpers import write_image_folder, write_sample_set

from hvqeval.cli import cli
from hvqeval.results import ResultRow, ResultsStore


def run(args, env=None):
    result = CliRunner().invoke(cli, args, env=env, catch_exceptions=False)
    return result


def test_metrics_command_appends_rows_and_prints_json(tmp_path, small_sample_set, domain_weights):
    reference = write_image_folder(tmp_path / "r", 20, size=32)
    results = tmp_path / "results.jsonl"
    result = run(
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--reference",
            str(reference),
            "--metrics",
            "isc,fid,kid",
            "--extractor",
            "domain",
            "--weights",
            str(domain_weights),
            "--splits",
            "2",
            "--kid-subset-size",
            "10",
            "--kid-subsets",
            "3",
            "--per-class",
            "--results",
            str(results),
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    stored = ResultsStore(results).read()
    assert [r["metric"] for r in printed] == [r["metric"] for r in stored]
    metrics = [r["metric"] for r in stored]
    assert metrics[:3] == ["isc", "fid", "kid"] and metrics.count("fid_class") == 10
    assert metrics[-1] == "fid_class_mean"
    assert all(r["feature_extractor"] == "domain:shapes" for r in stored)
    assert stored[0]["std"] is not None and stored[1]["std"] is None
    assert "below the feature dimension" in result.stderr  # n = 20 < 24


def test_metrics_table_output(tmp_path, small_sample_set, domain_weights):
    result = run(
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--metrics",
            "isc",
            "--splits",
            "2",
            "--extractor",
            "domain",
            "--weights",
            str(domain_weights),
            "--results",
            str(tmp_path / "r.jsonl"),
        ]
    )
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:3] == ["metric", "value", "n"]
    assert row.startswith("isc") and "±" in row


def test_missing_inception_weights_fail_with_one_line(tmp_path, small_sample_set, monkeypatch):
    monkeypatch.setenv(
        "TORCH_HOME", str(tmp_path / "torch")
    )  # no cached weights; offline download fails
    result = run(
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--metrics",
            "isc",
            "--results",
            str(tmp_path / "r.jsonl"),
        ]
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert (
        "weights-inception-2015-12-05-6726825d.pth" in lines[0]
        and "--inception-weights" in lines[0]
    )


def test_inception_weights_from_the_environment_variable_must_exist(tmp_path, small_sample_set):
    result = run(
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--metrics",
            "isc",
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
        env={"HVQEVAL_INCEPTION_WEIGHTS": str(tmp_path / "missing.pth")},
    )
    assert result.exit_code == 1 and "missing.pth does not exist" in result.stderr
    assert "check $HVQEVAL_INCEPTION_WEIGHTS" in result.stderr  # where the path came from


def test_batch_runs_the_cross_product_and_resumes(tmp_path, domain_weights):
    a = write_sample_set(tmp_path / "a", 12, size=16, seed=1, model="ff")
    b = write_sample_set(tmp_path / "b", 12, size=16, seed=2, model="msp")
    reference = write_image_folder(tmp_path / "ref", 15, size=16)
    spec = tmp_path / "spec.toml"
    spec.write_text(f"""
results = "{tmp_path / "results.jsonl"}"
[defaults]
extractor = "domain"
weights = "{domain_weights}"
splits = 2
[[evaluation]]
samples = ["{a}", "{b}"]
references = ["{reference}"]
metrics = ["isc", "fid"]
""")
    first = run(["metrics", "batch", str(spec)])
    assert first.exit_code == 0, first.output
    assert "2 job(s) computed, 0 already" in first.stderr
    rows = ResultsStore(tmp_path / "results.jsonl").read()
    assert sorted((r["model"], r["metric"]) for r in rows) == [
        ("ff", "fid"),
        ("ff", "isc"),
        ("msp", "fid"),
        ("msp", "isc"),
    ]
    # Simulate a crash after the first job: drop the second job's rows and run again.
    keep = [r for r in rows if r["model"] == "ff"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    second = run(["metrics", "batch", str(spec)])
    assert "1 job(s) computed, 1 already" in second.stderr
    assert len(ResultsStore(tmp_path / "results.jsonl").read()) == 4
    third = run(["metrics", "batch", str(spec)])
    assert "0 job(s) computed, 2 already" in third.stderr
    assert third.stdout.count("isc") == 2  # the summary lists every job of the spec


def test_batch_spec_errors_are_one_line(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[[evaluation]]\nsamples = "x"\ncolour = "red"\n')
    result = run(["metrics", "batch", str(spec)])
    assert result.exit_code == 1 and "unknown key(s) colour" in result.stderr


def test_results_store_round_trip_and_torn_last_line(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    row = ResultRow(
        metric="fid",
        value=1.5,
        std=None,
        model="m",
        sample_set="s",
        sample_set_sha256="x",
        reference="shapes:val",
        reference_id="y",
        n=10,
        n_reference=20,
        splits=None,
        seed=0,
        feature_extractor="inception-v3-compat",
        weights_sha256="z",
        resize="none",
        tf32=False,
        extra={"job": "k1"},
    )
    store.append([row, row])
    with open(store.path, "a") as fh:
        fh.write('{"metric": "isc", "val')  # a crash mid-write
    with pytest.warns(UserWarning, match="incomplete last line"):
        rows = store.read()
    assert (
        len(rows) == 2
        and rows[0]["value"] == 1.5
        and list(rows[0])[:3] == ["metric", "value", "std"]
    )
    with pytest.warns(UserWarning):
        assert store.job_keys() == {"k1"}


def test_fid_infinity_and_bootstrap_options(tmp_path, domain_weights):
    samples = write_sample_set(tmp_path / "s", 40, size=16)
    reference = write_image_folder(tmp_path / "r", 40, size=16)
    result = run(
        [
            "metrics",
            "--samples",
            str(samples),
            "--reference",
            str(reference),
            "--metrics",
            "fid",
            "--extractor",
            "domain",
            "--weights",
            str(domain_weights),
            "--fid-infinity",
            "--bootstrap",
            "10",
            "--results",
            str(tmp_path / "r.jsonl"),
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    rows = {r["metric"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"fid", "fid_infinity"}
    interval = rows["fid"]["extra"]["bootstrap"]
    assert interval["resamples"] == 10 and interval["low"] <= interval["high"]
    points = rows["fid_infinity"]["extra"]["points"]
    assert points[-1][0] == 40 and points[-1][1] == pytest.approx(rows["fid"]["value"], rel=1e-9)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--kid-subset-size", "1", "1 is not in the range x>=2"),  # was NaN stored with exit 0
        ("--kid-subsets", "0", "0 is not in the range x>=1"),  # was NaN stored with exit 0
        ("--bootstrap", "-1", "-1 is not in the range x>=0"),  # was an IndexError traceback
        ("--image-size", "0", "0 is not in the range x>=1"),  # was a ValueError traceback
        ("--num-workers", "-1", "-1 is not in the range x>=0"),  # was DataLoader's traceback
        ("--prc-neighbourhood", "0", "0 is not in the range x>=1"),  # was precision 0.00
        ("--prc-neighbourhood", "500", "--prc-neighbourhood 500 needs more than"),  # kthvalue
    ],
)
def test_metric_settings_out_of_range_are_one_line_and_store_nothing(
    tmp_path, small_sample_set, domain_weights, option, value, message
):
    results = tmp_path / "r.jsonl"
    reference = write_image_folder(tmp_path / "ref", 15, size=16)
    result = CliRunner().invoke(
        cli,
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--reference",
            str(reference),
            "--metrics",
            "kid,prc",
            "--kid-subset-size",
            "4",
            "--extractor",
            "domain",
            "--weights",
            str(domain_weights),
            "--results",
            str(results),
            option,
            value,
        ],
    )
    assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
    assert message in result.output and not results.exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ("kid_subset_size = 1", "--kid-subset-size must be a whole number >= 2, got 1"),
        ('seed = "abc"', "--seed must be a whole number >= 0, got 'abc'"),
        ("bootstrap = -2", "--bootstrap must be a whole number >= 0, got -2"),
    ],
)
def test_bad_values_in_a_batch_spec_are_one_line_before_any_job(tmp_path, line, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'[defaults]\n{line}\n[[evaluation]]\nsamples = "x"\n')
    result = run(["metrics", "batch", str(spec)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "[defaults]: " + message in result.stderr  # where the value is
    spec.write_text(f'[[evaluation]]\nsamples = "x"\n{line}\n')
    result = run(["metrics", "batch", str(spec)])
    assert result.exit_code == 1 and "[[evaluation]] #1: " + message in result.stderr


def test_an_unknown_key_in_defaults_is_reported_in_defaults(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[defaults]\nmetrix = "fid"\n[[evaluation]]\nsamples = "x"\n')
    result = run(["metrics", "batch", str(spec)])
    assert result.exit_code == 1 and "[defaults]: unknown key(s) metrix" in result.stderr


@pytest.mark.parametrize("content", ["another network", "not a torch file"])
def test_a_weights_file_of_another_network_is_one_short_line(tmp_path, small_sample_set, content):
    """load_state_dict's error lists every missing and unexpected key (about 30 kB)."""
    import torch

    weights = tmp_path / "wrong.pth"
    if content == "another network":
        torch.save({"layer.weight": torch.zeros(2, 2)}, weights)
    else:
        weights.write_bytes(b"these are not weights")
    result = CliRunner().invoke(
        cli,
        [
            "metrics",
            "--samples",
            str(small_sample_set),
            "--metrics",
            "isc",
            "--splits",
            "2",
            "--inception-weights",
            str(weights),
            "--results",
            str(tmp_path / "r.jsonl"),
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output[-500:]
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and len(lines[0]) < 400, result.output[-2000:]
    assert f"{weights} does not hold" in lines[0] and "give the file of that network" in lines[0]

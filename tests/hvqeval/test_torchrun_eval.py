"""``hvqeval nll`` and ``hvqeval metrics`` under torchrun (two gloo processes on the CPU) give the
single-process numbers and one set of result rows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hvqeval.cli import cli
from hvqeval.results import ResultsStore

sys.path.insert(0, str(Path(__file__).parent))
from run_helpers import build_tiny_run, one_thread  # noqa: E402,F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.getbasetemp())


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m hvqeval -- ARGS`` on the CPU ("--" ends
    torchrun's own options, which would otherwise take --run for its --run-path)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hvqeval",
        "--",
        *args,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def close(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-6)


@pytest.mark.slow
def test_nll_under_torchrun_equals_one_process(run, tmp_path):
    args = [
        "nll",
        "--run",
        str(run),
        "--data",
        "shapes",
        "--limit",
        "7",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--json",
    ]
    one = CliRunner().invoke(cli, [*args, "--results", str(tmp_path / "one.jsonl")])
    assert one.exit_code == 0, one.output
    two = torchrun(*args, "--results", str(tmp_path / "two.jsonl"))
    single, sharded = (
        json.loads(one.stdout),
        json.loads(two.stdout),
    )  # one JSON document: rank 0 prints
    assert sharded["n"] == single["n"] == 7
    assert close(sharded["total"]["bpd"], single["total"]["bpd"])
    assert close(sharded["total"]["stderr"], single["total"]["stderr"])
    for term, values in single["terms"].items():
        assert close(sharded["terms"][term]["bpd"], values["bpd"]), term
    rows_one, rows_two = (
        ResultsStore(tmp_path / "one.jsonl").read(),
        ResultsStore(tmp_path / "two.jsonl").read(),
    )
    assert [r["metric"] for r in rows_two] == [
        r["metric"] for r in rows_one
    ]  # one row each, not one per rank
    assert all(close(a["value"], b["value"]) for a, b in zip(rows_one, rows_two))


@pytest.mark.slow
def test_metrics_under_torchrun_equal_one_process(
    tmp_path, small_sample_set, small_reference, domain_weights
):
    args = [
        "metrics",
        "--samples",
        str(small_sample_set),
        "--reference",
        str(small_reference),
        "--metrics",
        "isc,fid,kid,prc",
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
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--json",
    ]
    one = CliRunner().invoke(cli, [*args, "--no-cache", "--results", str(tmp_path / "one.jsonl")])
    assert one.exit_code == 0, one.output
    # A fresh cache: both ranks extract the reference together and store it once.
    two = torchrun(
        *args, "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "two.jsonl")
    )
    single, sharded = json.loads(one.stdout), json.loads(two.stdout)
    assert (
        [r["metric"] for r in sharded]
        == [r["metric"] for r in single]
        == ["isc", "fid", "kid", "precision", "recall"]
    )
    for a, b in zip(single, sharded):
        assert close(a["value"], b["value"]), (a["metric"], a["value"], b["value"])
        assert a["std"] is None or close(a["std"], b["std"])
    assert len(ResultsStore(tmp_path / "two.jsonl").read()) == len(single)
    assert len(list((tmp_path / "cache" / "reference").iterdir())) == 1
    cached = torchrun(
        *args, "--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "two.jsonl")
    )
    assert [r["value"] for r in json.loads(cached.stdout)] == [r["value"] for r in sharded]


def test_metrics_batch_refuses_torchrun_with_one_line(tmp_path, monkeypatch):
    spec = tmp_path / "spec.toml"
    spec.write_text("")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(cli, ["metrics", "batch", str(spec)])
    assert result.exit_code == 2 and "metrics batch runs in one process" in result.output

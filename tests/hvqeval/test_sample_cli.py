"""``hvqeval sample``: valid, seeded, resumable sample sets; cached == naive; clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hvqeval.cli import cli
from hvqeval.errors import GenerationError
from hvqeval.sample_set import SampleSet, sha256_file
from hvqeval.sampling import (
    SampleRequest,
    batch_generator,
    generate_sample_set,
    load_sampled_codes,
    parse_classes,
    parse_temperatures,
)
from models import Temperatures

sys.path.insert(0, str(Path(__file__).parent))
from run_helpers import IMAGE_SIZE, build_tiny_run, copy_without, one_thread  # noqa: E402,F401


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.getbasetemp())


def _sample(run, out, *extra):
    args = ["sample", "--run", str(run), "--out", str(out), *map(str, extra)]
    result = CliRunner().invoke(cli, args)
    return result


def _ok(run, out, *extra):
    result = _sample(run, out, *extra)
    assert result.exit_code == 0, result.output
    return SampleSet.load(out)


def _pixels(sample_set: SampleSet) -> np.ndarray:
    return np.stack([sample_set.uint8(i) for i in range(len(sample_set))])  # (N, H, W, 3)


BASE = (
    "--classes",
    "0,3",
    "--per-class",
    3,
    "--batch-size",
    4,
    "--seed",
    5,
)  # 6 images: batches of 4 + 2


def test_sample_set_is_valid_and_reproducible_by_seed(run, tmp_path):
    first = _ok(run, tmp_path / "a", *BASE)
    first.verify()
    m = first.manifest
    assert (m["model"], m["card"], m["image_size"], m["seed"], m["sampler"]) == (
        "tiny_ff",
        "tiny_ff",
        IMAGE_SIZE,
        5,
        "cached",
    )
    assert m["temperature"] == 1.0 and m["batch_size"] == 4 and m["format_version"] == 1
    assert [c["stage"] for c in m["checkpoints"]] == ["level1", "prior"]
    for c in m["checkpoints"]:
        assert c["sha256"] == sha256_file(Path(c["path"]))
    # class-major plan; labels "name (id)" from the shapes dataset
    assert [(f.class_id, f.class_name) for f in first.files] == [(0, "ring (0)")] * 3 + [
        (3, "cross (3)")
    ] * 3
    again = _ok(run, tmp_path / "b", *BASE)
    assert [f.sha256 for f in again.files] == [f.sha256 for f in first.files]
    other = _ok(run, tmp_path / "c", *BASE[:-1], 6)
    assert not np.array_equal(_pixels(other), _pixels(first))


def test_cached_and_naive_samplers_give_identical_images(run, tmp_path):
    args = ("--classes", "1,2", "--per-class", 1, "--batch-size", 2, "--seed", 3)
    cached = _ok(run, tmp_path / "cached", *args, "--sampler", "cached", "--model", "tiny-a")
    assert (cached.manifest["model"], cached.manifest["card"]) == ("tiny-a", "tiny_ff")
    naive = _ok(run, tmp_path / "naive", *args, "--sampler", "naive")
    assert naive.manifest["sampler"] == "naive"
    assert np.array_equal(_pixels(cached), _pixels(naive))
    assert _pixels(cached).std() > 0  # real samples, not a constant image


def test_interrupted_run_resumes_to_the_uninterrupted_files(run, tmp_path):
    whole = _ok(run, tmp_path / "whole", *BASE)
    part = _sample(run, tmp_path / "part", *BASE, "--max-batches", 1)
    assert part.exit_code == 0 and "4 of 6 images so far" in part.output
    assert len(SampleSet.load(tmp_path / "part")) == 4
    resumed = _ok(run, tmp_path / "part", *BASE, "--json")
    assert [f.sha256 for f in resumed.files] == [f.sha256 for f in whole.files]
    # A run stopped by an exception after its first batch also continues exactly.
    request = SampleRequest(run=str(run), classes=(0, 3), per_class=3, seed=5, batch_size=4)

    def stop(batch_index, count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_sample_set(request, tmp_path / "killed", progress=False, on_batch=stop)
    assert len(SampleSet.load(tmp_path / "killed")) == 4
    report = generate_sample_set(request, tmp_path / "killed", progress=False)
    assert (report.made_now, report.already_there, report.complete) == (2, 4, True)
    assert [f.sha256 for f in SampleSet.load(tmp_path / "killed").files] == [
        f.sha256 for f in whole.files
    ]


def test_saved_codes_and_a_batch_redrawn_by_hand(run, tmp_path):
    from models import load_run
    from models.sampling import sample_decoder, sample_prior

    made = _ok(run, tmp_path / "s", *BASE, "--save-codes")
    codes = load_sampled_codes(tmp_path / "s")
    assert codes["codes_level1"].shape == (6, 1, 2, 2) and list(codes["class_ids"]) == [
        0,
        0,
        0,
        3,
        3,
        3,
    ]
    assert list(codes["files"]) == [f.file for f in made.files]
    # Batch 1 (images 4, 5) by hand: Algorithm 4 with each image's own generator.
    hierarchy = load_run(run)
    gen = [batch_generator(5, 4), batch_generator(5, 5)]
    z = sample_prior(hierarchy.prior, torch.tensor([3, 3]), 1.0, gen, size=2)
    assert np.array_equal(z.numpy(), codes["codes_level1"][4:])
    x = sample_decoder(hierarchy.levels[0].decoder, z, 1.0, gen)  # (2, 3, 8, 8)
    assert np.array_equal(x.permute(0, 2, 3, 1).numpy().astype(np.uint8), _pixels(made)[4:])


def test_per_stage_temperature_is_used_and_recorded(run, tmp_path):
    args = ("--classes", "2", "--per-class", 2, "--batch-size", 2)
    cold = _ok(run, tmp_path / "cold", *args, "--temperature", "prior=0.5,level1=0.7")
    assert cold.manifest["temperature"] == {"level1": 0.7, "prior": 0.5}
    uniform = _ok(run, tmp_path / "uniform", *args, "--temperature", "0.5")
    assert (
        uniform.manifest["temperature"] == 0.5
    )  # same prior temperature, level 1 at 0.5 instead of 0.7
    assert not np.array_equal(_pixels(cold), _pixels(uniform))
    assert parse_temperatures("0.9,prior=0.5", ["level1", "prior"]) == Temperatures(
        0.9, (("prior", 0.5),)
    )
    with pytest.raises(GenerationError, match="unknown stage 'level2'"):
        parse_temperatures("level2=1", ["level1", "prior"])
    assert parse_classes("0-2,7", 10) == [0, 1, 2, 7]


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--classes", "3,10"), "class 10 is out of range: this model has classes 0..9"),
        (("--classes", "x"), "'x' is not a class id"),
        (("--temperature", "0"), "temperature must be a positive number"),
    ],
)
def test_bad_arguments_fail_with_one_line(run, tmp_path, extra, message):
    result = _sample(run, tmp_path / "x", "--per-class", 1, *extra)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_stage_and_foreign_out_folder_fail_clearly(run, tmp_path):
    partial = copy_without(run, tmp_path / "partial", "prior")
    result = _sample(partial, tmp_path / "x", "--per-class", 1)
    assert result.exit_code == 1
    assert f"hvqeval train --config tiny_ff --out {partial} --prior" in result.output
    _ok(run, tmp_path / "set", "--classes", "1", "--per-class", 1, "--seed", 0)
    result = _sample(run, tmp_path / "set", "--classes", "1", "--per-class", 1, "--seed", 1)
    assert result.exit_code == 1 and "different settings (seed)" in result.output
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"")
    result = _sample(run, tmp_path / "photos", "--classes", "1", "--per-class", 1)
    assert result.exit_code == 1 and "holds files but no sample-set manifest" in result.output
    result = _sample(tmp_path / "nowhere", tmp_path / "y", "--per-class", 1)
    assert result.exit_code == 1 and "not a run folder" in result.output
    summary = json.loads(
        _sample(run, tmp_path / "set", "--classes", "1", "--per-class", 1, "--json").stdout
    )
    assert summary["made_now"] == 0 and summary["complete"]


@pytest.mark.gpu
def test_cuda_sampling_matches_naive_and_runs_in_bfloat16_with_graphs(run, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    args = (
        "--classes",
        "0,1",
        "--per-class",
        2,
        "--batch-size",
        4,
        "--seed",
        2,
        "--device",
        "cuda",
    )
    cached = _ok(run, tmp_path / "cached", *args)
    naive = _ok(run, tmp_path / "naive", *args, "--sampler", "naive")
    assert np.array_equal(_pixels(cached), _pixels(naive))
    fast = _ok(run, tmp_path / "bf16", *args, "--precision", "bfloat16", "--cuda-graph")
    assert len(fast) == 4 and fast.manifest["precision"] == "bfloat16"


@pytest.mark.slow
def test_two_level_samples_decode_again_from_saved_codes(tmp_path_factory, tmp_path):
    from models import load_run
    from models.sampling import sample_prior

    run = build_tiny_run(tmp_path_factory.getbasetemp(), "imagenet256_msp", image_size=16)
    made = _ok(
        run,
        tmp_path / "s",
        "--classes",
        "0,5",
        "--per-class",
        1,
        "--batch-size",
        2,
        "--save-codes",
        "--temperature",
        "prior=0.9,level2=0.95",
    )
    codes = load_sampled_codes(tmp_path / "s")
    assert codes["codes_level2"].shape == (2, 1, 2, 2) and codes["codes_level1"].shape == (
        2,
        3,
        4,
        4,
    )
    # Algorithm 4 by hand through both levels with the images' generators and the same temperatures.
    hierarchy, gen = load_run(run), [batch_generator(0, 0), batch_generator(0, 1)]  # one per image
    temperatures = parse_temperatures("prior=0.9,level2=0.95", ["level1", "level2", "prior"])
    top = sample_prior(hierarchy.prior, torch.tensor([0, 5]), 0.9, gen, size=2)
    assert np.array_equal(top.numpy(), codes["codes_level2"])
    kept = {}
    pixels = hierarchy.decode(top, temperatures, gen, from_level=2, keep=kept)
    assert np.array_equal(kept[1].numpy(), codes["codes_level1"])
    assert np.array_equal(pixels.permute(0, 2, 3, 1).numpy().astype(np.uint8), _pixels(made))

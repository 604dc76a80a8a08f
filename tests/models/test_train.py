"""Stage training: Polyak averaging, resumption, run folders, logs, errors, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hvqeval.cli import cli
from models.checkpoint import load_checkpoint, load_run
from models.codes import CodesDataset, codes_dir
from models.config import load_card
from models.ema import Polyak, polyak_decay_at
from models.errors import CheckpointError, DataError
from models.stage_data import random_crops
from models.train import TrainOptions, train_stage

sys.path.insert(0, str(Path(__file__).parent))
from small_cards import shrink_overrides, small_card  # noqa: E402

OPTIONS = TrainOptions(num_workers=0, log_every=1, progress=False, limit=12)


def _set_args(name: str) -> list[str]:
    return [arg for s in shrink_overrides(load_card(name)) for arg in ("--set", s)]


def _options(steps: int, **kw) -> TrainOptions:
    return TrainOptions(**{**OPTIONS.__dict__, "steps": steps, **kw})


def test_polyak_update_formula_and_buffers_copied():
    layer = torch.nn.BatchNorm1d(1)  # has a parameter (weight) and buffers (running stats)
    polyak = Polyak(layer, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(3.0)
        layer.running_mean.fill_(7.0)
    polyak.update(layer, step=0)
    # step 0: d = min(0.5, (1 + 0) / (10 + 0)) = 0.1 -> avg = 0.1 * 1 + 0.9 * 3 = 2.8
    assert polyak_decay_at(0.5, 0) == 0.1
    assert torch.allclose(polyak.averaged.weight, torch.tensor([2.8]))
    polyak.update(layer, step=100)  # d = min(0.5, 101 / 110) = 0.5 -> 0.5 * 2.8 + 0.5 * 3 = 2.9
    assert torch.allclose(polyak.averaged.weight, torch.tensor([2.9]))
    assert polyak.averaged.running_mean.item() == 7.0  # copied, not averaged
    assert not polyak.averaged.weight.requires_grad


def test_polyak_weights_are_evaluated_and_codebook_is_not_averaged_twice(tmp_path):
    card = small_card("tiny_ff")
    result = train_stage(card, tmp_path, "level1", options=_options(5))
    assert result.step == 5
    ckpt = load_checkpoint(tmp_path / "level1.pt", card, "level1")
    raw, ema = ckpt["state_dict"], ckpt["ema_state_dict"]
    assert raw.keys() == ema.keys()
    params = [k for k in raw if not k.startswith("quantizer.")]
    assert sum(not torch.equal(raw[k], ema[k]) for k in params) > len(params) // 2
    # The codebook is an EMA itself: the averaged model carries the trained one unchanged.
    for key in ("quantizer.embedding", "quantizer.cluster_size", "quantizer.embed_sum"):
        assert torch.equal(raw[key], ema[key]), key
    hierarchy = load_run(tmp_path)
    assert not hierarchy.training
    for key, value in hierarchy.levels[0].state_dict().items():
        assert torch.equal(value, ema[key]), key


def test_resume_continues_exactly(tmp_path):
    card = small_card("tiny_msp")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train_stage(card, straight, "level1", options=_options(4))
    train_stage(card, resumed, "level1", options=_options(2))
    assert load_checkpoint(resumed / "level1.pt")["step"] == 2
    result = train_stage(card, resumed, "level1", options=_options(4))
    assert result.steps_trained == 2
    a, b = load_checkpoint(straight / "level1.pt"), load_checkpoint(resumed / "level1.pt")
    for part in ("state_dict", "ema_state_dict"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"] == 4
    # Rerunning a finished stage does nothing.
    assert train_stage(card, resumed, "level1", options=_options(4)).steps_trained == 0


def test_run_folder_config_log_and_codes(tmp_path):
    card = small_card("tiny_ff")
    train_stage(card, tmp_path, "level1", options=_options(2))
    assert json.loads((tmp_path / "config.json").read_text()) == card.to_dict()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert {"stage", "loss", "bpd", "usage", "perplexity", "images_per_s"} <= records[0].keys()
    prior = train_stage(card, tmp_path, "prior", options=_options(1))
    assert prior.step == 1
    codes = CodesDataset(codes_dir(tmp_path, 1), "train")
    z, label = codes[3]
    assert len(codes) == 12 and z.shape == (1, 4, 4) and 0 <= int(z.max()) < 16
    # The stored codes are those of the Polyak-averaged encoder on the evaluation transform.
    from models.stage_data import open_level_input

    image, _ = open_level_input(card, 0, tmp_path, None, "train", train=False)[3]
    assert torch.equal(load_run(tmp_path).levels[0].encode(image[None])[0], z)


def test_level_before_the_one_below_exists_fails_clearly(tmp_path):
    card = small_card("imagenet256_msp")
    with pytest.raises(
        CheckpointError, match=r"no trained level 1 .*train that stage first"
    ) as caught:
        train_stage(card, tmp_path, "level2", options=_options(1))
    assert (
        caught.value.stage == "level1" and caught.value.argument == "run_dir"
    )  # the CLI adds --level 1
    with pytest.raises(CheckpointError, match=r"no trained level 1"):
        train_stage(card, tmp_path, "prior", options=_options(1))


def test_wrong_image_size_fails_clearly(tmp_path, fashion_mnist_dir):
    card = small_card("tiny_ff", image_size=32)
    with pytest.raises(DataError, match=r"28x28 images but card 'tiny_ff' expects 32x32"):
        train_stage(card, tmp_path, "level1", data=str(fashion_mnist_dir), options=_options(1))


def test_random_crops_are_windows_of_each_item():
    x = torch.arange(2 * 1 * 6 * 6).view(2, 1, 6, 6)
    crops = random_crops(x, 4, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (2, 1, 4, 4)
    for i in range(2):
        top, left = divmod(int(crops[i, 0, 0, 0]) - 36 * i, 6)
        assert torch.equal(crops[i, 0], x[i, 0, top : top + 4, left : left + 4])


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    base = [
        "train",
        "--out",
        str(tmp_path / "run"),
        "--workers",
        "0",
        "--limit",
        "8",
        "--steps",
        "1",
    ]
    ff = ["--config", "tiny_ff", *_set_args("tiny_ff")]
    ok = runner.invoke(cli, base + ff + ["--level", "1", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["step"] == 1
    for args, expected in [
        (["--config", "tiny_msp", "--level", "1"], "differs from this card 'tiny_msp'"),
        (ff + ["--level", "2"], "--level must be 1..1"),
        (ff + ["--level", "1", "--prior"], "exactly one of"),
    ]:
        result = runner.invoke(cli, base + args)
        assert result.exit_code != 0
        assert expected in result.output
        assert "Traceback" not in result.output
        assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    card_args = _set_args("tiny_ff")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hvqeval",
        "train",
        "--config",
        "tiny_ff",
        *card_args,
        "--out",
        str(tmp_path),
        "--all",
        "--steps",
        "2",
        "--workers",
        "0",
        "--limit",
        "16",
        "--device",
        "cpu",
        "--json",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(tmp_path / "level1.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "prior.pt")["step"] == 2
    assert [r["step"] for r in json.loads(done.stdout)] == [2, 2]
    # Both processes encoded their half of each split into the shared code files.
    hierarchy = load_run(tmp_path)
    from models.stage_data import open_level_input

    codes = CodesDataset(codes_dir(tmp_path, 1), "train")
    assert len(codes) == 16
    for i in (0, 15):  # first row (rank 0's share) and last row (rank 1's share)
        image, label = open_level_input(hierarchy.card, 0, tmp_path, None, "train", train=False)[i]
        assert (
            torch.equal(hierarchy.levels[0].encode(image[None])[0], codes[i][0])
            and codes[i][1] == label
        )


def test_ctrl_c_saves_and_rerun_continues(tmp_path, monkeypatch):
    import models.train as train_module

    card = small_card("tiny_ff")
    real_step = train_module.optimisation_step
    calls = []

    def interrupted_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C arrives during the 4th step: 3 steps are complete
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "optimisation_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_stage(card, tmp_path, "level1", options=_options(6))
    assert load_checkpoint(tmp_path / "level1.pt")["step"] == 3
    monkeypatch.setattr(train_module, "optimisation_step", real_step)
    result = train_stage(card, tmp_path, "level1", options=_options(6))
    assert (result.step, result.steps_trained) == (6, 3)

"""Checkpoint format: exact round trip, clear failures for foreign/broken files, atomic writes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from models.autoencoder import LevelModel
from models.checkpoint import (
    KEYS,
    atomic_write_bytes,
    capture_rng_state,
    checkpoint_card,
    checkpoint_paths,
    init_run_dir,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from models.ema import Polyak
from models.errors import CheckpointError

sys.path.insert(0, str(Path(__file__).parent))
from small_cards import small_card  # noqa: E402


def _save_trained(path: Path, card, stage="level1") -> tuple[LevelModel, Polyak, torch.optim.Adam]:
    torch.manual_seed(0)
    model = LevelModel(card, 0)
    polyak = Polyak(model, 0.9)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(2):
        out = model(torch.randint(0, 256, (2, 3, 16, 16)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        polyak.update(model, step)
    save_checkpoint(
        path,
        model_class="LevelModel",
        card=card,
        stage=stage,
        state_dict=model.state_dict(),
        ema_state_dict=polyak.state_dict(),
        optimizer=opt.state_dict(),
        step=2,
    )
    return model, polyak, opt


def test_round_trip_is_exact(tmp_path):
    card = small_card("tiny_msp")
    model, polyak, opt = _save_trained(tmp_path / "level1.pt", card)
    ckpt = load_checkpoint(tmp_path / "level1.pt", card, "level1")
    assert set(ckpt) == set(KEYS)
    assert ckpt["format_version"] == 1 and ckpt["step"] == 2 and ckpt["model_class"] == "LevelModel"
    # Rebuilt from its own config, loaded strictly, identical tensors and outputs.
    rebuilt = LevelModel(checkpoint_card(ckpt), 0)
    rebuilt.load_state_dict(ckpt["state_dict"], strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key
    for key, value in polyak.state_dict().items():
        assert torch.equal(value, ckpt["ema_state_dict"][key]), key
    x = torch.randint(0, 256, (1, 3, 16, 16))
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(model.decoder(x, model.encode(x)), rebuilt.decoder(x, rebuilt.encode(x)))
    opt2 = torch.optim.Adam(rebuilt.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["optimizer"])
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(
            a["exp_avg_sq"], b["exp_avg_sq"]
        )


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert (
        torch.equal(first[0], again[0])
        and np.array_equal(first[1], again[1])
        and first[2] == again[2]
    )


def test_checkpoint_from_another_card_fails_clearly(tmp_path):
    card = small_card("tiny_msp")
    _save_trained(tmp_path / "level1.pt", card)
    other = small_card("tiny_ff")
    with pytest.raises(
        CheckpointError,
        match=r"trained with card 'tiny_msp'.*differs from card 'tiny_ff' at "
        r"'level\.0\.aux_decoder\.kind'",
    ):
        load_checkpoint(tmp_path / "level1.pt", other, "level1")
    with pytest.raises(CheckpointError, match=r"holds stage 'level1', expected 'prior'"):
        load_checkpoint(tmp_path / "level1.pt", card, "prior")
    # A run folder refuses a second card too.
    init_run_dir(tmp_path / "run", card)
    with pytest.raises(CheckpointError, match=r"started with card 'tiny_msp'.*new run folder"):
        init_run_dir(tmp_path / "run", other)


def test_broken_and_foreign_files_fail_clearly(tmp_path):
    card = small_card("tiny_ff")
    path = tmp_path / "level1.pt"
    _save_trained(path, card)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not an hvqeval checkpoint"):
        load_checkpoint(path)
    _save_trained(path, card)
    ckpt = torch.load(path, weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_atomic_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def failing(f):
        f.write(b"partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of torch.save

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, failing)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temporary left behind


def test_checkpoint_paths_in_training_order(tmp_path):
    card = small_card("imagenet256_ff")
    init_run_dir(tmp_path, card)
    for stage in ("prior", "level1"):
        (tmp_path / f"{stage}.pt").write_bytes(b"x")
    assert list(checkpoint_paths(tmp_path)) == ["level1", "prior"]

"""``hvqeval reconstruct``: grid layout (original first), files, seeding, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from hvqeval.cli import cli
from hvqeval.reconstruction import PAD, reconstruct
from hvqeval.sampling import batch_generator

sys.path.insert(0, str(Path(__file__).parent))
from run_helpers import IMAGE_SIZE, build_tiny_run, copy_without, one_thread  # noqa: E402,F401


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.getbasetemp())


def _reconstruct(*args):
    return CliRunner().invoke(cli, ["reconstruct", *map(str, args)])


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_grid_has_the_original_first_then_the_samples(run, tmp_path):
    from models import open_dataset

    out = tmp_path / "rc"
    result = _reconstruct(
        "--run",
        run,
        "--images",
        "shapes:val",
        "--limit",
        3,
        "--samples-per-image",
        2,
        "--seed",
        4,
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["from_level"] == 1
    manifest = json.loads((out / "reconstructions.json").read_text())
    canvas = _png(out / "grid.png")
    s, step = IMAGE_SIZE, IMAGE_SIZE + PAD
    # 3 rows x (1 original + 2 samples): 2 + 3 * (8 + 2) = 32 pixels each way.
    assert canvas.shape == (PAD + 3 * step, PAD + 3 * step, 3)
    dataset = open_dataset("shapes", "val", image_size=IMAGE_SIZE)
    for r, entry in enumerate(manifest["files"]):
        cells = [
            canvas[PAD + r * step : PAD + r * step + s, PAD + c * step : PAD + c * step + s]
            for c in range(3)
        ]
        assert np.array_equal(
            cells[0], dataset[r][0].permute(1, 2, 0).numpy()
        )  # the real image first
        assert np.array_equal(cells[0], _png(out / entry["original"]))
        for c, name in enumerate(entry["samples"], start=1):
            assert np.array_equal(cells[c], _png(out / name))
    assert (canvas[:PAD] == 255).all() and (
        canvas[:, PAD + s : PAD + step] == 255
    ).all()  # white gaps
    # Two draws from the same codes differ (the decoder is stochastic) ...
    assert not np.array_equal(
        _png(out / manifest["files"][0]["samples"][0]),
        _png(out / manifest["files"][0]["samples"][1]),
    )
    # ... and image 2 redrawn by hand: its codes, then the decoder with the generator of (seed 4, image 2).
    from models import load_run
    from models.sampling import sample_decoder

    hierarchy = load_run(run)
    x = dataset[2][0]
    codes = hierarchy.encode(x[None])[0].expand(2, -1, -1, -1).contiguous()
    by_hand = sample_decoder(hierarchy.levels[0].decoder, codes, 1.0, batch_generator(4, 2))
    assert np.array_equal(
        by_hand[1].permute(1, 2, 0).numpy().astype(np.uint8),
        _png(out / manifest["files"][2]["samples"][1]),
    )
    # Grouping does not matter: image 2 alone (first_index=2) gives the same draws.
    alone = reconstruct(hierarchy, x[None], 2, seed=4, first_index=2)
    assert torch.equal(alone[0].long(), by_hand)


def test_runs_without_a_prior_rescale_folders_and_refuse_bad_levels(run, tmp_path):
    partial = copy_without(run, tmp_path / "partial", "prior")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):  # 16x16 photos: evaluation preprocessing rescales them to 8x8
        Image.fromarray(
            np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        ).save(folder / f"{i}.png")
    out = tmp_path / "rc"
    result = _reconstruct(
        "--run", partial, "--images", folder, "--samples-per-image", 1, "--out", out
    )
    assert result.exit_code == 0, result.output
    assert _png(out / "images" / "0001_original.png").shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    result = _reconstruct(
        "--run", partial, "--images", folder, "--from-level", 2, "--out", tmp_path / "x"
    )
    assert result.exit_code == 1 and "--from-level must be 1..1" in result.output
    result = _reconstruct(
        "--run", partial, "--images", folder, "--samples-per-image", 1, "--seed", 1, "--out", out
    )
    assert result.exit_code == 1 and "other settings (seed)" in result.output
    bare = copy_without(run, tmp_path / "bare", "level1", "prior")
    result = _reconstruct("--run", bare, "--images", folder, "--out", tmp_path / "y")
    assert (
        result.exit_code == 1
        and f"hvqeval train --config tiny_ff --out {bare} --level 1" in result.output
    )
    assert "Traceback" not in result.output

"""Tiny trained runs for the sampling / reconstruction / likelihood tests.

Runs are made by the real training code (``models.train.train_stage``) on a shrunken
``tiny_ff`` card: 8x8 images, 2x2 codes with 16 values, two-layer PixelCNNs, one optimiser
step per stage on four images. They are built once per test session and shared read-only.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
import pytest
import torch
from small_cards import small_card  # noqa: E402

IMAGE_SIZE = 8
_BUILT: dict[str, Path] = {}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks sample faster on one thread (no intra-op overhead); restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_card(name: str = "tiny_ff", image_size: int = IMAGE_SIZE):
    return small_card(name, image_size=image_size, batch=2)


def build_tiny_run(root: Path, name: str = "tiny_ff", image_size: int = IMAGE_SIZE) -> Path:
    """A complete run (every level + prior) under ``root``; built once per process.

    ``imagenet256_msp`` at 16x16 gives a two-level hierarchy: 16x16 pixels -> 3x4x4 codes ->
    1x2x2 codes -> prior.
    """
    from models import TrainOptions, train_stage

    key = f"{root}:{name}:{image_size}"
    if key not in _BUILT:
        run = Path(root) / f"run_{name}_{image_size}"
        options = TrainOptions(steps=1, num_workers=0, progress=False, limit=4, log_every=1)
        card = tiny_card(name, image_size)
        for stage in [f"level{i + 1}" for i in range(len(card.level))] + ["prior"]:
            train_stage(card, run, stage, options=options)
        _BUILT[key] = run
    return _BUILT[key]


def copy_without(run: Path, target: Path, *stages: str) -> Path:
    """A copy of ``run`` lacking the checkpoints of ``stages``."""
    shutil.copytree(run, target)
    for stage in stages:
        (target / f"{stage}.pt").unlink()
    return target

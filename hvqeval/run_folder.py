"""Run folders made by ``hvqeval train``: which stages are trained, their checkpoints, class names.

    runs/<run>/config.json          the resolved model card
    runs/<run>/level1.pt ..         one checkpoint per trained stage (``models.checkpoint``)
    runs/<run>/codes_level<l>/      codes extracted for the next stage (``models.codes``)

Sampling, reconstruction and likelihood read a run through these helpers; a missing stage is
a ``GenerationError`` that names the command which trains it.
"""

from __future__ import annotations

import os

from hvqeval.errors import GenerationError
from hvqeval.sample_set import sha256_file
from models import (
    Stage,
    builtin_class_names,
    checkpoint_paths,
    class_label,
    codes_dir,
    imagenet_class_names,
    read_meta,
    read_run_config,
)


def check_run(run_dir: str | os.PathLike, need_prior: bool = True):
    """The run's card, after checking that every stage sampling needs has a checkpoint.

    Raises ``GenerationError`` naming the first missing stage and the command that trains it.
    """
    card = read_run_config(run_dir)
    present = checkpoint_paths(run_dir)
    needed = Stage.all_of(card) if need_prior else Stage.all_of(card)[:-1]
    for stage in needed:
        if stage not in present:
            flag = "--prior" if stage.is_prior else f"--level {stage.level}"
            raise GenerationError(
                f"run {run_dir} has no trained {stage} ({stage}.pt missing); train it first: "
                f"hvqeval train --config {card.name} --out {run_dir} {flag}"
            )
    return card


def checkpoint_records(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """``[{stage, path, sha256}]`` of the run's checkpoints (training order), for manifests."""
    return [
        {"stage": stage, "path": os.fspath(path), "sha256": sha256_file(path)}
        for stage, path in checkpoint_paths(run_dir).items()
    ]


def run_class_names(run_dir: str | os.PathLike, card) -> list[str]:
    """Class labels ``"name (id)"`` of a run: ImageNet's table, the data's names, or the ids."""
    n = card.model.num_classes
    names: list[str] | None = None
    if card.model.dataset.lower().startswith("imagenet") and n == 1000:
        names = imagenet_class_names()
    if names is None:
        meta = read_meta(codes_dir(run_dir, len(card.level)))
        if meta and len(meta.get("class_names") or []) == n:
            names = list(meta["class_names"])
    if names is None:
        builtin = builtin_class_names(card.model.dataset)
        names = builtin if builtin is not None and len(builtin) == n else None
    if names is None:
        names = [str(i) for i in range(n)]
    return [class_label(name, i) for i, name in enumerate(names)]
